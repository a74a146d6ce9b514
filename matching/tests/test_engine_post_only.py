"""Post-only limit orders: rest when they do not cross, are rejected when they would take."""

import pytest

from matching.engine import OrderType, RejectReason, TimeInForce
from matching.tests.conftest import BUY, SELL, deltas, kinds


def test_post_only_rests_when_not_crossing(h):
    h.sell(1, 5, 101)
    ev = h.buy(2, 5, 100, owner=2, post_only=True)
    assert kinds(ev) == ["OrderAccepted", "BookDelta"]
    assert deltas(ev) == [(BUY, 100, 5)]
    assert h.depth() == {"bids": [(100, 5, 1)], "asks": [(101, 5, 1)]}
    assert h.book.orders[2].post_only is True
    h.check()


def test_post_only_rests_on_empty_book(h):
    ev = h.sell(1, 5, 100, post_only=True)
    assert kinds(ev) == ["OrderAccepted", "BookDelta"]


@pytest.mark.parametrize(("side", "price"), [(BUY, 101), (BUY, 150), (SELL, 99), (SELL, 1)])
def test_post_only_crossing_rejected(h, side, price):
    h.buy(1, 5, 99)
    h.sell(2, 5, 101)
    before = h.depth()
    ev = h.limit(3, side, 5, price, owner=2, post_only=True)
    assert kinds(ev) == ["OrderRejected"]
    assert ev[0].reason == RejectReason.POST_ONLY_WOULD_TAKE
    assert h.depth() == before
    assert h.book.trade_seq == 0
    assert 3 not in h.book.orders


def test_post_only_just_inside_spread_rests(h):
    h.buy(1, 5, 99)
    h.sell(2, 5, 101)
    assert kinds(h.buy(3, 1, 100, owner=2, post_only=True)) == ["OrderAccepted", "BookDelta"]
    assert kinds(h.sell(4, 1, 100, owner=2, post_only=True)) == ["OrderRejected"]


def test_post_only_crossing_own_order_still_rejected(h):
    h.sell(1, 5, 100, owner=7)
    ev = h.buy(2, 1, 100, owner=7, post_only=True)
    assert ev[0].reason == RejectReason.POST_ONLY_WOULD_TAKE


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_post_only_with_ioc_or_fok_rejected_invalid_options(h, tif):
    ev = h.buy(1, 5, 100, post_only=True, tif=tif)
    assert kinds(ev) == ["OrderRejected"]
    assert ev[0].reason == RejectReason.INVALID_OPTIONS


def test_post_only_market_rejected_invalid_options(h):
    ev = h.new(1, BUY, 5, None, order_type=OrderType.MARKET, post_only=True)
    assert ev[0].reason == RejectReason.INVALID_OPTIONS


def test_post_only_stop_limit_rejected_invalid_options(h):
    ev = h.stop(1, BUY, 5, stop_price=110, price=111, post_only=True)
    assert ev[0].reason == RejectReason.INVALID_OPTIONS


def test_post_only_day_order_allowed(h):
    ev = h.buy(1, 5, 100, post_only=True, tif=TimeInForce.DAY, expire_at=10**12)
    assert kinds(ev) == ["OrderAccepted", "BookDelta"]
