"""Thin views: parse with a serializer, call a service, shape the answer. The seed's paths and shapes."""

from __future__ import annotations

import re
import time
from decimal import Decimal

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
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

from exchange.api import schemas
from exchange.api.errors import ApiError, body
from exchange.api.serializers import OrderRequest, order_spec
from exchange.api.throttles import LoginThrottle
from exchange.models import Instrument
from exchange.users import signed_in_user
from matching import selectors, services
from matching.engine import (
    CancelRejected,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    OrderStatus,
    OrderType,
    RejectReason,
    StopTriggered,
    STPMode,
    Trade,
)
from matching.timestamps import to_datetime
from matching.worker.matcher import Reply
from risk import selectors as risk_selectors
from risk.core import OrderHeld
from risk.models import RiskLimit, UserRiskLimit

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
        started = time.perf_counter_ns()
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user_id = signed_in_user(request).pk
        default_stp = STPMode.CANCEL_NEWEST if "stp" in data else risk_selectors.stp_default(user_id=user_id)
        reply = services.order_submit(user_id=user_id, order=order_spec(data, default_stp))
        services.projection_catch_up([reply])  # a read after this answer sees the order and its fills
        return Response(submit_outcome(reply, data["instrument"], started), status.HTTP_201_CREATED)


class CancelView(APIView):
    """DELETE /api/cancel/{order_id}: cancel one of my orders (404 for anyone else's)."""

    throttle_scope = "submit"  # the order budget (exchange/api/throttles.py)

    @extend_schema(responses={200: schemas.CancelResult, **ERRORS})
    def delete(self, request: Request, order_id: int) -> Response:
        user = signed_in_user(request)
        order = selectors.order_get(user=user, order_id=order_id)
        if order is None:
            raise ApiError(404, "not_found", "no such order of yours (it may take a moment to appear)")
        reply = services.order_cancel(user_id=user.pk, symbol=order.symbol, order_id=order_id)
        for event in reply.events:
            if isinstance(event, OrderCanceled) and event.order_id == order_id:
                lots = get_object_or_404(Instrument, symbol=order.symbol).lots_to_qty(event.canceled_qty)
                services.projection_catch_up([reply])  # a read after this answer sees it
                return Response({"success": True, "order_id": order_id, "status": OrderStatus.CANCELED,
                                 "canceled_quantity": str(lots)})
            if isinstance(event, CancelRejected):
                break
        raise ApiError(409, "order_not_open", "the order is no longer open (filled, canceled or expired)")


# The risk stage's reasons, in words; the engine's read well as their codes.
REJECT_MESSAGES = {
    RejectReason.POSITION_LIMIT: "with your open orders, the order could take your position past its limit",
    RejectReason.ORDER_SIZE: "the order is larger than the largest order allowed in this instrument",
    RejectReason.PRICE_BAND: "the price is too far from the last trade price (price band)",
    RejectReason.INSUFFICIENT_FUNDS: "not enough available cash (cash minus what open orders reserve)",
    RejectReason.HALTED: "trading in this instrument is halted; cancels are still accepted",
}


def refusal(reason: RejectReason, *, user_id: int, instrument: Instrument, what: str = "order",
            **extra: object) -> ApiError:
    """The 422 for a rejection by the engine or the risk stage: the reason as its code, in words, and
    for a limit the limit itself (as configured now: `max_quantity`, `max_position`, `price_band_pct`)."""
    message = REJECT_MESSAGES.get(reason, f"the exchange rejected the {what}: {reason}")
    if reason in (RejectReason.ORDER_SIZE, RejectReason.POSITION_LIMIT, RejectReason.PRICE_BAND):
        limits = risk_limits(user_id=user_id, instrument=instrument)
        symbol = instrument.symbol
        if reason is RejectReason.ORDER_SIZE and limits["max_order_size"] is not None:
            largest = _quantity(instrument, limits["max_order_size"])
            message = f"the order is larger than the largest order allowed in {symbol}: at most {largest}"
            extra["max_quantity"] = largest
        elif reason is RejectReason.POSITION_LIMIT and limits["max_position"] is not None:
            largest = _quantity(instrument, limits["max_position"])
            message = (f"with your open orders, the order could take your position in {symbol} past its "
                       f"limit of {largest} either way")
            extra["max_position"] = largest
        elif reason is RejectReason.PRICE_BAND and limits["price_band_pct"] is not None:
            band = format(limits["price_band_pct"].normalize(), "f")
            message = (f"the price is more than {band}% from the last trade price (or the reference price "
                       "before the first trade)")
            extra["price_band_pct"] = band
    return ApiError(422, str(reason), message, **extra)


