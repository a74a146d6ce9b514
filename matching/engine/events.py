"""Events: everything the engine says. Small mutable-free records; consumers never change them.

Every order's quantity is accounted for by its events:
qty = sum(Trade.qty) + remaining + sum(canceled/expired/reduced quantities).
"""

from __future__ import annotations

from dataclasses import dataclass

from matching.engine.types import CancelReason, OrderType, RejectReason, Side


@dataclass(slots=True)
class OrderAccepted:
    order_id: int
    owner: int
    symbol: str
    side: Side
    order_type: OrderType
    price: int | None
    qty: int
    timestamp: int


@dataclass(slots=True)
class OrderRejected:
    order_id: int
    owner: int
    symbol: str
    reason: RejectReason
    timestamp: int


@dataclass(slots=True)
class Trade:
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


@dataclass(slots=True)
class OrderCanceled:
    order_id: int
    owner: int
    symbol: str
    canceled_qty: int
    reason: CancelReason
    timestamp: int


@dataclass(slots=True)
class OrderExpired:
    order_id: int
    owner: int
    symbol: str
    canceled_qty: int
    timestamp: int


@dataclass(slots=True)
class OrderReduced:
    """Part of a live order was taken away without a trade (self-trade decrement)."""

    order_id: int
    owner: int
    symbol: str
    reduced_qty: int
    remaining: int
    reason: CancelReason
    timestamp: int


@dataclass(slots=True)
class OrderAmended:
    order_id: int
    owner: int
    symbol: str
    price: int | None
    qty: int
    remaining: int
    stop_price: int | None
    kept_priority: bool
    timestamp: int


@dataclass(slots=True)
class CancelRejected:
    order_id: int
    owner: int
    symbol: str
    reason: RejectReason
    timestamp: int


@dataclass(slots=True)
class AmendRejected:
    order_id: int
    owner: int
    symbol: str
    reason: RejectReason
    timestamp: int


@dataclass(slots=True)
class StopTriggered:
    order_id: int
    owner: int
    symbol: str
    stop_price: int
    last_price: int
    timestamp: int


@dataclass(slots=True)
class BookDelta:
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
