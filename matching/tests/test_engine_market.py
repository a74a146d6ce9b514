"""Market orders: take what is there, cancel the rest with no_liquidity, never rest."""

import pytest

from matching.engine import CancelReason, OrderAccepted, OrderType, TimeInForce, Trade
from matching.tests.conftest import BUY, SELL, SYM, canceled, deltas, fills, kinds, of

NO_LIQ = CancelReason.NO_LIQUIDITY


@pytest.mark.parametrize("side", [BUY, SELL])
def test_market_into_empty_book_is_accepted_then_canceled(h, side):
    ev = h.market(1, side, 10)
    assert kinds(ev) == ["OrderAccepted", "OrderCanceled"]
    assert ev[0] == OrderAccepted(1, 1, SYM, side, OrderType.MARKET, None, 10, 1)
    assert canceled(ev) == [(1, 10, NO_LIQ)]
    assert h.depth() == {"bids": [], "asks": []}
    assert h.book.orders == {}
    h.check()


def test_market_into_one_sided_book_does_not_rest_on_own_side(h):
    h.buy(1, 5, 99)
    ev = h.market(2, BUY, 3, owner=2)
    assert canceled(ev) == [(2, 3, NO_LIQ)]
    assert h.depth() == {"bids": [(99, 5, 1)], "asks": []}
    h.check()


def test_market_into_thin_book_fills_then_cancels_rest(h):
    h.sell(1, 2, 100)
    h.sell(2, 3, 150)
    ev = h.market(3, BUY, 10, owner=2)
    assert kinds(ev) == ["OrderAccepted", "Trade", "BookDelta", "Trade", "BookDelta", "OrderCanceled"]
    assert fills(ev) == [(1, 100, 2), (2, 150, 3)]
    assert deltas(ev) == [(SELL, 100, 0), (SELL, 150, 0)]
    assert canceled(ev) == [(3, 5, NO_LIQ)]
    assert h.depth() == {"bids": [], "asks": []}
    assert 3 not in h.book.orders
    h.check()


def test_market_sell_sweeps_bids_at_maker_prices(h):
    h.buy(1, 2, 100)
    h.buy(2, 2, 90)
    ev = h.market(3, SELL, 3, owner=2)
    assert fills(ev) == [(1, 100, 2), (2, 90, 1)]
    assert canceled(ev) == []
    assert h.depth() == {"bids": [(90, 1, 1)], "asks": []}
    h.check()


def test_market_exact_fill(h):
    h.sell(1, 4, 100)
    h.sell(2, 6, 101)
    ev = h.market(3, BUY, 10, owner=2)
    assert fills(ev) == [(1, 100, 4), (2, 101, 6)]
    assert of(ev, Trade)[-1].taker_remaining == 0
    assert canceled(ev) == []
    assert h.book.last_price == 101
    h.check()


def test_market_ioc_remainder_is_no_liquidity(h):
    h.sell(1, 1, 100)
    ev = h.market(2, BUY, 3, owner=2, tif=TimeInForce.IOC)
    assert fills(ev) == [(1, 100, 1)]
    assert canceled(ev) == [(2, 2, NO_LIQ)]
    h.check()


def test_market_fok_not_fillable_has_no_trades(h):
    h.sell(1, 2, 100)
    ev = h.market(2, BUY, 3, owner=2, tif=TimeInForce.FOK)
    assert fills(ev) == []
    assert canceled(ev) == [(2, 3, CancelReason.FOK)]
    assert h.depth()["asks"] == [(100, 2, 1)]
    h.check()


def test_market_fok_fillable(h):
    h.sell(1, 2, 100)
    h.sell(2, 2, 200)
    ev = h.market(3, BUY, 3, owner=2, tif=TimeInForce.FOK)
    assert fills(ev) == [(1, 100, 2), (2, 200, 1)]
    assert canceled(ev) == []
    h.check()


@pytest.mark.parametrize("side", [BUY, SELL])
def test_market_fok_into_empty_book_reason_fok(h, side):
    ev = h.market(1, side, 3, tif=TimeInForce.FOK)
    assert canceled(ev) == [(1, 3, CancelReason.FOK)]


@pytest.mark.parametrize("side, protection, filled", [(BUY, 110, [(1, 100, 2), (2, 110, 3)]),
                                                      (BUY, 109, [(1, 100, 2)]),
                                                      (SELL, 80, [(1, 100, 2), (2, 80, 3)]),
                                                      (SELL, 101, [])])
def test_a_protected_market_order_trades_within_its_protection_price_only(h, side, protection, filled):
    """A market order's price is its protection: it takes what the book has at that price or better,
    the rest is canceled (no liquidity within its protection), and it never rests."""
    resting = SELL if side is BUY else BUY
    h.new(1, resting, 2, 100)
    h.new(2, resting, 3, 110 if side is BUY else 80)
    qty = 10
    ev = h.new(5, side, qty, protection, order_type=OrderType.MARKET, owner=2)
    assert fills(ev) == filled
    assert canceled(ev) == [(5, qty - sum(q for _, _, q in filled), NO_LIQ)]
    assert 5 not in h.book.orders
    h.check()
