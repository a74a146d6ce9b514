"""Time in force: IOC, FOK, DAY/GTD expiry and the options that go with them."""

import pytest

from matching.engine import (
    CancelReason,
    MatchingEngine,
    NewOrder,
    OrderExpired,
    OrderType,
    RejectReason,
    TimeInForce,
)
from matching.tests.conftest import (
    BUY,
    SELL,
    SYM,
    Harness,
    canceled,
    deltas,
    fills,
    kinds,
    of,
    refused_at_construction,
)

IOC, FOK, DAY, GTD = TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD


# ---- IOC --------------------------------------------------------------------------------------


def test_ioc_partial_fill_cancels_remainder(h):
    h.sell(1, 3, 100)
    ev = h.buy(2, 10, 101, owner=2, tif=IOC)
    assert kinds(ev) == ["OrderAccepted", "Trade", "BookDelta", "OrderCanceled"]
    assert fills(ev) == [(1, 100, 3)]
    assert canceled(ev) == [(2, 7, CancelReason.IOC)]
    assert h.depth() == {"bids": [], "asks": []}
    h.check()


def test_ioc_not_crossing_never_rests(h):
    h.sell(1, 3, 100)
    ev = h.buy(2, 5, 99, owner=2, tif=IOC)
    assert kinds(ev) == ["OrderAccepted", "OrderCanceled"]
    assert canceled(ev) == [(2, 5, CancelReason.IOC)]
    assert h.depth() == {"bids": [], "asks": [(100, 3, 1)]}
    assert 2 not in h.book.orders
    h.check()


def test_ioc_full_fill_no_cancel(h):
    h.sell(1, 3, 100)
    ev = h.buy(2, 3, 100, owner=2, tif=IOC)
    assert fills(ev) == [(1, 100, 3)]
    assert canceled(ev) == []
    h.check()


# ---- FOK --------------------------------------------------------------------------------------


def test_fok_fillable_exactly_across_levels(h):
    h.sell(1, 2, 100)
    h.sell(2, 3, 101)
    ev = h.buy(3, 5, 101, owner=2, tif=FOK)
    assert fills(ev) == [(1, 100, 2), (2, 101, 3)]
    assert canceled(ev) == []
    assert h.depth() == {"bids": [], "asks": []}
    h.check()


def test_fok_not_fillable_no_trades_book_unchanged(h):
    h.sell(1, 2, 100)
    h.sell(2, 3, 101)
    h.sell(3, 9, 102)  # beyond the FOK's limit: does not count
    before = (h.depth(), h.book.last_price, h.book.trade_seq)
    ev = h.buy(4, 6, 101, owner=2, tif=FOK)
    assert kinds(ev) == ["OrderAccepted", "OrderCanceled"]
    assert canceled(ev) == [(4, 6, CancelReason.FOK)]
    assert (h.depth(), h.book.last_price, h.book.trade_seq) == before
    assert h.ids("asks") == [1, 2, 3]
    h.check()


def test_fok_not_crossing_at_all(h):
    h.sell(1, 2, 100)
    ev = h.sell(2, 2, 100, owner=2) + h.buy(3, 1, 99, owner=2, tif=FOK)
    assert canceled(ev) == [(3, 1, CancelReason.FOK)]
    assert fills(ev) == []


def test_fok_sell_side(h):
    h.buy(1, 2, 100)
    h.buy(2, 2, 99)
    assert canceled(h.sell(3, 5, 99, owner=2, tif=FOK)) == [(3, 5, CancelReason.FOK)]
    assert fills(h.sell(4, 4, 99, owner=2, tif=FOK)) == [(1, 100, 2), (2, 99, 2)]
    h.check()


# ---- DAY / GTD --------------------------------------------------------------------------------


@pytest.mark.parametrize("tif", [DAY, GTD])
def test_expires_on_advance_time_at_expire_at(h, tif):
    h.buy(1, 5, 100, ts=10, tif=tif, expire_at=100)
    assert h.advance(99) == []
    assert h.depth()["bids"] == [(100, 5, 1)]
    ev = h.advance(100)
    assert kinds(ev) == ["BookDelta", "OrderExpired"]
    assert of(ev, OrderExpired) == [OrderExpired(1, 1, SYM, 5, 100)]
    assert deltas(ev) == [(BUY, 100, 0)]
    assert h.depth()["bids"] == []
    assert 1 not in h.book.orders
    assert h.advance(200) == []
    h.check()


def test_expiry_processed_before_the_command_that_reaches_it(h):
    h.sell(1, 5, 100, ts=10, tif=GTD, expire_at=50)
    h.sell(2, 5, 101, ts=11)
    ev = h.buy(3, 5, 101, owner=2, ts=60)  # would have traded with order 1
    assert kinds(ev)[:3] == ["BookDelta", "OrderExpired", "OrderAccepted"]
    assert of(ev, OrderExpired)[0].order_id == 1
    assert fills(ev) == [(2, 101, 5)]
    h.check()


