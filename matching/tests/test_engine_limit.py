"""Limit orders: resting, fills, sweeps, priority, BookDelta, trade ids and book queries."""

from fractions import Fraction

from matching.engine import BookDelta, MatchingEngine, OrderAccepted, OrderType, Trade
from matching.tests.conftest import BUY, SELL, SYM, Harness, deltas, fills, kinds, of


def test_limit_rests_when_nothing_crosses(h):
    ev = h.buy(1, 10, 100)
    assert ev == [
        OrderAccepted(1, 1, SYM, BUY, OrderType.LIMIT, 100, 10, 1),
        BookDelta(SYM, BUY, 100, 10),
    ]
    assert h.depth() == {"bids": [(100, 10, 1)], "asks": []}
    h.check()


def test_full_fill_of_taker_and_maker(h):
    h.sell(1, 5, 100, owner=1)
    ev = h.buy(2, 5, 100, owner=2)
    assert kinds(ev) == ["OrderAccepted", "Trade", "BookDelta"]
    t = of(ev, Trade)[0]
    assert (t.trade_id, t.price, t.qty, t.taker_order_id, t.taker_owner, t.taker_side) == (
        1, 100, 5, 2, 2, BUY)
    assert (t.taker_remaining, t.maker_order_id, t.maker_owner, t.maker_remaining) == (0, 1, 1, 0)
    assert deltas(ev) == [(SELL, 100, 0)]
    assert h.depth() == {"bids": [], "asks": []}
    assert h.book.orders == {}
    h.check()


def test_partial_fill_taker_rests_remainder(h):
    h.sell(1, 3, 100)
    ev = h.buy(2, 10, 101, owner=2)
    assert fills(ev) == [(1, 100, 3)]
    assert of(ev, Trade)[0].taker_remaining == 7
    assert deltas(ev) == [(SELL, 100, 0), (BUY, 101, 7)]
    assert h.depth() == {"bids": [(101, 7, 1)], "asks": []}
    h.check()


def test_partial_fill_maker_keeps_remainder(h):
    h.sell(1, 10, 100)
    ev = h.buy(2, 4, 100, owner=2)
    assert fills(ev) == [(1, 100, 4)]
    assert of(ev, Trade)[0].maker_remaining == 6
    assert deltas(ev) == [(SELL, 100, 6)]
    assert h.depth()["asks"] == [(100, 6, 1)]
    h.check()


def test_sweep_several_levels_fills_at_maker_prices(h):
    h.sell(1, 2, 101)
    h.sell(2, 3, 102)
    h.sell(3, 4, 103)
    h.sell(4, 5, 105)
    ev = h.buy(9, 8, 104, owner=2)
    assert fills(ev) == [(1, 101, 2), (2, 102, 3), (3, 103, 3)]
    assert [t.trade_id for t in of(ev, Trade)] == [1, 2, 3]
    assert [t.taker_remaining for t in of(ev, Trade)] == [6, 3, 0]
    # one delta per level touched, with the level's new total
    assert deltas(ev) == [(SELL, 101, 0), (SELL, 102, 0), (SELL, 103, 1)]
    assert h.depth()["asks"] == [(103, 1, 1), (105, 5, 1)]
    assert h.book.last_price == 103
    h.check()


def test_sell_sweep_of_bids_fills_at_maker_prices(h):
    h.buy(1, 2, 99)
    h.buy(2, 2, 98)
    h.buy(3, 2, 97)
    ev = h.sell(9, 5, 90, owner=2)
    assert fills(ev) == [(1, 99, 2), (2, 98, 2), (3, 97, 1)]
    assert deltas(ev) == [(BUY, 99, 0), (BUY, 98, 0), (BUY, 97, 1)]
    h.check()


def test_fifo_within_a_level(h):
    for oid in (1, 2, 3):
        h.sell(oid, 2, 100)
    assert h.ids("asks") == [1, 2, 3]
    ev = h.buy(9, 5, 100, owner=2)
    assert fills(ev) == [(1, 100, 2), (2, 100, 2), (3, 100, 1)]
    assert deltas(ev) == [(SELL, 100, 1)]
    assert h.ids("asks") == [3]
    h.check()


