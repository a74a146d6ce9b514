"""Trades move cash from buyer to seller; reservations follow fills, cancels, expiries, self-trade
reductions, amends and engine rejections; stop and market buys spend a budget; updates come once
per command with final values."""

from __future__ import annotations

import json

from matching.engine import (
    CancelOrder,
    MatchingEngine,
    NewOrder,
    OrderCanceled,
    RejectReason,
    STPMode,
    TimeInForce,
    Trade,
)
from risk.core import AccountUpdate, AlertKind, PositionUpdate, RiskAlert, RiskEngine, SetDefaultCash

from .conftest import BUY, CASH, SELL, SYM, Harness, account_updates, of, rejection


def cents() -> Harness:
    """AAPL at tick 0.01 x lot 1 = 100 cash units a tick-lot; everyone starts with 1,000,000."""
    h = Harness()
    h.default_cash(1_000_000)
    h.configure(cash_per_tick_lot=100)
    return h


def test_a_limit_buy_reserves_then_pays_the_makers_price_and_frees_the_rest():
    h = cents()
    h.sell(2, 5, 95)
    events = h.buy(1, 10, 100)  # takes 5 at 95, rests 5 at 100
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(95, 5)]
    assert h.cash(1) == (1_000_000 - 5 * 95 * 100, 5 * 100 * 100)
    assert h.cash(2) == (1_000_000 + 5 * 95 * 100, 0)
    assert h.position(1) == (5, 47_500, 0) and h.position(2) == (-5, -47_500, 0)
    assert account_updates(events) == {1: h.cash(1), 2: h.cash(2)}
    h.check()


def test_a_resting_buy_filled_as_maker_releases_at_its_own_price():
    h = cents()
    h.buy(1, 10, 100)
    assert h.cash(1) == (1_000_000, 100_000)
    h.sell(2, 4, 90)  # trades at the maker's 100
    assert h.cash(1) == (1_000_000 - 40_000, 60_000)
    h.check()


def test_cancel_and_expiry_release_what_is_left():
    h = cents()
    h.buy(1, 10, 100)
    first = h.last_id
    h.buy(1, 3, 100, tif=TimeInForce.DAY, expire_at=50)
    assert h.cash(1)[1] == 130_000
    h.sell(2, 4, 100)
    assert h.cash(1) == (960_000, 90_000)
    h.cancel(first, 1)
    assert h.cash(1) == (960_000, 30_000)
    events = h.advance(50)
    assert h.cash(1) == (960_000, 0) and account_updates(events) == {1: (960_000, 0)}
    h.check()


def test_amends_re_reserve():
    h = cents()
    h.buy(1, 10, 100)
    h.amend(h.last_id, 1, qty=4)
    assert h.cash(1)[1] == 40_000
    h.amend(h.last_id, 1, price=120)
    assert h.cash(1)[1] == 48_000
    h.sell(2, 1, 110)  # trades at the resting buy's price, 120
    assert h.cash(1) == (1_000_000 - 12_000, 36_000)
    h.check()


def test_an_engine_rejection_releases_the_reservation_and_reports_no_change():
    h = cents()
    h.sell(2, 1, 100)
    h.buy(1, 1, 90)
    events = h.buy(1, 1, 100, post_only=True)  # the engine refuses: it would take
    assert of(events, AccountUpdate) == []
    assert h.cash(1) == (1_000_000, 9_000)
    h.check()


def test_self_trade_decrement_releases_the_reduced_lots():
    h = cents()
    h.sell(1, 3, 100)
    h.buy(1, 5, 100, stp=STPMode.DECREMENT)  # reduces both by 3, the buy rests 2
    assert h.cash(1) == (1_000_000, 20_000)
    h.check()


def test_a_market_buy_spends_the_walk_and_releases_the_rest():
    h = cents()
    h.sell(2, 2, 100)
    h.sell(3, 3, 101)
    events = h.market(1, BUY, 4)
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(100, 2), (101, 2)]
    assert h.cash(1) == (1_000_000 - 40_200, 0)
    assert not of(events, RiskAlert)
    h.check()


