"""Helpers for the risk core tests (no Django needed).

`r` wraps a `RiskEngine` around a `MatchingEngine` with symbols AAPL and T: short helpers place
orders (ids and timestamps counted for you) and return that command's events; every event is also
kept in `r.log`, and `r.check()` verifies the ledger against the engine and itself.
"""

from __future__ import annotations

import pytest

from matching.engine import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    MatchingEngine,
    NewOrder,
    OrderRejected,
    OrderType,
    Side,
)
from risk.core import AccountUpdate, InstrumentRisk, RiskEngine, SetDefaultCash, SetInstrumentRisk, limits

BUY, SELL = Side.BUY, Side.SELL
SYM = "AAPL"
CASH = 10_000_000  # default cash in the tests: 1,000.0000 of the currency


def of(events, *kinds):
    """The events of the given types, in order."""
    return [e for e in events if isinstance(e, kinds)]


def kinds(events):
    return [type(e).__name__ for e in events]


def rejection(events):
    """The reason of the command's OrderRejected, or None."""
    found = of(events, OrderRejected)
    return found[0].reason if found else None


class Harness:
    def __init__(self, symbols=(SYM, "T")) -> None:
        self.engine = MatchingEngine(symbols)
        self.risk = RiskEngine(self.engine)
        self.log: list = []
        self.clock = 0
        self.next_id = 1
        self.last_id = 0

    def apply(self, cmd):
        events = self.risk.apply(cmd)
        self.log.extend(events)
        return events

    def ts(self, ts=None):
        if ts is None:
            self.clock += 1
            return self.clock
        self.clock = max(self.clock, ts)
        return ts

    def admin(self, cls, *args, ts=None, **kw):
        return self.apply(cls(*args, timestamp=self.ts(ts), **kw))

    def configure(self, symbol=SYM, cash_per_tick_lot=1, **kw):
        return self.admin(SetInstrumentRisk, InstrumentRisk(symbol, cash_per_tick_lot, **kw))

    def default_cash(self, amount=CASH):
        return self.admin(SetDefaultCash, amount)

    def new(self, owner, side, qty, price=None, symbol=SYM, ts=None, oid=None, **kw):
        if oid is None:
            oid = self.next_id
            self.next_id += 1
        self.last_id = oid
        return self.apply(NewOrder(oid, owner, symbol, side, qty, price, timestamp=self.ts(ts), **kw))

    def buy(self, owner, qty, price, **kw):
        return self.new(owner, BUY, qty, price, **kw)

    def sell(self, owner, qty, price, **kw):
        return self.new(owner, SELL, qty, price, **kw)

    def market(self, owner, side, qty, **kw):
        return self.new(owner, side, qty, None, order_type=OrderType.MARKET, **kw)

    def stop(self, owner, side, qty, stop_price, price=None, **kw):
        otype = OrderType.STOP if price is None else OrderType.STOP_LIMIT
        return self.new(owner, side, qty, price, order_type=otype, stop_price=stop_price, **kw)

    def cancel(self, oid, owner, symbol=SYM, ts=None):
        return self.apply(CancelOrder(oid, owner, symbol, self.ts(ts)))

    def amend(self, oid, owner, symbol=SYM, ts=None, **kw):
        return self.apply(AmendOrder(oid, owner, symbol, timestamp=self.ts(ts), **kw))

    def advance(self, ts):
        return self.apply(AdvanceTime(self.ts(ts)))

    # ---- views ---------------------------------------------------------------------------------

    def cash(self, owner):
        """(cash, reserved) of an account."""
        account = self.risk.account(owner)
        assert account is not None, owner
        return account.cash, account.reserved

    def available(self, owner):
        account = self.risk.account(owner)
        assert account is not None, owner
        return account.cash - account.reserved

    def position(self, owner, symbol=SYM):
        """(qty, cost, realised)."""
        p = self.risk.position(owner, symbol)
        return (0, 0, 0) if p is None else (p.qty, p.cost, p.realised)

    def check(self):
        assert ledger_errors(self.risk) == []


def ledger_errors(risk: RiskEngine) -> list:
    """Everything that must hold between commands: each order's reservation is its ticket's in the
    balance stage, and each account's reserved their sum, none negative (the balance shard's own
    check); open lots match the orders; risk's orders are exactly the engine's live orders (same
    remaining) plus the held ones."""
    errors: list[tuple] = [("balances", problem) for problem in risk.balances.check()]
    ledger = risk.ledger
    reserved: dict[int, int] = {}
    open_lots: dict[tuple, list[int]] = {}
    for order in ledger.orders.values():
        if order.reserved < 0 or order.remaining <= 0:
            errors.append(("order", order))
        ticket = risk.balances.reservation(order.ticket)
        if ticket is None or (ticket.owner, ticket.amount) != (order.owner, order.reserved):
            errors.append(("ticket", order, ticket))
        reserved[order.owner] = reserved.get(order.owner, 0) + order.reserved
        lots = open_lots.setdefault((order.owner, order.symbol), [0, 0])
        lots[0 if order.side is BUY else 1] += order.remaining
    for owner, balance in risk.balances.accounts.items():
        if balance.reserved != reserved.get(owner, 0):
            errors.append(("reserved", owner, balance.reserved, reserved.get(owner, 0)))
    if len(risk.balances.reservations) != len(ledger.orders):
        errors.append(("tickets without an order", set(risk.balances.reservations)))
    for owner, holdings in ledger.accounts.items():
        for symbol, p in holdings.positions.items():
            if [p.open_buy, p.open_sell] != open_lots.get((owner, symbol), [0, 0]):
                errors.append(("open lots", owner, symbol, p.open_buy, p.open_sell))
    live = {oid: o.remaining for book in risk.engine.books.values() for oid, o in book.orders.items()}
    tracked = {oid: o.remaining for oid, o in ledger.orders.items() if oid not in risk.held}
    if live != tracked:
        errors.append(("orders", live, tracked))
    if set(risk.held) - set(ledger.orders):
        errors.append(("held without a record", set(risk.held) - set(ledger.orders)))
    return errors


def risk_compiled() -> bool:
    """Whether risk/core runs compiled by mypyc (its modules are extension modules then)."""
    return not limits.__file__.endswith(".py")


def account_updates(events):
    return {e.owner: (e.cash, e.reserved) for e in of(events, AccountUpdate)}


@pytest.fixture
def r():
    h = Harness()
    h.default_cash()
    return h
