"""The pre-trade checks: each accepts exactly at its limit and refuses one step beyond, with its own
reason; the first failing check wins; amends are checked for what they add."""

from __future__ import annotations

import pytest

from matching.engine import AmendRejected, NewOrder, OrderAccepted, OrderType, RejectReason, Trade
from risk.core import (
    DAY_NS,
    AdjustCash,
    HaltInstrument,
    OrderHeld,
    RiskAlert,
    SetUserLimit,
    UserLimit,
    Verdict,
)

from .conftest import BUY, CASH, SELL, SYM, Harness, of, rejection

R = RejectReason


def accepted(events):
    return bool(of(events, OrderAccepted))


@pytest.mark.parametrize(("qty", "reason"), [(10, None), (11, R.ORDER_SIZE)])
def test_order_size(r, qty, reason):
    r.configure(max_order_qty=10)
    assert rejection(r.buy(1, qty, 100)) is reason
    assert rejection(r.sell(2, qty, 200)) is reason


@pytest.mark.parametrize(("override", "qty", "reason"), [(20, 20, None), (20, 21, R.ORDER_SIZE),
                                                         (5, 5, None), (5, 6, R.ORDER_SIZE)])
def test_a_user_override_wins_over_the_instrument(r, override, qty, reason):
    r.configure(max_order_qty=10)
    r.admin(SetUserLimit, UserLimit(1, SYM, max_order_qty=override))
    assert rejection(r.buy(1, qty, 100)) is reason
    assert rejection(r.buy(2, 10, 100)) is None  # others keep the instrument's limit
    r.admin(SetUserLimit, UserLimit(1, SYM))  # all None: the override is gone
    assert rejection(r.buy(1, 11, 100)) is R.ORDER_SIZE


@pytest.mark.parametrize(("qty", "reason"), [(3, None), (4, R.POSITION_LIMIT)])
def test_position_limit_counts_the_position_and_every_open_buy(r, qty, reason):
    r.configure(max_position=10)
    r.sell(2, 4, 100)
    r.buy(1, 4, 100)  # position +4
    r.buy(1, 2, 90)
    r.buy(1, 1, 80)  # open buys 3
    assert r.position(1)[0] == 4
    assert rejection(r.buy(1, qty, 70)) is reason


@pytest.mark.parametrize(("qty", "reason"), [(9, None), (10, R.POSITION_LIMIT)])
def test_position_limit_on_the_sell_side_allows_short_selling_within_it(r, qty, reason):
    r.configure(max_position=10)
    r.sell(2, 4, 100)
    r.buy(1, 4, 100)  # position +4
    r.sell(1, 5, 150)  # open sells 5: after all fills -1
    assert rejection(r.sell(1, qty, 160)) is reason  # -1 - 9 = -10 at the limit


def test_position_limit_without_a_position(r):
    r.configure(max_position=10)
    assert rejection(r.sell(1, 10, 100)) is None
    assert rejection(r.sell(1, 1, 100)) is R.POSITION_LIMIT
    assert rejection(r.buy(1, 10, 90)) is None  # buys are counted on their own side
    assert rejection(r.buy(1, 1, 90)) is R.POSITION_LIMIT


@pytest.mark.parametrize(("price", "reason"),
                         [(110, None), (111, R.PRICE_BAND), (90, None), (89, R.PRICE_BAND)])
def test_price_band_around_the_reference_price(r, price, reason):
    r.configure(price_band_bps=1_000, reference_price=100)
    assert rejection(r.buy(1, 1, price)) is reason
    assert rejection(r.sell(2, 1, price)) is reason


@pytest.mark.parametrize(("price", "reason"),
                         [(220, None), (221, R.PRICE_BAND), (180, None), (179, R.PRICE_BAND)])
def test_price_band_follows_the_last_trade(r, price, reason):
    r.configure(price_band_bps=1_000, reference_price=100)
    r.configure(price_band_bps=None)
    r.sell(2, 1, 200)
    r.buy(1, 1, 200)  # last price 200
    r.configure(price_band_bps=1_000, reference_price=100)
    assert rejection(r.buy(1, 1, price)) is reason


