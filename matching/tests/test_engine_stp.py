"""Self-trade prevention: the taker's mode decides; exact events and resulting book per mode."""

import pytest

from matching.engine import BookDelta, CancelReason, OrderCanceled, OrderReduced, STPMode, TimeInForce, Trade
from matching.tests.conftest import BUY, SELL, SYM, canceled, fills, kinds, of

ST = CancelReason.SELF_TRADE
ME = 1


@pytest.fixture
def path(h):
    """Asks: 1 (owner 2) 2@100, 2 (owner ME) 3@100, 3 (owner 3) 4@101."""
    h.sell(1, 2, 100, owner=2)
    h.sell(2, 3, 100, owner=ME)
    h.sell(3, 4, 101, owner=3)
    return h


def taker_buy(h, qty=8, stp=STPMode.CANCEL_NEWEST, **kw):
    return h.buy(10, qty, 101, owner=ME, stp=stp, ts=50, **kw)


def trade(maker, price, qty, taker_left, maker_left, maker_owner, tid):
    return Trade(tid, SYM, price, qty, 10, ME, BUY, taker_left, maker, maker_owner, maker_left, 50)


def test_stp_none_trades_with_self(path):
    ev = taker_buy(path, stp=STPMode.NONE)
    assert fills(ev) == [(1, 100, 2), (2, 100, 3), (3, 101, 3)]
    assert of(ev, Trade)[1].maker_owner == ME
    assert canceled(ev) == [] and of(ev, OrderReduced) == []
    assert path.depth()["asks"] == [(101, 1, 1)]
    path.check()


def test_stp_default_is_cancel_newest(h):
    h.sell(1, 1, 100, owner=ME)
    assert canceled(h.buy(2, 1, 100, owner=ME)) == [(2, 1, ST)]


def test_cancel_newest(path):
    ev = taker_buy(path, stp=STPMode.CANCEL_NEWEST)
    assert ev[1:] == [
        trade(1, 100, 2, 6, 0, 2, 1),
        OrderCanceled(10, ME, SYM, 6, ST, 50),
        BookDelta(SYM, SELL, 100, 3),
    ]
    assert path.ids("asks") == [2, 3]
    assert path.depth() == {"bids": [], "asks": [(100, 3, 1), (101, 4, 1)]}
    path.check()


def test_cancel_newest_on_first_maker_changes_nothing(h):
    h.sell(1, 3, 100, owner=ME)
    ev = h.buy(2, 5, 100, owner=ME, stp=STPMode.CANCEL_NEWEST)
    assert kinds(ev) == ["OrderAccepted", "OrderCanceled"]
    assert canceled(ev) == [(2, 5, ST)]
    assert h.depth()["asks"] == [(100, 3, 1)]
    h.check()


def test_cancel_oldest(path):
    ev = taker_buy(path, stp=STPMode.CANCEL_OLDEST)
    assert ev[1:] == [
        trade(1, 100, 2, 6, 0, 2, 1),
        OrderCanceled(2, ME, SYM, 3, ST, 50),
        BookDelta(SYM, SELL, 100, 0),
        trade(3, 101, 4, 2, 0, 3, 2),
        BookDelta(SYM, SELL, 101, 0),
        BookDelta(SYM, BUY, 101, 2),
    ]
    assert path.depth() == {"bids": [(101, 2, 1)], "asks": []}
    path.check()


def test_cancel_both(path):
    ev = taker_buy(path, stp=STPMode.CANCEL_BOTH)
    assert ev[1:] == [
        trade(1, 100, 2, 6, 0, 2, 1),
        OrderCanceled(10, ME, SYM, 6, ST, 50),
        OrderCanceled(2, ME, SYM, 3, ST, 50),
        BookDelta(SYM, SELL, 100, 0),
    ]
    assert path.depth() == {"bids": [], "asks": [(101, 4, 1)]}
    path.check()


def test_decrement_taker_larger(path):
    ev = taker_buy(path, stp=STPMode.DECREMENT)
    assert ev[1:] == [
        trade(1, 100, 2, 6, 0, 2, 1),
        OrderReduced(10, ME, SYM, 3, 3, ST, 50),
        OrderCanceled(2, ME, SYM, 3, ST, 50),
        BookDelta(SYM, SELL, 100, 0),
        trade(3, 101, 3, 0, 1, 3, 2),
        BookDelta(SYM, SELL, 101, 1),
    ]
    assert path.depth() == {"bids": [], "asks": [(101, 1, 1)]}
    path.check()


