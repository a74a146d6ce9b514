"""Properties over random order flow (flow.py), checked after every command:

- cash is conserved: the accounts hold exactly what they opened with plus the admin's adjustments;
- positions sum to zero per symbol, and cost - realised is exactly the net cash each owner spent;
- reserved is the sum of the orders' reservations, never negative; risk's orders are the engine's
  live orders plus the held ones, with the same remaining lots;
- available is never negative, except after a reservation overrun, which only a stop buy or a market
  buy that skips its own asks (stp cancel_oldest) can cause;
- AccountUpdate / PositionUpdate come once per changed account / position, sorted, with final values.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from matching.engine import Side, Trade
from risk.core import Account, AccountUpdate, AdjustCash, AdminApplied, AlertKind, PositionUpdate, RiskAlert

from .conftest import ledger_errors, of
from .flow import (
    CASH_PER_TICK_LOT,
    DEFAULT_CASH,
    OWNERS,
    SYMBOLS,
    Flow,
    new_engines,
    random_ops,
    setup_commands,
)

ops_strategy = st.lists(
    st.tuples(st.integers(0, 99), st.integers(1, OWNERS), st.integers(0, 1), st.integers(0, 1),
              st.integers(1, 12), st.integers(90, 110), st.integers(0, 9_999)),
    min_size=1, max_size=200,
)


class Checker:
    def __init__(self) -> None:
        self.risk = new_engines()
        self.flow = Flow(self.risk)
        self.adjusted = 0
        self.spent: dict[tuple[int, str], int] = defaultdict(int)
        self.overrun: set[int] = set()
        self.seen: dict[str, int] = defaultdict(int)  # event name:reason (or kind) -> count
        for cmd in setup_commands():
            self.risk.apply(cmd)

    def run(self, ops) -> None:
        for op in ops:
            self.step(self.flow.command(op))

    def step(self, cmd) -> None:
        events = self.risk.apply(cmd)
        for event in events:
            code = getattr(event, "reason", getattr(event, "kind", ""))
            self.seen[f"{type(event).__name__}:{code}"] += 1
        if isinstance(cmd, AdjustCash) and of(events, AdminApplied):
            self.adjusted += cmd.amount
        for trade in of(events, Trade):
            value = trade.price * trade.qty * CASH_PER_TICK_LOT[trade.symbol]
            buyer, seller = ((trade.taker_owner, trade.maker_owner) if trade.taker_side is Side.BUY
                             else (trade.maker_owner, trade.taker_owner))
            self.spent[(buyer, trade.symbol)] += value
            self.spent[(seller, trade.symbol)] -= value
        for alert in of(events, RiskAlert):
            if alert.kind is AlertKind.RESERVATION_OVERRUN:
                assert alert.owner in self.flow.stop_buyers | self.flow.oldest_market_buyers, alert
                self.overrun.add(alert.owner)
        self.check(events)

    def check(self, events) -> None:
        ledger = self.risk.ledger
        assert ledger_errors(self.risk) == []
        accounts: dict[int, Account] = {}
        for owner in ledger.accounts:
            account = self.risk.account(owner)
            assert account is not None
            accounts[owner] = account
        assert set(accounts) == set(self.risk.balances.accounts)  # one cash account each
        assert sum(a.cash for a in accounts.values()) == DEFAULT_CASH * len(accounts) + self.adjusted
        for symbol in SYMBOLS:
            assert sum(a.positions[symbol].qty for a in accounts.values() if symbol in a.positions) == 0
        for owner, account in accounts.items():
            if owner not in self.overrun:
                assert account.cash - account.reserved >= 0, (owner, account)
            for symbol, p in account.positions.items():
                assert p.cost - p.realised == self.spent.get((owner, symbol), 0)
                assert p.qty != 0 or p.cost == 0  # a flat position keeps no cost
        updates = of(events, AccountUpdate)
        assert [u.owner for u in updates] == sorted({u.owner for u in updates})
        for u in updates:
            assert (u.cash, u.reserved) == (accounts[u.owner].cash, accounts[u.owner].reserved)
        positions = of(events, PositionUpdate)
        keys = [(p.owner, p.symbol) for p in positions]
        assert keys == sorted(set(keys))
        for p in positions:
            now = accounts[p.owner].positions[p.symbol]
            assert (p.qty, p.cost, p.realised) == (now.qty, now.cost, now.realised)


@settings(max_examples=300, deadline=None)
@given(ops_strategy)
def test_random_flow_keeps_the_books_straight(ops):
    Checker().run(ops)


def test_long_seeded_flows():
    """Longer runs than hypothesis draws, which must exercise what the properties are about."""
    seen: dict[str, int] = defaultdict(int)
    for seed in range(4):
        checker = Checker()
        checker.run(random_ops(seed, 2_000))
        for name, count in checker.seen.items():
            seen[name] += count
    for name in ("Trade:", "OrderHeld:", "HeldOrderReleased:", "OrderRejected:held_rejected",
                 "OrderRejected:insufficient_funds", "OrderRejected:position_limit",
                 "OrderRejected:order_size",
                 "OrderRejected:price_band", "OrderRejected:halted", "InstrumentHalted:circuit_breaker",
                 "InstrumentResumed:", "RiskAlert:reservation_overrun", "RiskAlert:position_limit",
                 "AdminRejected:below_reserved", "StopTriggered:", "OrderExpired:", "OrderReduced:self_trade",
                 "OrderAmended:"):
        assert seen[name] > 0, name
