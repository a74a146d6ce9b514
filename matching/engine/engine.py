"""The engine: one OrderBook per symbol behind a single `apply(command) -> events` entry point.

Deterministic by construction: no clock, no randomness, no iteration over unordered
containers in anything that decides an outcome. Replaying the same commands yields the
same events and the same `state_hash()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256

from matching.engine.book import OrderBook
from matching.engine.commands import AdvanceTime, AmendOrder, CancelOrder, Command, NewOrder
from matching.engine.events import AmendRejected, CancelRejected, Event, OrderRejected
from matching.engine.types import RejectReason

_UNKNOWN_SYMBOL_EVENT: dict[type, type[OrderRejected | CancelRejected | AmendRejected]] = {
    NewOrder: OrderRejected,
    CancelOrder: CancelRejected,
    AmendOrder: AmendRejected,
}


class MatchingEngine:
    __slots__ = ("books",)

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self.books: dict[str, OrderBook] = {}
        for symbol in symbols:
            self.add_symbol(symbol)

    def add_symbol(self, symbol: str) -> OrderBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol)
        return book

    def apply(self, cmd: Command) -> list[Event]:
        out: list[Event] = []
        if isinstance(cmd, AdvanceTime):
            for symbol in sorted(self.books):
                self.books[symbol].expire(cmd.timestamp, out)
            return out
        book = self.books.get(cmd.symbol)
        if book is None:
            rejected = _UNKNOWN_SYMBOL_EVENT[type(cmd)]
            out.append(rejected(cmd.order_id, cmd.owner, cmd.symbol, RejectReason.UNKNOWN_SYMBOL,
                                cmd.timestamp))
        elif isinstance(cmd, NewOrder):
            book.submit(cmd, out)
        elif isinstance(cmd, CancelOrder):
            book.cancel(cmd, out)
        else:
            book.amend(cmd, out)
        return out

    def state(self) -> tuple:
        """Every book's `state()`, by symbol: plain values, JSON-able, enough to restore from."""
        return tuple(self.books[symbol].state() for symbol in sorted(self.books))

    @classmethod
    def from_state(cls, state: Sequence) -> MatchingEngine:
        engine = cls()
        for book_state in state:
            book = OrderBook.from_state(book_state)
            engine.books[book.symbol] = book
        return engine

    def state_hash(self) -> str:
        """A digest of every book's full state; equal states hash equal in any process."""
        return sha256(repr(self.state()).encode()).hexdigest()