def test_decrement_maker_larger(h):
    h.sell(1, 10, 100, owner=ME)
    h.sell(2, 5, 100, owner=2)
    ev = h.buy(10, 4, 100, owner=ME, stp=STPMode.DECREMENT, ts=50)
    assert ev[1:] == [
        OrderCanceled(10, ME, SYM, 4, ST, 50),
        OrderReduced(1, ME, SYM, 4, 6, ST, 50),
        BookDelta(SYM, SELL, 100, 11),
    ]
    assert h.ids("asks") == [1, 2]  # the reduced order keeps its place
    assert h.depth()["asks"] == [(100, 11, 2)]
    assert h.book.trade_seq == 0
    h.check()


def test_decrement_equal_cancels_both(h):
    h.sell(1, 4, 100, owner=ME)
    ev = h.buy(10, 4, 100, owner=ME, stp=STPMode.DECREMENT, ts=50)
    assert ev[1:] == [
        OrderCanceled(10, ME, SYM, 4, ST, 50),
        OrderCanceled(1, ME, SYM, 4, ST, 50),
        BookDelta(SYM, SELL, 100, 0),
    ]
    assert h.book.orders == {}
    h.check()


def test_maker_mode_is_irrelevant(h):
    h.sell(1, 2, 100, owner=ME, stp=STPMode.CANCEL_NEWEST)
    assert fills(h.buy(2, 2, 100, owner=ME, stp=STPMode.NONE)) == [(1, 100, 2)]
    h.sell(3, 2, 100, owner=ME, stp=STPMode.NONE)
    assert canceled(h.buy(4, 2, 100, owner=ME, stp=STPMode.CANCEL_NEWEST)) == [(4, 2, ST)]


def test_stp_sell_taker_cancel_oldest(h):
    h.buy(1, 2, 100, owner=ME)
    h.buy(2, 2, 99, owner=2)
    ev = h.sell(10, 3, 99, owner=ME, stp=STPMode.CANCEL_OLDEST)
    assert canceled(ev) == [(1, 2, ST)]
    assert fills(ev) == [(2, 99, 2)]
    assert h.depth() == {"bids": [], "asks": [(99, 1, 1)]}
    h.check()


# ---- STP and fill-or-kill ---------------------------------------------------------------------


@pytest.mark.parametrize("stp", [STPMode.CANCEL_NEWEST, STPMode.CANCEL_BOTH, STPMode.DECREMENT])
def test_fok_with_own_order_in_path_unfillable(path, stp):
    before = path.depth()
    ev = taker_buy(path, qty=8, stp=stp, tif=TimeInForce.FOK)  # 9 lots there, 3 of them mine
    assert kinds(ev) == ["OrderAccepted", "OrderCanceled"]
    assert canceled(ev) == [(10, 8, CancelReason.FOK)]
    assert path.depth() == before
    assert path.ids("asks") == [1, 2, 3]
    path.check()


@pytest.mark.parametrize("stp", [STPMode.CANCEL_NEWEST, STPMode.CANCEL_BOTH, STPMode.DECREMENT])
def test_fok_filled_before_reaching_own_order(path, stp):
    ev = taker_buy(path, qty=2, stp=stp, tif=TimeInForce.FOK)
    assert fills(ev) == [(1, 100, 2)]
    assert canceled(ev) == []
    assert path.ids("asks") == [2, 3]
    path.check()


def test_fok_cancel_oldest_counts_only_others(path):
    # others: 2 + 4 = 6 lots; 7 is not fillable even though 9 lots rest
    ev = taker_buy(path, qty=7, stp=STPMode.CANCEL_OLDEST, tif=TimeInForce.FOK)
    assert canceled(ev) == [(10, 7, CancelReason.FOK)]
    assert path.ids("asks") == [1, 2, 3]  # own order not canceled either
    ev = path.buy(11, 6, 101, owner=ME, stp=STPMode.CANCEL_OLDEST, tif=TimeInForce.FOK)
    assert fills(ev) == [(1, 100, 2), (3, 101, 4)]
    assert canceled(ev) == [(2, 3, ST)]
    assert path.depth() == {"bids": [], "asks": []}
    path.check()


def test_fok_stp_none_counts_own(path):
    ev = taker_buy(path, qty=9, stp=STPMode.NONE, tif=TimeInForce.FOK)
    assert fills(ev) == [(1, 100, 2), (2, 100, 3), (3, 101, 4)]
    path.check()
