"""A live order inside a book, and one price level's FIFO queue."""

from __future__ import annotations

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

    @classmethod
    def with_values(cls, order_id: int, owner: int, side: Side, order_type: OrderType, price: int | None,
                    qty: int, remaining: int, tif: TimeInForce, post_only: bool, stop_price: int | None,
                    expire_at: int | None, stp: STPMode, timestamp: int) -> Order:
        order = cls(NewOrder(order_id, owner, "", side, qty, price, order_type, tif, post_only, stop_price,
                             expire_at, stp, timestamp), timestamp)
        order.remaining = remaining
        return order

    def copy(self) -> Order:
        return Order.with_values(self.order_id, self.owner, self.side, self.order_type, self.price, self.qty,
                                 self.remaining, self.tif, self.post_only, self.stop_price, self.expire_at,
                                 self.stp, self.timestamp)

    @classmethod
    def from_state(cls, values: Sequence) -> Order:
        """The inverse of `state()` (also from JSON lists)."""
        (order_id, owner, side, order_type, price, qty, remaining, tif, post_only, stop_price, expire_at,
         stp, timestamp) = values
        return cls.with_values(order_id, owner, Side(side), OrderType(order_type), price, qty, remaining,
                               TimeInForce(tif), post_only, stop_price, expire_at, STPMode(stp), timestamp)

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
    """All resting orders at one price, oldest first, from `orders[head]` on. `qty` and `count` cover
    live orders only; entries before `head` are done with (filled or canceled) and are trimmed in bulk.
    A list with a head index rather than a deque: the same cost interpreted, and compiled its
    indexing and appends are native while deque methods are generic calls."""

    __slots__ = ("count", "dead", "head", "orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0
        self.count = 0
        self.dead = 0  # canceled entries still queued at or after head
        self.head = 0
        self.orders: list[Order] = []

    def live(self) -> list[Order]:
        return [o for o in self.orders if o.remaining]

    def compact(self) -> None:
        """Drop canceled entries once they outnumber live ones (keeps memory bounded).
        Called only when there are more than a few, so small levels never pay for it."""
        if self.dead > self.count:
            self.orders = self.live()
            self.head = self.dead = 0

    def trim(self) -> None:
        """Forget the entries before head once they are most of the list."""
        if self.head > 32 and 2 * self.head > len(self.orders):
            del self.orders[: self.head]
            self.head = 0
