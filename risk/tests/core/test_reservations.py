"""Risk checks and reserves against the book as the engine will see it for the same command.

The engine expires a symbol's due DAY/GTD orders first thing on every command for that symbol (a
new order, an amend, a cancel), before it matches. Risk's checks of a new order (including a held
order an admin releases) or an amend run before the engine, so they must see those expiries too:
otherwise a market buy reserves the cost of asks that are gone by the time it walks the book and
fills above its reservation (a reservation overrun that only stop buys and stp=cancel_oldest market
buys may cause), and cash or open lots of expiring orders still count against the next order.
"""

from __future__ import annotations

from matching.engine import (
    OrderAccepted,
    OrderAmended,
    OrderExpired,
    OrderRejected,
    RejectReason,
    TimeInForce,
    Trade,
)
from risk.core import AlertKind, HeldOrderReleased, ReleaseHeld, RiskAlert

from .conftest import BUY, SYM, Harness, kinds, of, rejection


def two_asks(h: Harness, expire_at: int) -> None:
    """A DAY ask at 90 that expires at `expire_at`, and a GTC ask at 91 behind it (owner 2)."""
    h.sell(2, 1, 90, symbol="T", tif=TimeInForce.DAY, expire_at=expire_at)
    h.sell(2, 1, 91, symbol="T")


def test_a_market_buy_reserves_after_the_expiries_of_its_own_command():
    """The property test's failing example, reduced: the ask at 90 expires at the market buy's own
    timestamp, so the buy walks to 91. Reserved at 90 it overran by 1 cash unit."""
    h = Harness()
    h.default_cash(1_000)
    two_asks(h, expire_at=10)
    events = h.market(1, BUY, 1, symbol="T", ts=10)
    assert kinds(events).index("OrderExpired") < kinds(events).index("OrderAccepted")
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(91, 1)]
    assert not [a for a in of(events, RiskAlert) if a.kind is AlertKind.RESERVATION_OVERRUN]
    assert h.cash(1) == (1_000 - 91, 0)
    h.check()


def test_a_market_buy_that_cannot_afford_the_asks_left_after_expiry_is_refused():
    h = Harness()
    h.default_cash(90)  # enough for the ask at 90, not for the one at 91
    two_asks(h, expire_at=10)
    events = h.market(1, BUY, 1, symbol="T", ts=10)
    assert rejection(events) is RejectReason.INSUFFICIENT_FUNDS
    assert of(events, OrderExpired) and not of(events, Trade)  # the expiry still happens, first
    assert h.cash(1) == (90, 0)
    h.check()


def test_a_market_buy_before_the_expiry_still_takes_the_cheaper_ask():
    h = Harness()
    h.default_cash(90)
    two_asks(h, expire_at=10)
    events = h.market(1, BUY, 1, symbol="T", ts=9)
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(90, 1)] and not of(events, OrderExpired)
    assert h.cash(1) == (0, 0)
    h.check()


def test_a_released_held_market_buy_reserves_after_the_expiries():
    h = Harness()
    h.default_cash(1_000)
    two_asks(h, expire_at=20)
    h.sell(3, 5, 95, symbol="T")
    h.configure(symbol="T", hold_volume_bps=500, reference_daily_volume=10)  # above 0.5 lots: held
    h.market(1, BUY, 2, symbol="T", ts=5)
    held = h.last_id
    assert h.cash(1) == (1_000, 90 + 91)
    events = h.admin(ReleaseHeld, held, ts=20)
    assert kinds(events).index("HeldOrderReleased") < kinds(events).index("OrderExpired")
    assert of(events, HeldOrderReleased) and of(events, OrderAccepted)
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(91, 1), (95, 1)]
    assert not [a for a in of(events, RiskAlert) if a.kind is AlertKind.RESERVATION_OVERRUN]
    assert h.cash(1) == (1_000 - 91 - 95, 0)
    h.check()


def test_an_amend_may_use_the_cash_an_expiring_buy_frees_in_the_same_command():
    h = Harness()
    h.default_cash(1_000)
    h.buy(1, 5, 100, tif=TimeInForce.DAY, expire_at=10)  # reserves 500 until it expires at 10
    h.buy(1, 5, 100)
    resting = h.last_id
    assert h.cash(1) == (1_000, 1_000)
    events = h.amend(resting, 1, qty=10, ts=10)  # needs 500 more: what the expiry frees
    assert of(events, OrderExpired) and of(events, OrderAmended)
    assert h.cash(1) == (1_000, 1_000)
    h.check()


def test_a_new_buy_may_use_the_cash_an_expiring_buy_frees_in_the_same_command():
    h = Harness()
    h.default_cash(1_000)
    h.buy(1, 10, 100, tif=TimeInForce.DAY, expire_at=10)
    assert rejection(h.buy(1, 1, 100, ts=9)) is RejectReason.INSUFFICIENT_FUNDS
    events = h.buy(1, 10, 100, ts=10)
    assert of(events, OrderExpired) and not of(events, OrderRejected)
    assert h.cash(1) == (1_000, 1_000)
    h.check()


def test_orders_of_other_symbols_expire_with_their_own_commands():
    h = Harness()
    h.default_cash(1_000)
    h.buy(1, 10, 100, tif=TimeInForce.DAY, expire_at=10)  # AAPL
    events = h.buy(1, 1, 100, symbol="T", ts=10)  # the engine would not expire AAPL here either
    assert rejection(events) is RejectReason.INSUFFICIENT_FUNDS and not of(events, OrderExpired)
    assert [o.symbol for o in h.risk.ledger.orders.values()] == [SYM]
    h.check()
