"""A live order inside a book, and one price level's FIFO queue."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from matching.engine.commands import NewOrder
from matching.engine.types import OrderType, Side, STPMode, TimeInForce


class Order:
    """Mutable state of one live order (resting or waiting for its stop trigger).

    Built from the command (every field copied: the caller may reuse its command object).
    `remaining == 0` marks an entry that was canceled but is still queued in its level
    (removed lazily when it reaches the head), so a queued Order is never reused: an amend
    that loses priority queues a fresh one.
    """

    __slots__ = (
        "expire_at",
        "order_id",
        "order_type",
        "owner",
        "post_only",
        "price",
        "qty",
        "remaining",
        "side",
        "stop_price",
        "stp",
        "tif",
        "timestamp",
    )

    def __init__(self, cmd: NewOrder, timestamp: int) -> None:
        self.order_id = cmd.order_id
        self.owner = cmd.owner
        self.side = cmd.side
        self.order_type = cmd.order_type
        self.price = cmd.price
        self.qty = self.remaining = cmd.qty
        self.tif = cmd.tif
        self.post_only = cmd.post_only
        self.stop_price = cmd.stop_price
        self.expire_at = cmd.expire_at
        self.stp = cmd.stp
        self.timestamp = timestamp

    def copy(self) -> Order:
        clone = Order.__new__(Order)
        for name in Order.__slots__:
            setattr(clone, name, getattr(self, name))
        return clone

    @classmethod
    def from_state(cls, values: Sequence) -> Order:
        """The inverse of `state()` (also from JSON lists)."""
        order = cls.__new__(cls)
        (order.order_id, order.owner, side, order_type, order.price, order.qty, order.remaining, tif,
         order.post_only, order.stop_price, order.expire_at, stp, order.timestamp) = values
        order.side, order.order_type = Side(side), OrderType(order_type)
        order.tif, order.stp = TimeInForce(tif), STPMode(stp)
        return order

    def state(self) -> tuple:
        """Every field, in a fixed order, as plain values (for hashing and snapshots)."""
        return (
            self.order_id,
            self.owner,
            self.side.value,
            self.order_type.value,
            self.price,
            self.qty,
            self.remaining,
            self.tif.value,
            self.post_only,
            self.stop_price,
            self.expire_at,
            self.stp.value,
            self.timestamp,
        )


class Level:
    """All resting orders at one price, oldest first. `qty` and `count` cover live orders only."""

    __slots__ = ("count", "dead", "orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0
        self.count = 0
        self.dead = 0
        self.orders: deque[Order] = deque()

    def live(self) -> list[Order]:
        return [o for o in self.orders if o.remaining]

    def compact(self) -> None:
        """Drop canceled entries once they outnumber live ones (keeps memory bounded).
        Called only when there are more than a few, so small levels never pay for it."""
        if self.dead > self.count:
            self.orders = deque(self.live())
            self.dead = 0
