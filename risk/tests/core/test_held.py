"""The held queue: an order above the hold threshold waits (cash reserved) until an admin releases
it (re-checked, then sent to the engine under its own id) or rejects it, or its owner cancels it."""

from __future__ import annotations

from matching.engine import (
    AmendRejected,
    CancelReason,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderType,
    RejectReason,
    TimeInForce,
    Trade,
)
from risk.core import (
    AccountUpdate,
    AdminKind,
    AdminRejected,
    AdminRejectReason,
    HaltInstrument,
    HeldOrderReleased,
    OrderHeld,
    RejectHeld,
    ReleaseHeld,
    SetUserLimit,
    UserLimit,
)

from .conftest import BUY, CASH, SYM, Harness, kinds, of, rejection


def holding(h: Harness) -> None:
    """Liquidity first (5 lots at 100, 5 at 101), then the hold rule: above 5 lots is held."""
    h.sell(2, 5, 100)
    h.sell(3, 5, 101)
    h.configure(hold_volume_bps=500, reference_daily_volume=100)


def test_held_then_released_fills_under_its_own_id(r):
    holding(r)
    events = r.buy(1, 8, 101)
    oid = r.last_id
    assert kinds(events) == ["OrderHeld", "AccountUpdate"]
    assert of(events, OrderHeld)[0] == OrderHeld(oid, 1, SYM, BUY, 8, 101, r.clock)
    assert r.cash(1) == (CASH, 808)
    assert [o.order_id for o in r.risk.held_orders()] == [oid]
    events = r.admin(ReleaseHeld, oid)
    assert kinds(events)[:2] == ["HeldOrderReleased", "OrderAccepted"]
    assert of(events, HeldOrderReleased)[0] == HeldOrderReleased(oid, 1, SYM, r.clock)
    assert of(events, OrderAccepted)[0].timestamp == r.clock  # it enters the book at the release
    assert [(t.taker_order_id, t.price, t.qty) for t in of(events, Trade)] == [(oid, 100, 5), (oid, 101, 3)]
    assert r.cash(1) == (CASH - 803, 0) and r.position(1)[0] == 8
    assert r.risk.held_orders() == []
    r.check()


def test_held_then_rejected_releases_the_reservation(r):
    holding(r)
    r.buy(1, 8, 101)
    events = r.admin(RejectHeld, r.last_id)
    oid = r.last_id
    assert of(events, OrderRejected) == [OrderRejected(oid, 1, SYM, RejectReason.HELD_REJECTED, r.clock)]
    assert of(events, AccountUpdate) == [AccountUpdate(1, CASH, 0, r.clock)]
    (refused,) = r.admin(ReleaseHeld, oid)
    assert refused == AdminRejected(AdminKind.RELEASE_HELD, str(oid), AdminRejectReason.UNKNOWN_HELD_ORDER,
                                    "", r.clock)
    r.check()


def test_the_owner_may_cancel_a_held_order(r):
    holding(r)
    r.buy(1, 8, 101)
    oid = r.last_id
    assert of(r.cancel(oid, 2), CancelRejected)  # not the owner: the engine knows no such order
    events = r.cancel(oid, 1)
    assert of(events, OrderCanceled) == [OrderCanceled(oid, 1, SYM, 8, CancelReason.USER, r.clock)]
    assert r.cash(1) == (CASH, 0) and r.risk.held == {}
    r.check()


def test_a_held_order_cannot_be_amended(r):
    holding(r)
    r.buy(1, 8, 101)
    assert of(r.amend(r.last_id, 1, qty=6), AmendRejected)[0].reason is RejectReason.NOT_AMENDABLE


def test_held_orders_count_for_later_checks(r):
    holding(r)
    r.configure(hold_volume_bps=500, reference_daily_volume=100, max_position=10)
    r.buy(1, 8, 101)
    assert rejection(r.buy(1, 3, 90)) is RejectReason.POSITION_LIMIT
    assert rejection(r.buy(1, 2, 90)) is None


def test_release_re_checks_the_halt(r):
    holding(r)
    r.buy(1, 8, 101)
    r.admin(HaltInstrument, SYM, "news")
    events = r.admin(ReleaseHeld, r.last_id)
    assert kinds(events) == ["HeldOrderReleased", "OrderRejected", "AccountUpdate"]
    assert rejection(events) is RejectReason.HALTED and r.cash(1) == (CASH, 0)
    r.check()


def test_release_re_checks_a_lowered_limit(r):
    holding(r)
    r.buy(1, 8, 101)
    r.admin(SetUserLimit, UserLimit(1, SYM, max_position=7))
    assert rejection(r.admin(ReleaseHeld, r.last_id)) is RejectReason.POSITION_LIMIT


def test_release_recomputes_a_market_buys_reservation():
    h = Harness()
    h.default_cash(1_000)
    h.sell(2, 5, 100)
    h.sell(3, 5, 101)
    h.sell(3, 5, 200)
    h.configure(hold_volume_bps=500, reference_daily_volume=100)
    h.market(1, BUY, 8)  # held, reserving 5 x 100 + 3 x 101 = 803
    held = h.last_id
    assert h.cash(1) == (1_000, 803)
    h.configure()  # no hold rule any more
    h.market(4, BUY, 6)  # takes the cheap lots: 8 lots now cost 4 x 101 + 4 x 200 = 1,204
    assert rejection(h.admin(ReleaseHeld, held)) is RejectReason.INSUFFICIENT_FUNDS
    assert h.cash(1) == (1_000, 0)
    h.check()


def test_a_day_order_that_expired_while_held_gets_the_engines_reason(r):
    holding(r)
    r.buy(1, 8, 101, tif=TimeInForce.DAY, expire_at=r.clock + 5)
    events = r.admin(ReleaseHeld, r.last_id, ts=r.clock + 10)
    assert rejection(events) is RejectReason.INVALID_EXPIRY and r.cash(1) == (CASH, 0)
    r.check()


def test_sells_and_stops_are_held_too(r):
    holding(r)
    assert of(r.sell(1, 6, 120), OrderHeld)
    assert of(r.new(1, BUY, 6, None, order_type=OrderType.STOP, stop_price=150), OrderHeld)
    assert len(r.risk.held_orders()) == 2
    r.check()
