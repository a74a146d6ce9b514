"""Commands: everything that can change a book. Time and ids arrive inside them.

Prices are integer ticks and quantities integer lots. `timestamp` is nanoseconds since the
epoch as stamped by the sequencer; the engine never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from matching.engine.types import OrderType, Side, STPMode, TimeInForce


@dataclass(slots=True)
class NewOrder:
    order_id: int
    owner: int
    symbol: str
    side: Side
    qty: int
    price: int | None = None  # limit price: required for LIMIT and STOP_LIMIT; a MARKET order's protection
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stop_price: int | None = None  # required for STOP and STOP_LIMIT
    expire_at: int | None = None  # required for DAY and GTD
    stp: STPMode = STPMode.CANCEL_NEWEST
    timestamp: int = 0
    client_order_id: str | None = None  # the client's idempotency key; the engine ignores it


@dataclass(slots=True)
class CancelOrder:
    order_id: int
    owner: int
    symbol: str
    timestamp: int = 0


@dataclass(slots=True)
class AmendOrder:
    """Change a live order. `qty` is the new total quantity (FIX style), so it must exceed
    what has already filled. Lowering qty keeps queue priority; anything else loses it."""

    order_id: int
    owner: int
    symbol: str
    qty: int | None = None
    price: int | None = None
    stop_price: int | None = None
    timestamp: int = 0


@dataclass(slots=True)
class AdvanceTime:
    """Lets time pass without order flow, so DAY/GTD orders expire on schedule."""

    timestamp: int


Command = NewOrder | CancelOrder | AmendOrder | AdvanceTime