def test_a_triggered_stop_buy_that_fills_above_its_reservation_is_settled_and_reported():
    h = Harness()
    h.default_cash(1_000)
    h.sell(2, 1, 100)
    h.buy(3, 1, 100)  # last price 100
    assert rejection(h.stop(1, BUY, 10, 101)) is RejectReason.INSUFFICIENT_FUNDS  # 10 x 101 > 1,000
    h.stop(1, BUY, 9, 101)  # reserves 909
    assert h.cash(1) == (1_000, 909)
    h.sell(4, 9, 150)  # the only liquidity, far above the stop
    events = h.buy(5, 1, 101) + h.sell(6, 1, 101)  # a trade at 101 triggers the stop
    fills = [t for t in of(events, Trade) if t.taker_owner == 1]
    assert [(t.price, t.qty) for t in fills] == [(150, 9)]
    assert h.cash(1) == (1_000 - 1_350, 0)  # the trade stands; cash is conserved, now negative
    (alert,) = [a for a in of(events, RiskAlert) if a.owner == 1]
    assert alert.kind is AlertKind.RESERVATION_OVERRUN and "441 cash units" in alert.detail
    h.check()


def test_a_triggered_stop_limit_buy_never_overruns():
    h = Harness()
    h.default_cash(10_000)
    h.sell(2, 1, 100)
    h.buy(3, 1, 100)
    h.stop(1, BUY, 10, 101, 105)  # reserves at the limit: 1,050
    h.sell(4, 4, 103)
    h.sell(4, 9, 150)
    events = h.buy(5, 1, 101) + h.sell(6, 1, 101)
    assert [(t.price, t.qty) for t in of(events, Trade) if t.taker_owner == 1] == [(103, 4)]
    assert h.cash(1) == (10_000 - 412, 6 * 105)  # rests 6 at 105, still reserved at 105
    assert not of(events, RiskAlert)
    h.check()


def test_updates_come_once_per_command_sorted_with_final_values():
    h = cents()
    h.sell(3, 1, 100)
    h.sell(2, 1, 101)
    h.sell(3, 1, 102)
    events = h.buy(1, 3, 102)
    assert [(u.owner, u.symbol) for u in of(events, PositionUpdate)] == [(1, SYM), (2, SYM), (3, SYM)]
    assert [u.owner for u in of(events, AccountUpdate)] == [1, 2, 3]
    assert of(events, PositionUpdate)[2] == PositionUpdate(3, SYM, -2, -20_200, 0, h.clock)
    names = [type(e).__name__ for e in events]
    assert names.index("PositionUpdate") > max(i for i, n in enumerate(names) if n == "Trade")
    h.check()


def test_a_new_account_opens_with_the_default_cash_even_when_its_order_is_rejected():
    h = Harness()
    h.default_cash(500)
    events = h.buy(1, 10, 100)  # needs 1,000
    assert account_updates(events) == {1: (500, 0)}
    assert h.risk.account(2) is None


def test_cash_is_conserved_across_self_trades_and_both_symbols(r):
    r.sell(1, 5, 100, stp=STPMode.NONE)
    r.buy(1, 5, 100, stp=STPMode.NONE)  # trades with itself
    r.sell(2, 5, 10, symbol="T")
    r.buy(1, 5, 10, symbol="T")
    assert r.cash(1) == (CASH - 50, 0) and r.cash(2) == (CASH + 50, 0)
    assert r.position(1) == (0, 0, 0) and r.position(1, "T") == (5, 50, 0)
    r.check()


def test_orders_resting_before_risk_wrapped_the_engine_still_settle():
    """The matcher switches risk on at the first admin command, around a book that may hold orders:
    risk never reserved for them, but their fills move cash and positions, and cancels pass."""
    engine = MatchingEngine([SYM])
    engine.apply(NewOrder(1, 7, SYM, SELL, 5, 100, timestamp=1))
    engine.apply(NewOrder(2, 8, SYM, SELL, 5, 101, timestamp=2))
    risk = RiskEngine(engine)
    risk.apply(SetDefaultCash(10_000, timestamp=3))
    events = risk.apply(NewOrder(3, 1, SYM, BUY, 3, 100, timestamp=4))
    assert [t.qty for t in of(events, Trade)] == [3]
    buyer, seller = risk.account(1), risk.account(7)
    assert buyer is not None and seller is not None  # 7 opened at first sight
    assert (buyer.cash, seller.cash) == (9_700, 10_300)
    assert of(risk.apply(CancelOrder(2, 8, SYM, 5)), OrderCanceled)
    engine_state, risk_state = json.loads(json.dumps(engine.state())), json.loads(json.dumps(risk.state()))
    restored = RiskEngine.from_state(risk_state, MatchingEngine.from_state(engine_state))
    assert restored.state_hash() == risk.state_hash()


def test_account_and_position_are_copies(r):
    r.buy(1, 2, 100)
    account = r.risk.account(1)
    account.cash = 0
    account.positions[SYM].open_buy = 99
    assert r.cash(1) == (CASH, 200) and r.risk.position(1, SYM).open_buy == 2
    assert r.risk.position(1, "T") is None and r.risk.account(99) is None
