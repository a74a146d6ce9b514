"""Order entry as plain functions: validate, send to the matcher, answer in the API's shapes.

DRF's views (POST /api/submit, DELETE /api/cancel/{id}, PATCH /api/orders/{id}) and the WebSocket's
`order.submit` / `order.cancel` / `order.amend` call these, so both doors validate, refuse and answer
alike. Each returns the success body and raises for anything else: `ApiError` (a refusal with its code),
DRF's `ValidationError` (bad fields), `Unavailable` (the matcher did not answer). `answer()` turns that
into (status, body) through the API's one exception handler, for callers outside DRF. Rate limits are
the caller's door's to take (`exchange.api.throttles.take_call`).

Cancel and amend are routed by the order id alone (it names the shard; the shard finds the symbol), so
they work the moment a submit has answered, whatever the projection has written yet; the projection is
read only to tell an order that is no longer open (409) from one that is not yours or never was (404).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from rest_framework import status

from exchange.api.errors import ApiError, exception_handler
from exchange.api.serializers import AmendRequest, OrderRequest, order_spec
from exchange.models import Instrument
from matching import selectors, services
from matching.engine import OrderStatus, RejectReason, STPMode
from matching.outcomes import OrderOutcome, outcomes
from matching.services import OrderSpec
from matching.timestamps import to_datetime
from matching.worker.bus import Unavailable
from matching.worker.matcher import Reply
from risk import selectors as risk_selectors
from risk.models import RiskLimit, UserRiskLimit

NOT_OPEN = "the order is no longer open (filled, canceled or expired)"
NOT_YOURS = "no such order of yours"


@dataclass(slots=True)
class Placement:
    """A validated new order, ready to send: whose, its instrument, what the services take."""

    user_id: int
    instrument: Instrument
    spec: OrderSpec
    started_ns: int  # when its request began (the answer's latency_us)


class OrderForms:
    """Validates new orders (POST /api/submit's fields, `OrderRequest`) one after another with one
    serializer: DRF copies a serializer's declared fields for every instance it makes (about half a
    millisecond here), so a batch pays that once instead of once an order."""

    def __init__(self) -> None:
        self.form = OrderRequest()

    def prepare(self, *, user_id: int, data: Any, started_ns: int | None = None) -> Placement:
        """The order `data` of the user, validated (raises DRF's ValidationError, as `is_valid` would)."""
        started = time.perf_counter_ns() if started_ns is None else started_ns
        valid = self.form.run_validation(data)
        default_stp = STPMode.CANCEL_NEWEST if "stp" in valid else risk_selectors.stp_default(user_id=user_id)
        return Placement(user_id, valid["instrument"], order_spec(valid, default_stp), started)


def place(placements: Sequence[Placement]) -> list[dict[str, Any] | Exception]:
    """Send validated orders to the matcher together and answer each: its 201 body, or the exception a
    single submit would raise for it (ApiError 422 for a rejection, Unavailable). One wait for the
    projection covers them all, so a read after any answer sees its order and fills. Raises
    Unavailable when none could be sent."""
    replies = services.order_submit_many(orders=[(p.user_id, p.spec) for p in placements])
    services.projection_catch_up([reply for reply in replies if isinstance(reply, Reply)])
    out: list[dict[str, Any] | Exception] = []
    for placement, reply in zip(placements, replies, strict=True):
        if isinstance(reply, Unavailable):
            out.append(reply)
            continue
        try:
            out.append(submit_outcome(reply, placement.instrument, placement.started_ns))
        except ApiError as refused:
            out.append(refused)
    return out


def submit(*, user: User, data: Any) -> dict[str, Any]:
    """Place an order; the 201 body once the matcher has matched it (or refused it: ApiError 422)."""
    placement = OrderForms().prepare(user_id=user.pk, data=data)
    reply = services.order_submit(user_id=placement.user_id, order=placement.spec)
    services.projection_catch_up([reply])  # a read after this answer sees the order and its fills
    return submit_outcome(reply, placement.instrument, placement.started_ns)


def cancel(*, user: User, order_id: int) -> dict[str, Any]:
    """Cancel one of the user's live orders."""
    if not services.order_id_known(order_id):
        raise ApiError(404, "not_found", NOT_YOURS)
    reply = services.order_cancel(user_id=user.pk, order_id=order_id)
    outcome = outcomes(reply.events).get(order_id)
    if outcome is None or outcome.status is not OrderStatus.CANCELED:
        raise _not_live(user, order_id)
    services.projection_catch_up([reply])  # a read after this answer sees it
    instrument = Instrument.objects.get(symbol=outcome.symbol)
    return {"success": True, "order_id": order_id, "status": OrderStatus.CANCELED,
            "canceled_quantity": str(instrument.lots_to_qty(outcome.taken_away))}


def amend(*, user: User, order_id: int, data: Any) -> dict[str, Any]:
    """Change a live order's quantity (the new total), price or stop price."""
    started = time.perf_counter_ns()
    form = AmendRequest(data=data)
    form.is_valid(raise_exception=True)
    # The units need the order's instrument, which only the projection knows here; it holds the order
    # once the submit has answered (read-your-writes), so this 404 is for orders that are not the user's.
    order = selectors.order_get(user=user, order_id=order_id)
    if order is None:
        raise ApiError(404, "not_found", f"{NOT_YOURS} (a new one may take a moment to appear)")
    instrument = Instrument.objects.get(symbol=order.symbol)
    reply = services.order_amend(user_id=user.pk, order_id=order_id, symbol=order.symbol, order=order,
                                 **form.to_units(instrument))
    outcome = outcomes(reply.events).get(order_id)
    if outcome is None or outcome.amended is None:
        refused = None if outcome is None else outcome.refused
        if refused is None or refused.reason in (RejectReason.UNKNOWN_ORDER, RejectReason.UNKNOWN_SYMBOL):
            raise _not_live(user, order_id)
        raise refusal(refused.reason, user_id=user.pk, instrument=instrument, what="amendment",
                      order_id=order_id)
    services.projection_catch_up([reply])  # a read after this answer sees it
    pending = order.status == OrderStatus.PENDING  # an untriggered stop stays pending
    event = outcome.amended
    price, stop = event.price, event.stop_price
    return {
        **order_outcome(reply, instrument, started, pending=pending),
        "kept_priority": event.kept_priority,
        "price": None if price is None else str(instrument.ticks_to_price(price)),
        "stop_price": None if stop is None else str(instrument.ticks_to_price(stop)),
        "quantity": str(instrument.lots_to_qty(event.qty)),
    }


def answer(call: Callable[[], dict[str, Any]], *, ok: int = status.HTTP_200_OK) -> tuple[int, dict[str, Any]]:
    """(status, body) of an order-entry call for a door outside DRF (the WebSocket): `ok` and the body,
    or exactly the status and error body the REST API answers for the same refusal."""
    try:
        return ok, call()
    except Exception as exc:
        return failed(exc)


def failed(exc: Exception) -> tuple[int, dict[str, Any]]:
    """(status, body) the REST API answers for a refusal `exc`; anything else (a bug) is raised again,
    for the caller's own error handling."""
    response = exception_handler(exc, {})
    if response is None:
        raise exc
    return response.status_code, dict(response.data or {})


def _not_live(user: User, order_id: int) -> ApiError:
    """A cancel or amendment found no live order of the user's: 409 if the order is theirs (no longer
    open), else 404 (someone else's orders are as unknown as ones that never were)."""
    if selectors.order_get(user=user, order_id=order_id) is not None:
        return ApiError(409, "order_not_open", NOT_OPEN)
    return ApiError(404, "not_found", NOT_YOURS)


# ---- answers ---------------------------------------------------------------------------------

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


def submit_outcome(reply: Reply, instrument: Instrument, started_ns: int) -> dict[str, Any]:
    """The seed's response: success, order_id, status, trades, remaining_quantity, latency_us."""
    if reply.duplicate:
        return {"success": True, "order_id": reply.order_id, "duplicate": True,
                "status": "duplicate", "trades": [], "remaining_quantity": None,
                "latency_us": (time.perf_counter_ns() - started_ns) // 1000}
    return order_outcome(reply, instrument, started_ns)


def order_outcome(reply: Reply, instrument: Instrument, started_ns: int, *,
                  pending: bool = False) -> dict[str, Any]:
    """The order `reply.order_id` as the reply leaves it (a new order's, or an amended one's): status,
    the trades it made, what remains. `pending`: the order is an untriggered stop (an amendment's).
    A rejection raises the 422 (`refusal`)."""
    order_id = reply.order_id
    outcome = outcomes(reply.events).get(order_id) or OrderOutcome(order_id, 0, instrument.symbol)
    if outcome.reject_reason is not None:
        raise refusal(outcome.reject_reason, user_id=outcome.owner, instrument=instrument, order_id=order_id,
                      status=OrderStatus.REJECTED)
    state, remaining = outcome.status, outcome.remaining
    if state is None:  # an amendment of a resting order (or nothing said): live, with or without fills
        state = (OrderStatus.PENDING if pending else OrderStatus.OPEN
                 if remaining is None or outcome.amended is None or remaining == outcome.amended.qty
                 else OrderStatus.PARTIALLY_FILLED)
    return {
        "success": True,
        "order_id": order_id,
        "status": state,
        "cancel_reason": None if outcome.cancel_reason is None else str(outcome.cancel_reason),
        "trades": [{"trade_id": f"{fill.symbol}-{fill.trade_id}",
                    "price": str(instrument.ticks_to_price(fill.price)),
                    "quantity": str(instrument.lots_to_qty(fill.qty)),
                    "timestamp": to_datetime(fill.timestamp).isoformat()} for fill in outcome.fills],
        "remaining_quantity": None if remaining is None else str(instrument.lots_to_qty(remaining)),
        "latency_us": (time.perf_counter_ns() - started_ns) // 1000,
    }

