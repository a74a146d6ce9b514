"""Thin views: parse with a serializer, call a service, shape the answer. The seed's paths and shapes."""

from __future__ import annotations

import re
from decimal import Decimal

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from exchange.api import entry, schemas
from exchange.api.errors import ApiError, body
from exchange.api.lookups import instrument_get
from exchange.api.serializers import OrderRequest
from exchange.api.throttles import LoginThrottle
from exchange.models import Instrument
from exchange.users import signed_in_user
from matching import services
from matching.timestamps import to_datetime

ERRORS = {code: schemas.Error for code in (400, 401, 403, 404, 409, 422, 429, 503)}


@csrf_exempt  # it changes nothing, whatever the method
def not_found(request: HttpRequest) -> JsonResponse:
    return JsonResponse(body("not_found", f"no API endpoint at {request.path}"), status=404)


class SubmitView(GenericAPIView):
    """POST /api/submit: place an order; answers once the matcher has matched it (or refused it)."""

    throttle_scope = "submit"  # the order budget (exchange/api/throttles.py)
    serializer_class = OrderRequest  # also gives the browsable API its form

    @extend_schema(request=OrderRequest, responses={201: schemas.SubmitResult, **ERRORS},
                   examples=schemas.SUBMIT_EXAMPLES)
    def post(self, request: Request) -> Response:
        placed = entry.submit(user=signed_in_user(request), data=request.data)
        return Response(placed, status.HTTP_201_CREATED)


class CancelView(APIView):
    """DELETE /api/cancel/{order_id}: cancel one of my orders (404 for anyone else's)."""

    throttle_scope = "submit"  # the order budget (exchange/api/throttles.py)

    @extend_schema(responses={200: schemas.CancelResult, **ERRORS})
    def delete(self, request: Request, order_id: int) -> Response:
        return Response(entry.cancel(user=signed_in_user(request), order_id=order_id))


def _iso(ns: int) -> str:
    return to_datetime(ns).isoformat()



class BookView(APIView):
    """GET /api/book/{symbol}?depth=N: level 2 as the matcher last published it, with its seq."""

    @extend_schema(parameters=[OpenApiParameter("depth", {"type": "integer", "minimum": 1, "maximum": 50},
                                               description="levels a side")],
                   responses={200: schemas.Book, **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        instrument = _instrument(symbol)
        depth = bounded_int(request, "depth", default=10, top=50)
        book = services.market_data().depth(instrument.symbol, depth)
        return Response({
            "symbol": instrument.symbol,
            "seq": book["seq"],
            "bids": [_level(instrument, price, qty) for price, qty in book["bids"]],
            "asks": [_level(instrument, price, qty) for price, qty in book["asks"]],
        })


class TradesView(APIView):
    """GET /api/trades/{symbol}?limit=N: the most recent trades, newest first."""

    @extend_schema(parameters=[OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 200})],
                   responses={200: schemas.PublicTrade(many=True), **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        instrument = _instrument(symbol)
        limit = bounded_int(request, "limit", default=50, top=200)
        trades = services.market_data().trades(instrument.symbol, limit)
        return Response([{"trade_id": f"{instrument.symbol}-{t.trade_id}",
                          "price": str(instrument.ticks_to_price(t.price)),
                          "quantity": str(instrument.lots_to_qty(t.qty)),
                          "taker_side": str(t.side), "timestamp": _iso(t.ts)} for t in trades])


def _instrument(symbol: str) -> Instrument:
    instrument = instrument_get(symbol)  # cached in process (exchange/api/lookups.py)
    if instrument is None:
        raise ApiError(404, "unknown_symbol", f"no instrument {symbol!r}")
    return instrument


_WHOLE = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() takes other scripts' digits and "²"


def bounded_int(request: Request, name: str, *, default: int, top: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _WHOLE.fullmatch(raw) or not 1 <= int(raw) <= top:
        raise ApiError(400, "invalid_request", f"{name} must be a whole number from 1 to {top}")
    return int(raw)


def at_tick_precision(price: Decimal, instrument: Instrument) -> Decimal:
    """A price (an average, say) with as many decimals as the instrument's tick: 100.00 for 0.01."""
    places = min(0, int(instrument.tick_size.normalize().as_tuple().exponent))
    return price.quantize(Decimal(1).scaleb(places))


def _level(instrument: Instrument, price: int, qty: int) -> dict[str, str]:
    return {"price": str(instrument.ticks_to_price(price)), "quantity": str(instrument.lots_to_qty(qty))}


class PingView(APIView):
    """GET /api/ping: a cheap authenticated call, to check a token and time a round trip (the API's floor:
    authentication, rate limits and the framework, nothing else)."""

    @extend_schema(responses={200: schemas.Ping, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response({"pong": True, "username": request.user.get_username()})


class InstrumentListView(APIView):
    """GET /api/instruments: every instrument with its tick and lot size and trading status."""

    @extend_schema(responses={200: schemas.InstrumentInfo(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        return Response([{"symbol": i.symbol, "name": i.name, "tick_size": str(i.tick_size.normalize()),
                          "lot_size": str(i.lot_size.normalize()), "status": i.status}
                         for i in Instrument.objects.order_by("symbol")])


class TickerView(APIView):
    """GET /api/ticker/{symbol}: last price, best bid/ask and the rolling 24h high, low and volume."""

    @extend_schema(responses={200: schemas.Ticker, **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        instrument = _instrument(symbol)
        ticker = services.market_data().ticker(instrument.symbol)

        def price(ticks: int | None) -> str | None:
            return None if ticks is None else str(instrument.ticks_to_price(ticks))

        return Response({
            "symbol": instrument.symbol,
            "seq": ticker.seq,
            "last": price(ticker.last),
            "best_bid": price(ticker.bid),
            "best_ask": price(ticker.ask),
            "open_24h": price(ticker.open),
            "high_24h": price(ticker.high),
            "low_24h": price(ticker.low),
            "volume_24h": str(instrument.lots_to_qty(ticker.volume)),
        })


class TokenView(ObtainAuthToken):
    """POST /api/token (username, password): the user's API token, for `Authorization: Token <key>`."""

    throttle_classes = (LoginThrottle,)  # 429 past the failed-login budget, before the password is hashed

    # ObtainAuthToken names DRF's own JSON parser. (APISettings imports the classes; its stubs say strings.)
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES  # type: ignore[assignment]

    @extend_schema(request=AuthTokenSerializer, responses={200: schemas.TokenResult, **ERRORS},
                   examples=schemas.TOKEN_EXAMPLES)
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().post(request, *args, **kwargs)