def test_price_band_without_any_reference_is_skipped(r):
    r.configure(price_band_bps=1)
    assert accepted(r.buy(1, 1, 5)) and accepted(r.sell(2, 1, 500))


@pytest.mark.parametrize(("limit", "reason"), [(110, None), (111, R.PRICE_BAND)])
def test_price_band_checks_a_stop_limit_price_but_not_a_stop_price(r, limit, reason):
    r.configure(price_band_bps=1_000, reference_price=100)
    assert rejection(r.stop(1, BUY, 1, 200, limit)) is reason
    assert rejection(r.stop(1, BUY, 1, 300)) is None


def test_price_band_leaves_a_market_orders_protection_price_alone(r):
    """A market order's price bounds what it pays (it never rests there): a bound beyond the band is
    the client's to give, and the exchange derives one from the best ask plus the band."""
    r.configure(price_band_bps=1_000, reference_price=100)
    r.sell(2, 1, 105)
    assert rejection(r.new(1, BUY, 1, 120, order_type=OrderType.MARKET)) is None
    assert rejection(r.buy(1, 1, 120)) is R.PRICE_BAND


@pytest.mark.parametrize(("price", "reason"), [(100, None), (101, R.INSUFFICIENT_FUNDS)])
def test_buying_power_for_a_limit_buy(price, reason):
    h = Harness()
    h.default_cash(1_000_000)
    h.configure(cash_per_tick_lot=100)
    assert rejection(h.buy(1, 100, price)) is reason  # 100 lots x 100 ticks x 100 = 1,000,000


def test_buying_power_counts_what_other_orders_reserved(r):
    assert rejection(r.buy(1, 1_000, 9_000)) is None  # reserves 9,000,000 of 10,000,000
    assert rejection(r.buy(1, 100, 10_000)) is None  # exactly the 1,000,000 left
    assert rejection(r.buy(1, 1, 1)) is R.INSUFFICIENT_FUNDS
    assert r.cash(1) == (10_000_000, 10_000_000)


@pytest.mark.parametrize(("qty", "reason"), [(6, None), (7, R.INSUFFICIENT_FUNDS)])
def test_buying_power_for_a_market_buy_is_the_cost_of_walking_the_asks(qty, reason):
    h = Harness()
    h.default_cash(0)
    h.sell(2, 2, 100)
    h.sell(3, 3, 101)
    h.sell(4, 5, 110)
    h.admin(AdjustCash, 1, 2 * 100 + 3 * 101 + 110)  # exactly 6 lots' walk: 200 + 303 + 110
    assert rejection(h.market(1, BUY, qty)) is reason


def test_a_market_buy_beyond_the_book_reserves_what_is_there():
    h = Harness()
    h.default_cash(1_000)
    h.sell(2, 2, 100)
    events = h.market(1, BUY, 50)
    assert rejection(events) is None
    assert h.cash(1) == (800, 0)


@pytest.mark.parametrize(("stop", "limit", "reason"), [(100, None, None), (101, None, R.INSUFFICIENT_FUNDS),
                                                       (90, 100, None), (90, 101, R.INSUFFICIENT_FUNDS)])
def test_buying_power_for_stop_orders(stop, limit, reason):
    h = Harness()
    h.default_cash(10_000)
    # a stop buy reserves at its stop price, a stop-limit buy at its limit price
    assert rejection(h.stop(1, BUY, 100, stop, limit)) is reason


def test_sells_need_no_cash():
    h = Harness()  # default cash 0
    assert accepted(h.sell(1, 1_000, 100))
    assert rejection(h.buy(2, 1, 1)) is R.INSUFFICIENT_FUNDS
    assert h.cash(1) == (0, 0)


