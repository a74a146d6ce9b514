"""Events: everything the engine says, as small immutable records.

They are typed named tuples rather than dataclasses for one reason: the engine's hot path can
build them at C speed with `tuple.__new__(Trade, (...))` (about half the cost of a dataclass
`__init__`). Equality also compares the event type, so a CancelRejected never equals an
AmendRejected with the same fields.

Every order's quantity is accounted for by its events:
qty = sum(Trade.qty) + remaining + sum(canceled/expired/reduced quantities).
"""

from __future__ import annotations

from typing import NamedTuple

from matching.engine.types import CancelReason, OrderType, RejectReason, Side


class OrderAccepted(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    side: Side
    order_type: OrderType
    price: int | None
    qty: int
    timestamp: int


class OrderRejected(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    reason: RejectReason
    timestamp: int


class Trade(NamedTuple):
    trade_id: int  # per symbol, 1, 2, 3 ...
    symbol: str
    price: int  # always the resting (maker) order's price
    qty: int
    taker_order_id: int
    taker_owner: int
    taker_side: Side
    taker_remaining: int
    maker_order_id: int
    maker_owner: int
    maker_remaining: int
    timestamp: int


class OrderCanceled(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    canceled_qty: int
    reason: CancelReason
    timestamp: int


class OrderExpired(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    canceled_qty: int
    timestamp: int


class OrderReduced(NamedTuple):
    """Part of a live order was taken away without a trade (self-trade decrement)."""

    order_id: int
    owner: int
    symbol: str
    reduced_qty: int
    remaining: int
    reason: CancelReason
    timestamp: int


class OrderAmended(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    price: int | None
    qty: int
    remaining: int
    stop_price: int | None
    kept_priority: bool
    timestamp: int


class CancelRejected(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    reason: RejectReason
    timestamp: int


class AmendRejected(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    reason: RejectReason
    timestamp: int


class StopTriggered(NamedTuple):
    order_id: int
    owner: int
    symbol: str
    stop_price: int
    last_price: int
    timestamp: int


class BookDelta(NamedTuple):
    """The new aggregate quantity at one price level (0: the level is gone)."""

    symbol: str
    side: Side
    price: int
    qty: int


Event = (
    OrderAccepted
    | OrderRejected
    | Trade
    | OrderCanceled
    | OrderExpired
    | OrderReduced
    | OrderAmended
    | CancelRejected
    | AmendRejected
    | StopTriggered
    | BookDelta
)


def _same_event(self: tuple, other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _other_event(self: tuple, other: object) -> bool:
    return not _same_event(self, other)


for _event_type in Event.__args__:
    _event_type.__eq__ = _same_event
    _event_type.__ne__ = _other_event
    _event_type.__hash__ = tuple.__hash__
