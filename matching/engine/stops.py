"""Stop and stop-limit orders waiting for the last trade price to reach them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from matching.engine.order import Order
from matching.engine.types import Side


class StopBook:
    """Pending stops in trigger order: buys by stop price ascending (they trigger when the last
    price rises to them), sells by stop price descending, each FIFO within a price."""

    __slots__ = ("buys", "keys", "sells", "seq")

    def __init__(self) -> None:
        self.buys: SortedList = SortedList()
        self.sells: SortedList = SortedList()
        self.keys: dict[int, tuple[int, int, int]] = {}
        self.seq = 0

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, order_id: int) -> bool:
        return order_id in self.keys

    def add(self, order: Order) -> None:
        self.seq += 1
        stop = cast(int, order.stop_price)
        if order.side is Side.BUY:
            key = (stop, self.seq, order.order_id)
            self.buys.add(key)
        else:
            key = (-stop, self.seq, order.order_id)
            self.sells.add(key)
        self.keys[order.order_id] = key

    def remove(self, order: Order) -> None:
        key = self.keys.pop(order.order_id)
        (self.buys if order.side is Side.BUY else self.sells).remove(key)

    def pop_triggered(self, last_price: int) -> int | None:
        """The id of the next stop that `last_price` triggers, taken out of the book."""
        buys, sells = self.buys, self.sells
        if buys and buys[0][0] <= last_price:
            key = buys.pop(0)
        elif sells and -sells[0][0] >= last_price:
            key = sells.pop(0)
        else:
            return None
        del self.keys[key[2]]
        return key[2]

    def state(self) -> tuple:
        return (tuple(self.buys), tuple(self.sells), self.seq)

    def restore(self, state: Sequence) -> None:
        buys, sells, self.seq = state
        self.buys = SortedList(tuple(key) for key in buys)
        self.sells = SortedList(tuple(key) for key in sells)
        self.keys = {key[2]: key for key in (*self.buys, *self.sells)}
