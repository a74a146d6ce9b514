"""Halts: the circuit breaker halts a symbol after the command whose trade moved too far and lifts
the halt on the first command at or after its end; admin halts last until an admin resumes. While
halted, new orders and amends are refused, cancels pass, resting orders stay."""

from __future__ import annotations

import pytest

from matching.engine import AmendRejected, CancelReason, OrderCanceled, RejectReason, Trade
from risk.core import (
    CIRCUIT_BREAKER,
    AdminKind,
    AdminRejected,
    AdminRejectReason,
    HaltInstrument,
    InstrumentHalted,
    InstrumentResumed,
    ResumeInstrument,
)

from .conftest import SYM, Harness, kinds, of, rejection

WINDOW, HALT = 100, 50


def breaker(r: Harness) -> None:
    r.configure(circuit_move_bps=500, circuit_window_ns=WINDOW, circuit_halt_ns=HALT)


def trade_at(r: Harness, price: int, ts: int | None = None):
    """One lot traded at `price` by a command at `ts` (the next tick by default); its events."""
    ts = r.ts(ts)
    r.sell(8, 1, price, ts=ts)
    return r.buy(9, 1, price, ts=ts)


@pytest.mark.parametrize(("price", "halts"), [(105, False), (106, True), (95, False), (94, True)])
def test_a_move_beyond_the_limit_within_the_window_halts(r, price, halts):
    breaker(r)
    trade_at(r, 100, ts=10)
    events = trade_at(r, price)
    assert bool(of(events, InstrumentHalted)) is halts
    assert of(events, Trade)  # the halting trade stands
    assert r.risk.is_halted(SYM) is halts


def test_the_window_counts_trades_at_most_window_ns_old(r):
    breaker(r)
    trade_at(r, 100, ts=10)
    assert of(trade_at(r, 106, ts=10 + WINDOW), InstrumentHalted)  # 100 traded exactly WINDOW ago
    other = Harness()
    other.default_cash()
    breaker(other)
    trade_at(other, 100, ts=10)
    assert not of(trade_at(other, 106, ts=11 + WINDOW), InstrumentHalted)


def test_halt_comes_after_the_whole_command_and_lifts_on_time(r):
    breaker(r)
    trade_at(r, 100, ts=10)
    r.sell(2, 1, 103)
    r.sell(2, 1, 110)
    r.buy(3, 1, 50)  # rests through the halt
    resting = r.last_id
    events = r.buy(1, 2, 110)  # sweeps 103 then 110 in one command
    assert [t.price for t in of(events, Trade)] == [103, 110]
    ts = r.clock
    assert events[-1] == InstrumentHalted(SYM, CIRCUIT_BREAKER, ts + HALT, ts)
    assert kinds(events)[-2] == "AccountUpdate"  # the halt comes last
    assert r.risk.next_deadline() == ts + HALT
    depth = r.engine.books[SYM].depth()
    assert rejection(r.buy(4, 1, 100)) is RejectReason.HALTED
    assert of(r.amend(resting, 3, qty=2), AmendRejected)[0].reason is RejectReason.HALTED
    assert r.engine.books[SYM].depth() == depth
    assert of(r.cancel(resting, 3), OrderCanceled)[0].reason is CancelReason.USER  # cancels pass
    assert rejection(r.buy(4, 1, 100, ts=ts + HALT - 1)) is RejectReason.HALTED
    events = r.buy(4, 1, 100, ts=ts + HALT)
    assert events[0] == InstrumentResumed(SYM, ts + HALT)
    assert kinds(events)[1] == "OrderAccepted"
    assert r.risk.next_deadline() is None


def test_advance_time_lifts_a_halt_and_the_window_restarts_after_it(r):
    breaker(r)
    trade_at(r, 100, ts=10)
    trade_at(r, 120)
    until = r.risk.next_deadline()
    assert r.advance(until) == [InstrumentResumed(SYM, until)]
    events = trade_at(r, 100)  # 100 vs the pre-halt 120 would trip; the window started afresh
    assert not of(events, InstrumentHalted)


def test_admin_halt_lasts_until_resumed(r):
    events = r.admin(HaltInstrument, SYM, "news pending")
    assert events == [InstrumentHalted(SYM, "news pending", None, r.clock)]
    assert r.risk.next_deadline() is None
    r.advance(10**12)
    assert rejection(r.buy(1, 1, 100)) is RejectReason.HALTED
    assert rejection(r.buy(1, 1, 100, symbol="T")) is None  # other symbols trade on
    assert r.admin(ResumeInstrument, SYM) == [InstrumentResumed(SYM, r.clock)]
    assert rejection(r.buy(1, 1, 100)) is None
    assert r.admin(ResumeInstrument, SYM) == [
        AdminRejected(AdminKind.RESUME, SYM, AdminRejectReason.NOT_HALTED, "", r.clock)]


def test_an_admin_halt_over_a_timed_one_makes_it_untimed(r):
    breaker(r)
    trade_at(r, 100, ts=10)
    trade_at(r, 120)
    until = r.risk.next_deadline()
    r.admin(HaltInstrument, SYM, "investigating")
    assert r.risk.next_deadline() is None
    assert r.advance(until + 1) == []
    assert r.risk.is_halted(SYM)


def test_an_admin_may_resume_a_circuit_halt_early(r):
    breaker(r)
    trade_at(r, 100, ts=10)
    trade_at(r, 120)
    assert r.admin(ResumeInstrument, SYM) == [InstrumentResumed(SYM, r.clock)]
    assert r.risk.next_deadline() is None


def test_halting_an_unknown_symbol_is_refused(r):
    assert r.admin(HaltInstrument, "NOPE", "x") == [
        AdminRejected(AdminKind.HALT, "NOPE", AdminRejectReason.UNKNOWN_SYMBOL, "", r.clock)]


def test_several_timed_halts_lift_in_symbol_order(r):
    breaker(r)
    r.configure(symbol="T", circuit_move_bps=500, circuit_window_ns=WINDOW, circuit_halt_ns=HALT)
    for symbol in ("T", SYM):
        r.sell(8, 1, 100, symbol=symbol, ts=10)
        r.buy(9, 1, 100, symbol=symbol, ts=10)
    r.sell(8, 1, 120, symbol="T", ts=20)
    r.buy(9, 1, 120, symbol="T", ts=20)
    trade_at(r, 120, ts=21)
    assert r.risk.next_deadline() == 20 + HALT
    assert r.advance(21 + HALT) == [InstrumentResumed(SYM, 21 + HALT), InstrumentResumed("T", 21 + HALT)]
