"""A live order inside a book, and one price level's FIFO queue."""

from __future__ import annotations

from collections import deque

from matching.engine.types import OrderType, Side, STPMode, TimeInForce


class Order:
    """Mutable state of one live order (resting or waiting for its stop trigger).

    `remaining == 0` marks an entry that was canceled but is still queued in its level
    (removed lazily when it reaches the head), so a queued Order is never reused:
    an amend that loses priority queues a fresh copy.
    """

    __slots__ = (
        "expire_at",
        "filled",
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

    def __init__(
        self,
        order_id: int,
        owner: int,
        side: Side,
        order_type: OrderType,
        price: int | None,
        qty: int,
        tif: TimeInForce,
        post_only: bool,
        stop_price: int | None,
        expire_at: int | None,
        stp: STPMode,
        timestamp: int,
    ) -> None:
        self.order_id = order_id
        self.owner = owner
        self.side = side
        self.order_type = order_type
        self.price = price
        self.qty = qty
        self.remaining = qty
        self.filled = 0
        self.tif = tif
        self.post_only = post_only
        self.stop_price = stop_price
        self.expire_at = expire_at
        self.stp = stp
        self.timestamp = timestamp

    def copy(self) -> Order:
        clone = Order(
            self.order_id,
            self.owner,
            self.side,
            self.order_type,
            self.price,
            self.qty,
            self.tif,
            self.post_only,
            self.stop_price,
            self.expire_at,
            self.stp,
            self.timestamp,
        )
        clone.remaining = self.remaining
        clone.filled = self.filled
        return clone

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
            self.filled,
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
        """Drop canceled entries once they outnumber live ones (keeps memory bounded)."""
        if self.dead > 16 and self.dead > self.count:
            self.orders = deque(self.live())
            self.dead = 0