@pytest.mark.parametrize(("qty", "held"), [(50, False), (51, True)])
def test_hold_rule_against_the_reference_volume(r, qty, held):
    r.configure(hold_volume_bps=500, reference_daily_volume=1_000)  # 5% of 1,000 = 50 lots
    events = r.buy(1, qty, 100)
    assert bool(of(events, OrderHeld)) is held
    assert accepted(events) is not held


def test_hold_rule_uses_todays_volume_when_larger_and_restarts_each_day(r):
    day = 3 * DAY_NS
    r.sell(2, 40, 100, ts=day - 2)
    r.buy(3, 40, 100, ts=day - 1)  # yesterday's 40 lots do not count
    r.sell(2, 200, 100, ts=day + 1)
    r.buy(3, 200, 100, ts=day + 2)  # 200 traded today
    r.configure(hold_volume_bps=500, reference_daily_volume=100)  # 5% of max(100, today's volume)
    assert not of(r.buy(1, 10, 90, ts=day + 5), OrderHeld)
    assert of(r.buy(1, 11, 90, ts=day + 6), OrderHeld)
    assert of(r.buy(1, 10, 90, ts=day + DAY_NS), OrderHeld)  # next UTC day: back to the reference


def test_first_failing_check_wins():
    h = Harness()  # default cash 0: every buy lacks funds
    h.configure(max_order_qty=5, max_position=5, price_band_bps=100, reference_price=100,
                hold_volume_bps=0)
    assert rejection(h.buy(1, 6, 500)) is R.ORDER_SIZE  # and position, band, funds, hold
    h.sell(1, 5, 100)  # open sells 5 (held: the hold rule comes last)
    assert rejection(h.sell(1, 1, 500)) is R.POSITION_LIMIT  # and band, hold
    assert rejection(h.buy(1, 1, 500)) is R.PRICE_BAND  # and funds, hold
    assert rejection(h.buy(1, 1, 100)) is R.INSUFFICIENT_FUNDS  # and hold
    assert of(h.sell(2, 1, 100), OrderHeld)


def test_halted_wins_over_everything(r):
    r.configure(max_order_qty=5)
    r.admin(HaltInstrument, SYM, "news")
    assert rejection(r.buy(1, 6, 100)) is R.HALTED
    assert rejection(r.buy(1, 1, 100, symbol="T")) is None


def test_unconfigured_instruments_have_no_limits_and_one_cash_unit_a_tick_lot(r):
    events = r.buy(1, 10**6, 10)  # 10,000,000 cash units at cash_per_tick_lot 1: all of it
    assert accepted(events) and r.cash(1) == (CASH, CASH)
    assert rejection(r.buy(1, 1, 1)) is R.INSUFFICIENT_FUNDS


def test_malformed_orders_get_the_engines_reason_and_reserve_nothing(r):
    assert rejection(r.buy(1, 1, None)) is R.INVALID_PRICE
    assert rejection(r.buy(1, 0, 100)) is R.INVALID_QUANTITY
    assert rejection(r.new(1, BUY, 1, 0, order_type=OrderType.MARKET)) is R.INVALID_PRICE  # protection
    assert rejection(r.stop(1, BUY, 1, None, 100)) is R.INVALID_STOP_PRICE
    assert r.risk.check_new(_order(1, 0))[0] is Verdict.MALFORMED
    assert r.cash(1) == (CASH, 0)
    r.check()


def test_unknown_symbols_go_to_the_engine(r):
    assert rejection(r.buy(1, 1, 100, symbol="NOPE")) is R.UNKNOWN_SYMBOL


def test_an_id_already_held_is_a_duplicate(r):
    r.configure(hold_volume_bps=0)
    r.buy(1, 1, 100, oid=7)
    assert rejection(r.buy(1, 1, 100, oid=7)) is R.DUPLICATE_ORDER_ID
    r.check()


def _order(owner, qty):
    return NewOrder(99, owner, SYM, BUY, qty, 100)


# ---- amends ---------------------------------------------------------------------------------------


def amend_reason(events):
    found = of(events, AmendRejected)
    return found[0].reason if found else None