def risk_limits(*, user_id: int, instrument: Instrument) -> dict[str, Decimal | None]:
    """The user's limits in the instrument as configured now: their override, else the instrument's."""
    names = ("max_order_size", "max_position", "price_band_pct")
    found: dict[str, Decimal | None] = dict.fromkeys(names)
    found.update(RiskLimit.objects.filter(instrument=instrument).values(*names).first() or {})
    overridable = ("max_order_size", "max_position")
    override = UserRiskLimit.objects.filter(user_id=user_id, instrument=instrument).values_list(
        *overridable).first()
    if override is not None:
        found.update({name: value for name, value in zip(overridable, override, strict=True)
                      if value is not None})
    return found


def _quantity(instrument: Instrument, value: Decimal) -> str:
    try:
        return str(instrument.lots_to_qty(instrument.qty_to_lots(value)))
    except ValueError:
        return format(value.normalize(), "f")


def submit_outcome(reply: Reply, instrument: Instrument, started_ns: int) -> dict:
    """The seed's response: success, order_id, status, trades, remaining_quantity, latency_us."""
    if reply.duplicate:
        return {"success": True, "order_id": reply.order_id, "duplicate": True,
                "status": "duplicate", "trades": [], "remaining_quantity": None,
                "latency_us": (time.perf_counter_ns() - started_ns) // 1000}
    return order_outcome(reply, instrument, started_ns)


def order_outcome(reply: Reply, instrument: Instrument, started_ns: int, *, pending: bool = False) -> dict:
    """The order `reply.order_id` as the reply leaves it (a new order's, or an amended one's): status,
    the trades it made, what remains. `pending`: the order is an untriggered stop (an amendment's)."""
    order_id = reply.order_id
    state, remaining, trades, cancel_reason = OrderStatus.OPEN, None, [], None
    for event in reply.events:
        if isinstance(event, OrderRejected) and event.order_id == order_id:
            raise refusal(event.reason, user_id=event.owner, instrument=instrument, order_id=order_id,
                          status=OrderStatus.REJECTED)
        if isinstance(event, OrderHeld) and event.order_id == order_id:
            state, remaining = OrderStatus.HELD, event.qty
        if isinstance(event, OrderAccepted) and event.order_id == order_id:
            remaining = event.qty
            stop = event.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
            state = OrderStatus.PENDING if stop else OrderStatus.OPEN
        elif isinstance(event, OrderAmended) and event.order_id == order_id:
            remaining = event.remaining
            state = (OrderStatus.PENDING if pending else OrderStatus.OPEN if event.remaining == event.qty
                     else OrderStatus.PARTIALLY_FILLED)
        elif isinstance(event, Trade) and order_id in (event.taker_order_id, event.maker_order_id):
            remaining = event.taker_remaining if event.taker_order_id == order_id else event.maker_remaining
            state = OrderStatus.FILLED if remaining == 0 else OrderStatus.PARTIALLY_FILLED
            trades.append({"trade_id": f"{event.symbol}-{event.trade_id}",
                           "price": str(instrument.ticks_to_price(event.price)),
                           "quantity": str(instrument.lots_to_qty(event.qty)),
                           "timestamp": _iso(event.timestamp)})
        elif isinstance(event, StopTriggered) and event.order_id == order_id:
            state = OrderStatus.OPEN
        elif isinstance(event, OrderReduced) and event.order_id == order_id:
            remaining = event.remaining  # a self-trade decrement: the rest stays live
        elif isinstance(event, OrderCanceled) and event.order_id == order_id:
            state, remaining, cancel_reason = OrderStatus.CANCELED, 0, str(event.reason)
        elif isinstance(event, OrderExpired) and event.order_id == order_id:
            state, remaining = OrderStatus.EXPIRED, 0
    return {
        "success": True,
        "order_id": order_id,
        "status": state,
        "cancel_reason": cancel_reason,
        "trades": trades,
        "remaining_quantity": None if remaining is None else str(instrument.lots_to_qty(remaining)),
        "latency_us": (time.perf_counter_ns() - started_ns) // 1000,
    }


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
    instrument = Instrument.objects.filter(symbol=symbol).first()
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
