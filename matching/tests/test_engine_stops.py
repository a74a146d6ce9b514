"""Stop and stop-limit orders: pending, triggering on the last trade price, cascades, cancel, amend."""

import pytest

from matching.engine import (
    AmendRejected,
    CancelReason,
    OrderAccepted,
    OrderAmended,
    OrderType,
    RejectReason,
    StopTriggered,
)
from matching.tests.conftest import BUY, SELL, SYM, canceled, deltas, fills, kinds, of


def triggered(events):
    return [(e.order_id, e.stop_price, e.last_price) for e in of(events, StopTriggered)]


@pytest.fixture
def asks(h):
    """Asks 100x1, 101x1, 102x1, 103x1, 104x5 (owner 9); no trade yet."""
    for oid, (price, qty) in enumerate([(100, 1), (101, 1), (102, 1), (103, 1), (104, 5)], start=900):
        h.sell(oid, qty, price, owner=9)
    return h


@pytest.mark.parametrize("price", [None, 120])
def test_stop_is_pending_not_in_depth(h, price):
    ev = h.stop(1, BUY, 5, stop_price=110, price=price)
    otype = OrderType.STOP if price is None else OrderType.STOP_LIMIT
    assert ev == [OrderAccepted(1, 1, SYM, BUY, otype, price, 5, 1)]
    assert h.depth() == {"bids": [], "asks": []}
    assert h.book.level3() == {"bids": [], "asks": []}
    assert 1 in h.book.orders and 1 in h.book.stops
    h.check()


def test_any_stop_accepted_before_first_trade(h):
    assert kinds(h.stop(1, BUY, 1, stop_price=1)) == ["OrderAccepted"]
    assert kinds(h.stop(2, SELL, 1, stop_price=10**15)) == ["OrderAccepted"]


@pytest.mark.parametrize(
    ("side", "stop", "ok"),
    [(BUY, 99, False), (BUY, 100, False), (BUY, 101, True), (SELL, 101, False), (SELL, 100, False),
     (SELL, 99, True)],
)
def test_stop_would_trigger_on_arrival(h, side, stop, ok):
    h.sell(1, 1, 100, owner=9)
    h.buy(2, 1, 100, owner=8)
    assert h.book.last_price == 100
    ev = h.stop(3, side, 1, stop_price=stop)
    if ok:
        assert kinds(ev) == ["OrderAccepted"]
    else:
        assert kinds(ev) == ["OrderRejected"]
        assert ev[0].reason == RejectReason.STOP_WOULD_TRIGGER
        assert 3 not in h.book.orders


def test_buy_stop_triggers_when_last_reaches_stop(asks):
    h = asks
    h.stop(1, BUY, 2, stop_price=101, owner=3)
    ev = h.buy(2, 1, 100, owner=2)  # last 100 < 101: nothing
    assert triggered(ev) == []
    ev = h.buy(3, 1, 101, owner=2)  # last 101 >= 101: trigger, the stop buys at market
    assert kinds(ev) == [
        "OrderAccepted", "Trade", "BookDelta",  # the taker's own trade first
        "StopTriggered", "Trade", "BookDelta", "Trade", "BookDelta",  # then the stop's
    ]
    assert triggered(ev) == [(1, 101, 101)]
    assert fills(ev) == [(901, 101, 1), (902, 102, 1), (903, 103, 1)]
    assert [t.taker_order_id for t in ev if type(t).__name__ == "Trade"] == [3, 1, 1]
    assert [t.trade_id for t in ev if type(t).__name__ == "Trade"] == [2, 3, 4]
    assert 1 not in h.book.orders
    h.check()


def test_sell_stop_triggers_when_last_falls_to_stop(h):
    for oid, price in enumerate([100, 99, 98, 97], start=900):
        h.buy(oid, 1, price, owner=9)
    h.stop(1, SELL, 2, stop_price=99, owner=3)
    assert triggered(h.sell(2, 1, 100, owner=2)) == []
    ev = h.sell(3, 1, 99, owner=2)
    assert triggered(ev) == [(1, 99, 99)]
    assert fills(ev) == [(901, 99, 1), (902, 98, 1), (903, 97, 1)]
    h.check()


def test_stop_triggered_by_command_that_rests_a_remainder(asks):
    h = asks
    h.stop(1, BUY, 1, stop_price=100, owner=3)
    ev = h.buy(2, 3, 100, owner=2)  # takes 100x1, rests 2 at 100, then the stop runs
    assert kinds(ev) == [
        "OrderAccepted", "Trade", "BookDelta", "BookDelta", "StopTriggered", "Trade", "BookDelta",
    ]
    assert deltas(ev) == [(SELL, 100, 0), (BUY, 100, 2), (SELL, 101, 0)]
    assert fills(ev) == [(900, 100, 1), (901, 101, 1)]
    h.check()


def test_stop_cascade(asks):
    h = asks
    h.stop(1, BUY, 1, stop_price=101, owner=3)
    h.stop(2, BUY, 1, stop_price=102, owner=4)
    h.stop(3, BUY, 1, stop_price=104, owner=5)  # never reached: last stops at 103
    h.buy(4, 1, 100, owner=2)
    ev = h.buy(5, 1, 101, owner=2)
    assert kinds(ev) == [
        "OrderAccepted", "Trade", "BookDelta",
        "StopTriggered", "Trade", "BookDelta",
        "StopTriggered", "Trade", "BookDelta",
    ]
    assert triggered(ev) == [(1, 101, 101), (2, 102, 102)]
    assert fills(ev) == [(901, 101, 1), (902, 102, 1), (903, 103, 1)]
    assert h.book.last_price == 103
    assert set(h.book.orders) == {3, 904}
    h.check()


