"""My orders, read from the projection: list, by id, by client order id. Others' orders are 404."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api import entry, schemas
from exchange.api.errors import ApiError
from exchange.api.lookups import instrument_get
from exchange.api.serializers import AmendRequest
from exchange.api.views import ERRORS, at_tick_precision, bounded_int
from exchange.models import Instrument
from exchange.users import signed_in_user
from matching import selectors, services
from matching.engine import OrderStatus
from matching.models import Order
from matching.outcomes import LIVE, outcomes


class OrderListView(APIView):
    """GET /api/orders?status=open&symbol=AAPL&limit=100: newest first (status: one, or several
    separated by commas, e.g. open,partially_filled,pending,held for the live ones)."""

    @extend_schema(parameters=[OpenApiParameter("status", str, description="one status or several, "
                                               "comma-separated: " + ", ".join(s.value for s in OrderStatus)),
                               OpenApiParameter("symbol", str),
                               OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
                   responses={200: schemas.OrderInfo(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        status = request.query_params.get("status")
        known = {s.value for s in OrderStatus}
        asked = None if status is None else status.split(",")  # one status, or several: open,pending
        if asked is not None and not set(asked) <= known:
            raise ApiError(400, "invalid_request", f"unknown status {status!r}: one or more of "
                           f"{', '.join(sorted(known))}, separated by commas")
        symbol = request.query_params.get("symbol")
        limit = bounded_int(request, "limit", default=100, top=500)
        wanted = None if asked is None else [OrderStatus(value) for value in asked]
        orders = selectors.order_list(user=signed_in_user(request), status=wanted, symbol=symbol)[:limit]
        shown = []
        for order in orders:
            instrument = instrument_get(order.symbol)  # cached in process (exchange/api/lookups.py)
            if instrument is not None:
                shown.append(order_json(order, instrument))
        return Response(shown)


class OrderCancelAllView(APIView):
    """DELETE /api/orders/open[?symbol=AAPL]: cancel all my open orders (of one symbol)."""

    throttle_scope = "submit"  # the order budget, for DELETE/PATCH only (exchange/api/throttles.py)

    @extend_schema(parameters=[OpenApiParameter("symbol", str)],
                   responses={200: schemas.CancelAllResult, **ERRORS})
    def delete(self, request: Request) -> Response:
        symbol = request.query_params.get("symbol")
        canceled: list[int] = []
        not_open: list[int] = []
        user = signed_in_user(request)
        user_id = user.pk
        replies = []
        for order in selectors.order_list(user=user, symbol=symbol).filter(status__in=LIVE):
            order_id = order.order_id
            reply = services.order_cancel(user_id=user_id, order_id=order_id, symbol=order.symbol)
            outcome = outcomes(reply.events).get(order_id)
            done = outcome is not None and outcome.status is OrderStatus.CANCELED
            (canceled if done else not_open).append(order_id)
            replies.append(reply)
        services.projection_catch_up(replies)  # a read after this answer sees the orders canceled
        return Response({"success": True, "canceled": canceled, "not_open": not_open})


class OrderDetailView(APIView):
    """GET /api/orders/{order_id}; PATCH it to amend (lower quantity keeps queue priority)."""

    throttle_scope = "submit"  # the order budget, for DELETE/PATCH only (exchange/api/throttles.py)

    @extend_schema(responses={200: schemas.OrderInfo, **ERRORS})
    def get(self, request: Request, order_id: int) -> Response:
        return Response(_found(selectors.order_get(user=signed_in_user(request), order_id=order_id)))

    @extend_schema(request=AmendRequest, responses={200: schemas.AmendResult, **ERRORS},
                   examples=schemas.AMEND_EXAMPLES)
    def patch(self, request: Request, order_id: int) -> Response:
        return Response(entry.amend(user=signed_in_user(request), order_id=order_id, data=request.data))


class OrderByClientIdView(APIView):
    """GET /api/orders/client/{symbol}/{client_order_id}: what became of a request whose answer was lost
    (e.g. a 503 after a timeout): the order if the matcher applied it, 404 if it never arrived."""

    @extend_schema(responses={200: schemas.OrderInfo, **ERRORS})
    def get(self, request: Request, symbol: str, client_order_id: str) -> Response:
        return Response(_found(selectors.order_get_by_client_id(user=signed_in_user(request), symbol=symbol,
                                                                client_order_id=client_order_id)))


def _found(order: Order | None) -> dict:
    if order is None:
        raise ApiError(404, "not_found", "no such order of yours (a new one may take a moment to appear)")
    return order_json(order, Instrument.objects.get(symbol=order.symbol))


def order_json(order: Order, instrument: Instrument) -> dict:
    def price(ticks: int | None) -> str | None:
        return None if ticks is None else str(instrument.ticks_to_price(ticks))

    def qty(lots: int) -> str:
        return str(instrument.lots_to_qty(lots))

    average = order.average_price_ticks
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "type": order.order_type,
        "time_in_force": order.tif,
        "status": order.status,
        "price": price(order.price_ticks),
        "stop_price": price(order.stop_price_ticks),
        "quantity": qty(order.qty_lots),
        "filled_quantity": qty(order.filled_lots),
        "remaining_quantity": qty(order.remaining_lots),
        "canceled_quantity": qty(order.canceled_lots),
        "average_price": None if average is None else str(
            at_tick_precision(average * instrument.tick_size, instrument)),
        "reject_reason": order.reject_reason or None,
        "cancel_reason": order.cancel_reason or None,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }


class FillListView(APIView):
    """GET /api/fills?symbol=AAPL&limit=100: my trades, newest first, with my side and role."""

    @extend_schema(parameters=[OpenApiParameter("symbol", str),
                               OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
                   responses={200: schemas.MyFill(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        limit = bounded_int(request, "limit", default=100, top=500)
        user = signed_in_user(request)
        fills = selectors.fill_list(user=user, symbol=request.query_params.get("symbol"))[:limit]
        instruments = {i.symbol: i for i in Instrument.objects.all()}
        mine = user.pk
        out = []
        for fill in fills:
            instrument = instruments[fill.symbol]
            taker = fill.taker_user_id == mine
            out.append({
                "trade_id": f"{fill.symbol}-{fill.trade_id}",
                "order_id": fill.taker_order_id if taker else fill.maker_order_id,
                "symbol": fill.symbol,
                "side": fill.taker_side if taker else fill.maker_side,
                "liquidity": "taker" if taker else "maker",
                "price": str(instrument.ticks_to_price(fill.price_ticks)),
                "quantity": str(instrument.lots_to_qty(fill.qty_lots)),
                "timestamp": fill.executed_at.isoformat(),
            })
        return Response(out)
