"""What a matcher reply did to each order it touched: one typed interpreter of the engine's (and the risk
stage's) events, shared by the REST and WebSocket answers, the projector and the market maker.

    outcomes(reply.events) -> {order_id: OrderOutcome}      (in the order the events first name them)

An `OrderOutcome` holds only what the events say: the status they leave the order in (None when they
do not change it: a self-trade reduction, an amendment of a resting order), the lots still live, the
fills, the lots taken away without a trade, and the reasons. Prior state (a row, a view) is the
caller's to fold it into. Pure: no Django, no I/O; integers (ticks, lots, engine ns) throughout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from matching.engine import (
    AmendRejected,
    CancelReason,
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
    Side,
    StopTriggered,
    Trade,
)
from risk.core import HeldOrderReleased, OrderHeld

STOP_TYPES = frozenset((OrderType.STOP, OrderType.STOP_LIMIT))
LIVE = frozenset((OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING, OrderStatus.HELD))


class Liquidity(StrEnum):
    TAKER = "taker"
    MAKER = "maker"


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade as one of its two orders saw it."""

    trade_id: int
    symbol: str
    side: Side  # this order's side
    price: int
    qty: int
    liquidity: Liquidity
    timestamp: int
    trade: Trade


@dataclass(slots=True)
class OrderOutcome:
    order_id: int
    owner: int
    symbol: str
    status: OrderStatus | None = None  # None: the events leave the status as it was
    remaining: int | None = None  # lots still live after the reply; None: the events do not say
    fills: list[Fill] = field(default_factory=list)
    taken_away: int = 0  # lots canceled, expired or reduced without a trade
    cancel_reason: CancelReason | None = None
    reject_reason: RejectReason | None = None  # the order's rejection (its status says REJECTED)
    refused: CancelRejected | AmendRejected | None = None  # a cancel or amendment of it, refused
    accepted: OrderAccepted | OrderHeld | None = None  # a new order, as taken (or held)
    amended: OrderAmended | None = None
    released: bool = False  # a held order an admin let through
    timestamp: int = 0  # of the last event about it

    @property
    def filled(self) -> int:
        return sum(fill.qty for fill in self.fills)

    @property
    def notional(self) -> int:
        """Sum of price ticks * lots over the fills."""
        return sum(fill.price * fill.qty for fill in self.fills)

    @property
    def live(self) -> bool | None:
        return None if self.status is None else self.status in LIVE


def outcomes(events: Iterable[object]) -> dict[int, OrderOutcome]:
    """Fold a reply's events into one outcome per order, in event order."""
    found: dict[int, OrderOutcome] = {}

    def of(order_id: int, owner: int, symbol: str, timestamp: int) -> OrderOutcome:
        outcome = found.get(order_id)
        if outcome is None:
            outcome = found[order_id] = OrderOutcome(order_id, owner, symbol)
        outcome.timestamp = timestamp
        return outcome

    for event in events:
        if isinstance(event, Trade):
            taker = of(event.taker_order_id, event.taker_owner, event.symbol, event.timestamp)
            maker = of(event.maker_order_id, event.maker_owner, event.symbol, event.timestamp)
            maker_side = Side.SELL if event.taker_side is Side.BUY else Side.BUY
            for outcome, side, remaining, liquidity in (
                    (taker, event.taker_side, event.taker_remaining, Liquidity.TAKER),
                    (maker, maker_side, event.maker_remaining, Liquidity.MAKER)):
                outcome.fills.append(Fill(event.trade_id, event.symbol, side, event.price, event.qty,
                                          liquidity, event.timestamp, event))
                outcome.remaining = remaining
                outcome.status = OrderStatus.FILLED if remaining == 0 else OrderStatus.PARTIALLY_FILLED
            continue
        if not isinstance(event, _ORDER_EVENTS):
            continue  # BookDelta and the accounts' events: not an order's
        outcome = of(event.order_id, event.owner, event.symbol, event.timestamp)
        if isinstance(event, OrderAccepted):
            outcome.accepted = outcome.accepted or event  # a released held order keeps its OrderHeld
            outcome.remaining = event.qty
            outcome.status = OrderStatus.PENDING if event.order_type in STOP_TYPES else OrderStatus.OPEN
        elif isinstance(event, OrderHeld):
            outcome.accepted, outcome.remaining, outcome.status = event, event.qty, OrderStatus.HELD
        elif isinstance(event, HeldOrderReleased):
            outcome.released = True
        elif isinstance(event, OrderRejected):
            outcome.status, outcome.reject_reason = OrderStatus.REJECTED, event.reason
            if outcome.remaining:  # a held order refused at last: its lots leave without a trade
                outcome.taken_away += outcome.remaining
            outcome.remaining = 0
        elif isinstance(event, StopTriggered):
            outcome.status = OrderStatus.OPEN
        elif isinstance(event, OrderAmended):
            outcome.amended, outcome.remaining = event, event.remaining
        elif isinstance(event, OrderReduced):
            outcome.remaining = event.remaining  # a self-trade decrement: the rest stays live
            outcome.taken_away += event.reduced_qty
        elif isinstance(event, OrderCanceled):
            outcome.status, outcome.remaining, outcome.cancel_reason = OrderStatus.CANCELED, 0, event.reason
            outcome.taken_away += event.canceled_qty
        elif isinstance(event, OrderExpired):
            outcome.status, outcome.remaining = OrderStatus.EXPIRED, 0
            outcome.taken_away += event.canceled_qty
        else:  # CancelRejected | AmendRejected: the order is as it was
            outcome.refused = event
    return found


_ORDER_EVENTS = (OrderAccepted, OrderHeld, HeldOrderReleased, OrderRejected, StopTriggered, OrderAmended,
                 OrderReduced, OrderCanceled, OrderExpired, CancelRejected, AmendRejected)