def test_trigger_order_buy_ascending_fifo_within_price(asks):
    h = asks
    h.stop(11, BUY, 1, stop_price=103, owner=3)
    h.stop(12, BUY, 1, stop_price=102, owner=3)
    h.stop(13, BUY, 1, stop_price=102, owner=3)
    h.stop(14, BUY, 1, stop_price=101, owner=3)
    ev = h.buy(5, 5, 104, owner=2)  # takes 100..103 and 1 at 104: last 104
    assert [t[0] for t in triggered(ev)] == [14, 12, 13, 11]
    h.check()


def test_trigger_order_sell_descending_fifo_within_price(h):
    for oid, price in enumerate([100, 99, 98, 97], start=900):
        h.buy(oid, 5, price, owner=9)
    h.stop(11, SELL, 1, stop_price=97)
    h.stop(12, SELL, 1, stop_price=99)
    h.stop(13, SELL, 1, stop_price=99)
    h.stop(14, SELL, 1, stop_price=98)
    ev = h.sell(5, 16, 97, owner=2)
    assert [t[0] for t in triggered(ev)] == [12, 13, 14, 11]
    h.check()


def test_stop_with_empty_opposite_side_is_canceled_no_liquidity(h):
    h.sell(1, 1, 100, owner=9)
    h.stop(2, BUY, 4, stop_price=100, owner=3)
    ev = h.buy(3, 1, 100, owner=2)
    assert kinds(ev)[-2:] == ["StopTriggered", "OrderCanceled"]
    assert canceled(ev) == [(2, 4, CancelReason.NO_LIQUIDITY)]
    h.check()


def test_cancel_pending_stop(asks):
    h = asks
    h.stop(1, BUY, 3, stop_price=101, owner=3)
    ev = h.cancel(1, owner=3)
    assert kinds(ev) == ["OrderCanceled"]  # no level, no BookDelta
    assert canceled(ev) == [(1, 3, CancelReason.USER)]
    assert 1 not in h.book.orders and len(h.book.stops) == 0
    ev = h.buy(2, 2, 101, owner=2)
    assert triggered(ev) == []
    assert kinds(h.cancel(1, owner=3)) == ["CancelRejected"]
    h.check()


def test_stop_limit_rests_after_trigger_with_trigger_time(asks):
    h = asks
    h.stop(1, BUY, 5, stop_price=101, price=102, owner=3, ts=10)
    h.buy(2, 1, 100, owner=2, ts=20)
    ev = h.buy(3, 1, 101, owner=2, ts=30)
    assert triggered(ev) == [(1, 101, 101)]
    assert fills(ev) == [(901, 101, 1), (902, 102, 1)]
    assert deltas(ev)[-2:] == [(SELL, 102, 0), (BUY, 102, 4)]
    assert h.depth()["bids"] == [(102, 4, 1)]
    resting = h.book.level3()["bids"][0]
    assert (resting.order_id, resting.order_type, resting.timestamp) == (1, OrderType.LIMIT, 30)
    h.check()


def test_stop_limit_not_crossing_after_trigger_just_rests(asks):
    h = asks
    h.stop(1, BUY, 2, stop_price=101, price=99, owner=3)
    h.buy(2, 2, 101, owner=2)
    assert h.depth()["bids"] == [(99, 2, 1)]
    assert h.book.orders[1].remaining == 2
    h.check()


def test_amend_stop_price(asks):
    h = asks
    h.buy(2, 1, 100, owner=2)  # last 100
    h.stop(1, BUY, 1, stop_price=103, owner=3)
    ev = h.amend(1, owner=3, stop_price=101)
    assert of(ev, OrderAmended) == [OrderAmended(1, 3, SYM, None, 1, 1, 101, False, h.clock)]
    ev = h.buy(3, 1, 101, owner=2)
    assert triggered(ev) == [(1, 101, 101)]
    h.check()


@pytest.mark.parametrize("stop", [100, 99])
def test_amend_stop_price_that_would_trigger_rejected(asks, stop):
    h = asks
    h.buy(2, 1, 100, owner=2)
    h.stop(1, BUY, 1, stop_price=103, owner=3)
    ev = h.amend(1, owner=3, stop_price=stop)
    assert of(ev, AmendRejected)[0].reason == RejectReason.STOP_WOULD_TRIGGER
    assert h.book.orders[1].stop_price == 103


def test_amend_stop_price_of_resting_order_not_amendable(h):
    h.buy(1, 1, 100)
    ev = h.amend(1, stop_price=90)
    assert ev[0].reason == RejectReason.NOT_AMENDABLE


def test_amend_stop_price_moves_trigger_queue(asks):
    h = asks
    h.stop(1, BUY, 1, stop_price=102, owner=3)
    h.stop(2, BUY, 1, stop_price=101, owner=3)
    h.amend(2, owner=3, stop_price=102)  # now after 1 at 102
    ev = h.buy(3, 3, 102, owner=2)
    assert [t[0] for t in triggered(ev)] == [1, 2]


def test_pending_stops_are_not_liquidity(h):
    h.stop(1, SELL, 5, stop_price=90, price=90)
    ev = h.buy(2, 5, 1000, owner=2)
    assert fills(ev) == []
    assert h.depth()["bids"] == [(1000, 5, 1)]