def test_not_expired_before_expire_at(h):
    h.sell(1, 5, 100, ts=10, tif=DAY, expire_at=50)
    ev = h.buy(2, 2, 100, owner=2, ts=49)
    assert of(ev, OrderExpired) == []
    assert fills(ev) == [(1, 100, 2)]
    ev = h.cancel(99, ts=50)  # any command to the book, even a rejected one, expires first
    assert kinds(ev) == ["BookDelta", "OrderExpired", "CancelRejected"]
    assert of(ev, OrderExpired)[0].canceled_qty == 3
    h.check()


def test_expiry_in_order_of_expire_at(h):
    h.buy(1, 1, 100, ts=1, tif=GTD, expire_at=30)
    h.buy(2, 1, 99, ts=2, tif=GTD, expire_at=20)
    h.buy(3, 1, 98, ts=3, tif=GTD, expire_at=40)
    ev = h.advance(35)
    assert [e.order_id for e in of(ev, OrderExpired)] == [2, 1]
    assert h.ids("bids") == [3]
    h.check()


def test_expiry_of_a_filled_or_canceled_order_is_silent(h):
    h.sell(1, 2, 100, ts=1, tif=DAY, expire_at=50)
    h.sell(2, 2, 101, ts=2, tif=DAY, expire_at=50)
    h.buy(3, 2, 100, owner=2, ts=3)
    h.cancel(2, ts=4)
    assert h.advance(60) == []
    h.check()


def test_partially_filled_day_order_expires_its_remainder(h):
    h.sell(1, 10, 100, ts=1, tif=DAY, expire_at=50)
    h.buy(2, 4, 100, owner=2, ts=2)
    assert of(h.advance(50), OrderExpired) == [OrderExpired(1, 1, SYM, 6, 50)]
    h.check()


def test_expiry_other_symbol_untouched_until_its_own_command():
    eng = MatchingEngine(["T", "U"])
    t, u = Harness(eng, "T"), Harness(eng, "U")
    t.buy(1, 1, 100, ts=1, tif=DAY, expire_at=10)
    u.buy(1, 1, 100, ts=1, tif=DAY, expire_at=10)
    ev = t.buy(2, 1, 90, ts=20)
    assert [e.symbol for e in of(ev, OrderExpired)] == ["T"]
    assert eng.books["U"].best_bid() == 100
    ev = u.advance(20)
    assert [e.symbol for e in of(ev, OrderExpired)] == ["U"]


@pytest.mark.parametrize("tif", [DAY, GTD])
@pytest.mark.parametrize("expire_at", [None, 10, 5, "20", 20.0])
def test_invalid_expiry_rejected(h, tif, expire_at):
    if refused_at_construction(NewOrder, 1, 1, h.symbol, BUY, 1, 100, tif=tif, expire_at=expire_at):
        return
    ev = h.buy(1, 1, 100, ts=10, tif=tif, expire_at=expire_at)
    assert kinds(ev) == ["OrderRejected"]
    assert ev[0].reason == RejectReason.INVALID_EXPIRY
    assert h.book.orders == {}


@pytest.mark.parametrize("tif", [TimeInForce.GTC, IOC, FOK])
def test_expire_at_without_day_or_gtd_rejected(h, tif):
    ev = h.buy(1, 1, 100, ts=10, tif=tif, expire_at=20)
    assert ev[0].reason == RejectReason.INVALID_EXPIRY


@pytest.mark.parametrize("tif", [DAY, GTD])
@pytest.mark.parametrize("otype", [OrderType.MARKET, OrderType.STOP])
def test_market_and_stop_with_day_or_gtd_rejected(h, tif, otype):
    stop = 100 if otype is OrderType.STOP else None
    ev = h.new(1, BUY, 1, None, ts=10, tif=tif, expire_at=20, order_type=otype, stop_price=stop)
    assert kinds(ev) == ["OrderRejected"]
    assert ev[0].reason == RejectReason.INVALID_OPTIONS


@pytest.mark.parametrize("tif", [TimeInForce.GTC, IOC, FOK])
def test_market_accepts_gtc_ioc_fok(h, tif):
    h.sell(1, 1, 100)
    ev = h.market(2, BUY, 1, owner=2, tif=tif)
    assert fills(ev) == [(1, 100, 1)]


def test_day_stop_limit_pending_expires(h):
    h.stop(1, SELL, 2, stop_price=90, price=89, ts=1, tif=DAY, expire_at=10)
    assert 1 in h.book.orders
    ev = h.advance(10)
    assert kinds(ev) == ["OrderExpired"]  # a pending stop has no level, so no BookDelta
    assert of(ev, OrderExpired)[0].canceled_qty == 2
    assert h.book.orders == {}
    assert len(h.book.stops) == 0
    h.check()


def test_sell_side_fok_prices(h):
    h.buy(1, 2, 100)
    assert canceled(h.sell(2, 2, 101, owner=2, tif=FOK)) == [(2, 2, CancelReason.FOK)]
    assert h.depth() == {"bids": [(100, 2, 1)], "asks": []}
