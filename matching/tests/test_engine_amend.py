"""Amend (FIX style total qty): priority kept or lost, crossing amends, rejections."""

import pytest

from matching.engine import (
    MAX_UNITS,
    AmendOrder,
    AmendRejected,
    OrderAmended,
    OrderExpired,
    RejectReason,
    TimeInForce,
)
from matching.tests.conftest import BUY, SELL, SYM, deltas, fills, kinds, of, refused_at_construction


@pytest.fixture
def level(h):
    """Asks 1, 2, 3 at 100 (5 lots each, owners 1, 2, 3) and 4 at 101 (owner 4)."""
    for oid in (1, 2, 3):
        h.sell(oid, 5, 100, owner=oid)
    h.sell(4, 5, 101, owner=4)
    return h


def amended(events):
    return [(e.order_id, e.price, e.qty, e.remaining, e.kept_priority) for e in of(events, OrderAmended)]


def test_reduce_qty_keeps_priority(level):
    h = level
    ev = h.amend(1, owner=1, qty=3)
    assert ev == [OrderAmended(1, 1, SYM, 100, 3, 3, None, True, h.clock), *ev[1:]]
    assert deltas(ev) == [(SELL, 100, 13)]
    assert h.ids("asks") == [1, 2, 3, 4]
    assert fills(h.buy(9, 4, 100, owner=9)) == [(1, 100, 3), (2, 100, 1)]
    h.check()


def test_same_qty_same_price_keeps_priority(level):
    h = level
    ev = h.amend(1, owner=1, qty=5, price=100)
    assert amended(ev) == [(1, 100, 5, 5, True)]
    assert h.ids("asks") == [1, 2, 3, 4]


def test_increase_qty_loses_priority(level):
    h = level
    ev = h.amend(1, owner=1, qty=8)
    assert kinds(ev) == ["OrderAmended", "BookDelta", "BookDelta"]
    assert amended(ev) == [(1, 100, 8, 8, False)]
    assert deltas(ev) == [(SELL, 100, 10), (SELL, 100, 18)]  # taken out, then queued at the back
    assert h.ids("asks") == [2, 3, 1, 4]
    assert h.book.level3()["asks"][2].timestamp == h.clock  # queue time of the amend
    assert h.depth()["asks"] == [(100, 18, 3), (101, 5, 1)]
    assert fills(h.buy(9, 11, 100, owner=9)) == [(2, 100, 5), (3, 100, 5), (1, 100, 1)]
    h.check()


def test_price_change_loses_priority(level):
    h = level
    ev = h.amend(1, owner=1, price=101)
    assert amended(ev) == [(1, 101, 5, 5, False)]
    assert deltas(ev) == [(SELL, 100, 10), (SELL, 101, 10)]
    assert h.ids("asks") == [2, 3, 4, 1]
    h.amend(1, owner=1, price=100)  # back again: now behind 2 and 3
    assert h.ids("asks") == [2, 3, 1, 4]
    h.check()


def test_reduce_qty_and_change_price_loses_priority(level):
    h = level
    ev = h.amend(2, owner=2, qty=1, price=101)
    assert amended(ev) == [(2, 101, 1, 1, False)]
    assert h.ids("asks") == [1, 3, 4, 2]
    h.check()


def test_amend_partially_filled_order(level):
    h = level
    h.buy(9, 2, 100, owner=9)  # order 1: qty 5, filled 2, remaining 3
    ev = h.amend(1, owner=1, qty=4)
    assert amended(ev) == [(1, 100, 4, 2, True)]
    assert h.depth()["asks"][0] == (100, 12, 3)
    assert h.ids("asks")[0] == 1
    ev = h.amend(1, owner=1, qty=9)
    assert amended(ev) == [(1, 100, 9, 7, False)]
    h.check()


@pytest.mark.parametrize("qty", [2, 1, 0, -3])
def test_amend_qty_not_above_filled_rejected(level, qty):
    h = level
    h.buy(9, 2, 100, owner=9)  # order 1 filled 2
    ev = h.amend(1, owner=1, qty=qty)
    assert ev == [AmendRejected(1, 1, SYM, RejectReason.INVALID_QUANTITY, h.clock)]
    assert h.book.orders[1].remaining == 3
    h.check()


@pytest.mark.parametrize("qty", [MAX_UNITS + 1, True, 5.0, "5"])
def test_amend_bad_qty_type_or_size_rejected(level, qty):
    if refused_at_construction(AmendOrder, 1, 1, SYM, qty=qty):
        return
    ev = level.amend(1, owner=1, qty=qty)
    assert ev[0].reason == RejectReason.INVALID_QUANTITY