def test_price_priority_beats_time(h):
    h.buy(1, 1, 99)
    h.buy(2, 1, 101)
    h.buy(3, 1, 100)
    assert h.ids("bids") == [2, 3, 1]
    ev = h.sell(9, 3, 99, owner=2)
    assert fills(ev) == [(2, 101, 1), (3, 100, 1), (1, 99, 1)]
    h.check()


def test_limit_stops_at_its_price(h):
    h.sell(1, 1, 100)
    h.sell(2, 1, 101)
    ev = h.buy(3, 5, 100, owner=2)
    assert fills(ev) == [(1, 100, 1)]
    assert h.depth() == {"bids": [(100, 4, 1)], "asks": [(101, 1, 1)]}
    h.check()


def test_book_never_crossed_after_many_orders(h):
    prices = [100, 97, 103, 99, 101, 98, 102, 100, 96, 104]
    for i, p in enumerate(prices * 3):
        side = BUY if i % 2 else SELL
        h.limit(i + 1, side, 1 + i % 4, p, owner=i % 3)
        bid, ask = h.book.best_bid(), h.book.best_ask()
        assert bid is None or ask is None or bid < ask
    h.check()


def test_trade_ids_count_per_symbol():
    eng = MatchingEngine(["T", "U"])
    t, u = Harness(eng, "T"), Harness(eng, "U")
    t.sell(1, 5, 100)
    u.sell(1, 5, 100)
    ids_t = [tr.trade_id for i in range(3) for tr in of(t.buy(10 + i, 1, 100, owner=2), Trade)]
    ids_u = [tr.trade_id for tr in of(u.buy(20, 2, 100, owner=2), Trade)]
    assert ids_t == [1, 2, 3]
    assert ids_u == [1]
    # the U book's trade counter did not move T's
    ids_t2 = [tr.trade_id for tr in of(t.buy(30, 2, 100, owner=2), Trade)]
    assert ids_t2 == [4]


def test_queries_on_empty_book(h):
    b = h.book
    assert (b.best_bid(), b.best_ask(), b.spread(), b.mid()) == (None, None, None, None)
    assert b.depth() == {"bids": [], "asks": []}
    assert b.level3() == {"bids": [], "asks": []}


def test_queries_one_sided_book(h):
    h.buy(1, 1, 100)
    b = h.book
    assert (b.best_bid(), b.best_ask(), b.spread(), b.mid()) == (100, None, None, None)


def test_queries_two_sided_book(h):
    h.buy(1, 3, 99)
    h.buy(2, 4, 99)
    h.buy(3, 1, 97)
    h.sell(4, 5, 102)
    h.sell(5, 2, 104)
    b = h.book
    assert (b.best_bid(), b.best_ask(), b.spread()) == (99, 102, 3)
    assert b.mid() == Fraction(201, 2)
    assert isinstance(b.mid(), Fraction)
    assert b.depth() == {"bids": [(99, 7, 2), (97, 1, 1)], "asks": [(102, 5, 1), (104, 2, 1)]}
    assert b.depth(1) == {"bids": [(99, 7, 2)], "asks": [(102, 5, 1)]}
    l3 = b.level3()
    assert [(o.order_id, o.price, o.remaining) for o in l3["bids"]] == [(1, 99, 3), (2, 99, 4), (3, 97, 1)]
    assert [(o.order_id, o.price, o.remaining) for o in l3["asks"]] == [(4, 102, 5), (5, 104, 2)]


def test_mid_whole_tick(h):
    h.buy(1, 1, 98)
    h.sell(2, 1, 102)
    assert h.book.mid() == 100
    assert h.book.spread() == 4


def test_depth_limits_levels_best_first(h):
    for i in range(15):
        h.sell(i + 1, 1, 200 - i)
    asks = h.depth(3)["asks"]
    assert asks == [(186, 1, 1), (187, 1, 1), (188, 1, 1)]
    assert len(h.depth()["asks"]) == 10


def test_level_reused_after_being_emptied(h):
    h.sell(1, 1, 100)
    h.sell(2, 1, 101)
    h.buy(3, 1, 100, owner=2)  # empties level 100
    h.sell(4, 2, 100)  # recreate it
    assert h.book.best_ask() == 100
    ev = h.buy(5, 3, 101, owner=2)
    assert fills(ev) == [(4, 100, 2), (2, 101, 1)]
    h.check()
