"""Invariants over long mixed command streams: never crossed, level 2 == level 3, BookDeltas
rebuild the depth, trade ids consecutive, quantity accounting; and commands are not retained."""

import pytest

from matching.engine import (
    AdvanceTime,
    BookDelta,
    Event,
    MatchingEngine,
    NewOrder,
    OrderExpired,
    OrderType,
    Side,
    StopTriggered,
    STPMode,
    TimeInForce,
    Trade,
)
from matching.tests.conftest import BUY, SELL, SYM, accounting_errors, book_errors, of, random_commands

SYMBOLS = ("T", "U")


@pytest.mark.parametrize("seed", range(8))
def test_random_stream_invariants(seed):
    eng = MatchingEngine(SYMBOLS)
    l2: dict[str, dict[Side, dict[int, int]]] = {s: {BUY: {}, SELL: {}} for s in SYMBOLS}  # from deltas only
    next_trade = dict.fromkeys(SYMBOLS, 1)
    log: dict[str, list[Event]] = {s: [] for s in SYMBOLS}
    for cmd in random_commands(seed, 1500, SYMBOLS):
        events = eng.apply(cmd)
        for e in events:
            if isinstance(e, BookDelta):
                levels = l2[e.symbol][e.side]
                if e.qty:
                    levels[e.price] = e.qty
                else:
                    assert levels.pop(e.price, None) is not None, e
            elif isinstance(e, Trade):
                assert e.trade_id == next_trade[e.symbol]
                next_trade[e.symbol] += 1
            log[e.symbol].append(e)
        for s in SYMBOLS:
            book = eng.books[s]
            assert book_errors(book) == [], (seed, cmd)
            depth = book.depth(10**6)
            assert sorted(l2[s][BUY].items(), reverse=True) == [(p, q) for p, q, _ in depth["bids"]], cmd
            assert sorted(l2[s][SELL].items()) == [(p, q) for p, q, _ in depth["asks"]], cmd
    for s in SYMBOLS:
        assert accounting_errors(log[s], eng.books[s]) == []
        assert next_trade[s] == eng.books[s].trade_seq + 1


def test_stream_exercises_the_interesting_paths():
    eng = MatchingEngine(SYMBOLS)
    seen: set[str] = set()
    for cmd in random_commands(0, 3000, SYMBOLS):
        seen.update(type(e).__name__ for e in eng.apply(cmd))
    assert {"Trade", "StopTriggered", "OrderExpired", "OrderReduced", "OrderAmended", "AmendRejected"} <= seen


# ---- the engine must not depend on command objects after apply() ------------------------------
# Commands are plain mutable dataclasses; a caller may reuse one (object pool, parser buffer) once
# apply() has returned. The live order must keep the values it was accepted with.

def test_mutating_command_after_apply_keeps_expiry(h):
    cmd = NewOrder(1, 1, SYM, BUY, 5, 100, tif=TimeInForce.DAY, expire_at=50, timestamp=1)
    h.apply(cmd)
    before = h.engine.state_hash()
    cmd.expire_at, cmd.tif = 10**9, TimeInForce.GTC
    assert h.engine.state_hash() == before
    ev = h.apply(AdvanceTime(50))
    assert of(ev, OrderExpired) == [OrderExpired(1, 1, SYM, 5, 50)]


def test_mutating_command_after_apply_keeps_stp(h):
    cmd = NewOrder(1, 1, SYM, SELL, 5, 100, stp=STPMode.NONE, timestamp=1)
    h.apply(cmd)
    cmd.stp = STPMode.CANCEL_BOTH
    h.buy(3, 1, 99, owner=1)
    ev = h.amend(1, price=99)  # order 1, accepted with stp none, now takes from its owner's bid
    assert [t.qty for t in of(ev, Trade)] == [1]


def test_mutating_stop_command_after_apply_keeps_trigger_and_qty(h):
    cmd = NewOrder(1, 1, SYM, BUY, 2, None, OrderType.STOP, stop_price=100, timestamp=1)
    h.apply(cmd)
    cmd.stop_price, cmd.qty = 10**6, 77
    h.sell(2, 5, 100, owner=2)
    ev = h.buy(3, 1, 100, owner=3)
    assert [e.order_id for e in of(ev, StopTriggered)] == [1]
    assert [t.qty for t in of(ev, Trade)] == [1, 2]
