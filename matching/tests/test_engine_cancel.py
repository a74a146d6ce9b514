"""Cancel: owner only, FIFO of the others kept, levels removed, lazy deletion stays correct."""

from matching.engine import BookDelta, CancelReason, CancelRejected, OrderCanceled, RejectReason
from matching.tests.conftest import BUY, SELL, SYM, canceled, fills


def test_cancel_resting(h):
    h.buy(1, 5, 100)
    h.buy(2, 3, 100)
    ev = h.cancel(1)
    assert sorted(ev, key=lambda e: type(e).__name__) == [
        BookDelta(SYM, BUY, 100, 3),
        OrderCanceled(1, 1, SYM, 5, CancelReason.USER, h.clock),
    ]
    assert h.depth()["bids"] == [(100, 3, 1)]
    assert 1 not in h.book.orders
    h.check()


def test_cancel_partially_filled_cancels_remaining(h):
    h.sell(1, 10, 100)
    h.buy(2, 4, 100, owner=2)
    assert canceled(h.cancel(1)) == [(1, 6, CancelReason.USER)]
    h.check()


def test_cancel_other_owner_rejected(h):
    h.buy(1, 5, 100, owner=1)
    ev = h.cancel(1, owner=2)
    assert ev == [CancelRejected(1, 2, SYM, RejectReason.UNKNOWN_ORDER, h.clock)]
    assert h.depth()["bids"] == [(100, 5, 1)]


def test_cancel_unknown_id_rejected(h):
    assert h.cancel(42) == [CancelRejected(42, 1, SYM, RejectReason.UNKNOWN_ORDER, h.clock)]


def test_cancel_twice(h):
    h.buy(1, 5, 100)
    assert canceled(h.cancel(1)) == [(1, 5, CancelReason.USER)]
    assert h.cancel(1) == [CancelRejected(1, 1, SYM, RejectReason.UNKNOWN_ORDER, h.clock)]
    h.check()


def test_cancel_filled_order_rejected(h):
    h.sell(1, 1, 100)
    h.buy(2, 1, 100, owner=2)
    assert h.cancel(1)[0].reason == RejectReason.UNKNOWN_ORDER
    assert h.cancel(2, owner=2)[0].reason == RejectReason.UNKNOWN_ORDER


def test_cancel_unknown_symbol(h):
    h.buy(1, 5, 100)
    ev = h.cancel(1, symbol="NOPE")
    assert ev == [CancelRejected(1, 1, "NOPE", RejectReason.UNKNOWN_SYMBOL, h.clock)]
    assert 1 in h.book.orders


def test_cancel_middle_keeps_fifo(h):
    for oid in (1, 2, 3, 4):
        h.sell(oid, 2, 100)
    h.cancel(2)
    assert h.ids("asks") == [1, 3, 4]
    assert h.depth()["asks"] == [(100, 6, 3)]
    assert fills(h.buy(9, 5, 100, owner=2)) == [(1, 100, 2), (3, 100, 2), (4, 100, 1)]
    h.check()


def test_cancel_head_then_match(h):
    for oid in (1, 2, 3):
        h.sell(oid, 2, 100)
    h.cancel(1)
    assert fills(h.buy(9, 2, 100, owner=2)) == [(2, 100, 2)]
    h.check()


def test_level_removed_when_last_order_canceled(h):
    h.sell(1, 2, 100)
    h.sell(2, 2, 101)
    h.buy(3, 2, 90)
    ev = h.cancel(1)
    assert [e for e in ev if isinstance(e, BookDelta)] == [BookDelta(SYM, SELL, 100, 0)]
    assert h.book.best_ask() == 101
    assert h.depth()["asks"] == [(101, 2, 1)]
    assert h.book.spread() == 11
    h.check()


def test_many_scattered_cancels_then_sweep(h):
    ids = list(range(1, 101))
    for oid in ids:
        h.sell(oid, 1 + oid % 3, 100, owner=1)
    keep = [oid for oid in ids if oid % 10 == 7]  # 10 survivors, scattered
    for oid in ids:  # cancel in an interleaved order: odd first, then even
        if oid % 2 and oid not in keep:
            h.cancel(oid)
    for oid in ids:
        if not oid % 2 and oid not in keep:
            h.cancel(oid)
    total = sum(1 + oid % 3 for oid in keep)
    assert h.depth()["asks"] == [(100, total, 10)]
    assert h.ids("asks") == keep
    ev = h.buy(1000, total, 100, owner=2)
    assert fills(ev) == [(oid, 100, 1 + oid % 3) for oid in keep]
    assert h.depth()["asks"] == []
    h.check()


def test_cancels_interleaved_with_new_orders_and_partial_sweeps(h):
    for oid in range(1, 61):
        h.sell(oid, 2, 100)
    for oid in range(2, 41, 2):
        h.cancel(oid)
    for oid in range(61, 71):  # arrive after the survivors
        h.sell(oid, 2, 100)
    for oid in range(41, 61, 3):
        h.cancel(oid)
    expected = [oid for oid in range(1, 71) if oid in h.book.orders]
    assert h.ids("asks") == expected
    ev = h.buy(1000, 2 * len(expected) - 1, 100, owner=2)
    assert [f[0] for f in fills(ev)] == expected
    assert fills(ev)[-1] == (expected[-1], 100, 1)
    h.check()


def test_canceled_deep_levels_recreated(h):
    for p in range(100, 130):
        h.sell(p, 1, p)  # order id == price
    for p in range(110, 130, 2):
        h.cancel(p)  # levels below the top of the heap go away
    for p in range(110, 130, 4):
        h.sell(1000 + p, 3, p)  # recreate some of them
    expected_prices = sorted({p for p in range(100, 130) if p in h.book.orders} | set(range(110, 130, 4)))
    assert [p for p, _, _ in h.depth(100)["asks"]] == expected_prices
    ev = h.buy(5000, 10**6, 200, owner=2)
    assert [f[1] for f in fills(ev)] == sorted(f[1] for f in fills(ev))
    assert {f[1] for f in fills(ev)} == set(expected_prices)
    assert h.depth()["asks"] == []
    h.check()


def test_canceled_entries_do_not_pile_up_in_a_level(h):
    h.sell(1, 1, 100)  # stays at the head the whole time
    for oid in range(2, 5002):
        h.sell(oid, 1, 100)
        h.cancel(oid)
    level = h.book.asks.levels[100]
    assert len(level.orders) < 100
    assert h.depth()["asks"] == [(100, 1, 1)]
    h.sell(9999, 2, 100)
    assert fills(h.buy(10000, 3, 100, owner=2)) == [(1, 100, 1), (9999, 100, 2)]
    h.check()


def test_emptied_deep_levels_do_not_pile_up_in_the_heap(h):
    h.sell(1, 1, 100)  # best level stays
    for i in range(5000):
        h.sell(2 + i, 1, 101 + i % 50)
        h.cancel(2 + i)
    assert len(h.book.asks.heap) < 200
    assert h.depth()["asks"] == [(100, 1, 1)]
    h.sell(9999, 1, 120)
    assert fills(h.buy(10000, 2, 200, owner=2)) == [(1, 100, 1), (9999, 120, 1)]
    h.check()