@pytest.mark.parametrize(("qty", "reason"), [(10, None), (11, R.ORDER_SIZE)])
def test_amend_order_size(r, qty, reason):
    r.configure(max_order_qty=10)
    r.buy(1, 5, 100)
    assert amend_reason(r.amend(r.last_id, 1, qty=qty)) is reason


@pytest.mark.parametrize(("qty", "reason"), [(7, None), (8, R.POSITION_LIMIT)])
def test_amend_position_limit(r, qty, reason):
    r.configure(max_position=10)
    r.buy(1, 3, 90)
    r.buy(1, 5, 100)
    assert amend_reason(r.amend(r.last_id, 1, qty=qty)) is reason


def test_amend_that_lowers_exposure_passes_a_lowered_limit(r):
    r.configure(max_position=10)
    r.sell(1, 10, 100)
    r.configure(max_position=2)
    assert amend_reason(r.amend(r.last_id, 1, qty=8)) is None


@pytest.mark.parametrize(("price", "reason"), [(110, None), (111, R.PRICE_BAND)])
def test_amend_price_band(r, price, reason):
    r.configure(price_band_bps=1_000, reference_price=100)
    r.sell(1, 5, 100)
    assert amend_reason(r.amend(r.last_id, 1, price=price)) is reason


@pytest.mark.parametrize(("price", "reason"), [(200, None), (201, R.INSUFFICIENT_FUNDS)])
def test_amend_buying_power(price, reason):
    h = Harness()
    h.default_cash(20_000)
    h.buy(1, 100, 100)  # reserves 10,000
    assert amend_reason(h.amend(h.last_id, 1, price=price)) is reason
    assert h.cash(1) == (20_000, 20_000 if reason is None else 10_000)
    h.check()


def test_amend_of_a_sell_needs_no_cash():
    h = Harness()
    h.sell(1, 100, 100)
    assert amend_reason(h.amend(h.last_id, 1, qty=1_000, price=1_000)) is None


def test_amends_the_engine_refuses_still_get_its_reason(r):
    r.buy(1, 5, 100)
    assert amend_reason(r.amend(r.last_id, 1, qty=0)) is R.INVALID_QUANTITY
    assert amend_reason(r.amend(r.last_id, 1, stop_price=90)) is R.NOT_AMENDABLE
    assert amend_reason(r.amend(12345, 1, qty=3)) is R.UNKNOWN_ORDER
    assert amend_reason(r.amend(r.last_id, 2, qty=3)) is R.UNKNOWN_ORDER  # not the owner
    r.check()


def test_check_new_changes_nothing(r):
    r.configure(hold_volume_bps=0, max_position=100)
    before = r.risk.state_hash()
    assert r.risk.check_new(_order(5, 3)) == (Verdict.HOLD, 300)
    assert r.risk.check_new(_order(5, 101))[0] is R.POSITION_LIMIT
    assert r.risk.state_hash() == before
    assert r.risk.check_new(NewOrder(99, 5, SYM, SELL, 3, 100))[0] is Verdict.HOLD


def test_a_protected_market_buy_reserves_at_its_protection_and_spends_within_it(r):
    r.sell(2, 3, 100)
    r.sell(2, 4, 120)
    unprotected = NewOrder(98, 1, SYM, BUY, 10, None, OrderType.MARKET, timestamp=r.ts())
    assert r.risk.check_new(unprotected)[1] == 3 * 100 + 4 * 120  # what is there
    order = NewOrder(99, 1, SYM, BUY, 10, 110, OrderType.MARKET, timestamp=r.ts())
    assert r.risk.check_new(order)[1] == 10 * 110  # its protection, whatever the book holds
    events = r.new(1, BUY, 10, 110, order_type=OrderType.MARKET)
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(100, 3)]  # not the asks above 110
    assert r.cash(1) == (CASH - 300, 0)  # the rest of the budget released with the canceled rest
    assert not of(events, RiskAlert)
    r.check()