@pytest.mark.parametrize("price", [0, -1, MAX_UNITS + 1, 100.5, "100", True])
def test_amend_bad_price_rejected(level, price):
    if refused_at_construction(AmendOrder, 1, 1, SYM, price=price):
        return
    ev = level.amend(1, owner=1, price=price)
    assert ev[0].reason == RejectReason.INVALID_PRICE
    assert level.ids("asks") == [1, 2, 3, 4]


def test_amend_to_crossing_price_trades_as_taker(h):
    h.buy(1, 5, 99, owner=1)
    h.sell(2, 3, 101, owner=2)
    h.sell(3, 3, 102, owner=3)
    ev = h.amend(1, owner=1, price=101)
    assert kinds(ev) == ["OrderAmended", "BookDelta", "Trade", "BookDelta", "BookDelta"]
    assert amended(ev) == [(1, 101, 5, 5, False)]
    trade = ev[2]
    assert (trade.taker_order_id, trade.maker_order_id, trade.price, trade.qty) == (1, 2, 101, 3)
    assert trade.taker_side == BUY
    assert deltas(ev) == [(BUY, 99, 0), (SELL, 101, 0), (BUY, 101, 2)]
    assert h.depth() == {"bids": [(101, 2, 1)], "asks": [(102, 3, 1)]}
    h.check()


def test_amend_crossing_triggers_stop(h):
    h.sell(1, 1, 100, owner=1)
    h.sell(2, 1, 101, owner=1)
    h.stop(3, BUY, 1, stop_price=100, owner=3)
    h.buy(4, 1, 99, owner=2)
    ev = h.amend(4, owner=2, price=100)
    assert kinds(ev) == ["OrderAmended", "BookDelta", "Trade", "BookDelta", "StopTriggered", "Trade",
                         "BookDelta"]
    assert fills(ev) == [(1, 100, 1), (2, 101, 1)]
    h.check()


def test_post_only_amend_to_crossing_refused(h):
    h.sell(1, 5, 101, owner=1)
    h.buy(2, 5, 99, owner=2, post_only=True)
    ev = h.amend(2, owner=2, price=101)
    assert ev == [AmendRejected(2, 2, SYM, RejectReason.POST_ONLY_WOULD_TAKE, h.clock)]
    assert h.depth() == {"bids": [(99, 5, 1)], "asks": [(101, 5, 1)]}
    ev = h.amend(2, owner=2, price=100)
    assert amended(ev) == [(2, 100, 5, 5, False)]
    h.check()


def test_amend_other_owner_unknown_order(level):
    h = level
    ev = h.amend(1, owner=2, qty=1)
    assert ev == [AmendRejected(1, 2, SYM, RejectReason.UNKNOWN_ORDER, h.clock)]
    assert h.book.orders[1].qty == 5


def test_amend_unknown_id_unknown_order(level):
    assert level.amend(77, owner=1, qty=1)[0].reason == RejectReason.UNKNOWN_ORDER


def test_amend_filled_order_unknown_order(level):
    h = level
    h.buy(9, 5, 100, owner=9)
    assert h.amend(1, owner=1, qty=9)[0].reason == RejectReason.UNKNOWN_ORDER


def test_amend_nothing_invalid_options(level):
    ev = level.amend(1, owner=1)
    assert ev[0].reason == RejectReason.INVALID_OPTIONS


def test_amend_price_of_stop_market_not_amendable(h):
    h.stop(1, BUY, 1, stop_price=110)
    assert h.amend(1, price=111)[0].reason == RejectReason.NOT_AMENDABLE


def test_amend_pending_stop_limit_qty_and_price(h):
    h.stop(1, BUY, 4, stop_price=110, price=111)
    ev = h.amend(1, qty=2)
    assert of(ev, OrderAmended)[0].kept_priority is True
    ev = h.amend(1, price=112)
    assert [(e.price, e.qty, e.remaining, e.stop_price, e.kept_priority) for e in of(ev, OrderAmended)] == [
        (112, 2, 2, 110, False)
    ]
    assert kinds(ev) == ["OrderAmended"]  # pending: no level, no BookDelta
    assert h.depth()["bids"] == []
    h.check()


def test_amended_day_order_still_expires(h):
    h.buy(1, 5, 100, ts=1, tif=TimeInForce.DAY, expire_at=50)
    h.amend(1, price=101, qty=7, ts=10)
    ev = h.advance(50)
    assert of(ev, OrderExpired) == [OrderExpired(1, 1, SYM, 7, 50)]
    assert h.depth()["bids"] == []
    h.check()


def test_amend_unknown_symbol(h):
    ev = h.amend(1, symbol="NOPE", qty=1)
    assert ev == [AmendRejected(1, 1, "NOPE", RejectReason.UNKNOWN_SYMBOL, h.clock)]
