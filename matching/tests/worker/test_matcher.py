"""The matcher: sequencing, order ids, idempotent retries, recovery and snapshot equivalence."""

from __future__ import annotations

import os
import random
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from matching.engine import (
    AmendOrder,
    AmendRejected,
    BookDelta,
    CancelOrder,
    CancelRejected,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    OrderType,
    RejectReason,
    Side,
    Trade,
)
from matching.tests.worker.load import SYMBOLS, LoadGenerator
from matching.worker.codec import CodecError, decode_batch, encode_batch, encode_command
from matching.worker.journal import Journal, Segments
from matching.worker.matcher import ORDER_ID_STRIDE, OVERLAP_FSYNC_FROM, Matcher
from risk.core import AccountUpdate, InstrumentRisk, OrderHeld, SetDefaultCash, SetInstrumentRisk


def drive(matcher: Matcher, seed: int, batches: int) -> None:
    load, rng = LoadGenerator(seed), random.Random(seed)
    for _ in range(batches):
        matcher.process(load.batch(matcher.engine, rng.randint(1, 30)))


@pytest.fixture
def matcher(tmp_path):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    yield m
    m.close()


def order(owner=1, side=Side.BUY, qty=5, price=100, coid=None) -> NewOrder:
    return NewOrder(0, owner, "AAPL", side, qty, price, client_order_id=coid)


def test_sequence_timestamps_and_order_ids(tmp_path):
    times = iter([50, 40, 40, 60])  # a wall clock that stalls and steps back; read once a batch
    m = Matcher(SYMBOLS, shard=2, journal=Journal(tmp_path / "j", fsync=False), clock=lambda: next(times))
    replies = [r for size in (2, 1, 1, 2) for r in m.process([order() for _ in range(size)])]
    assert [r.seq for r in replies] == [1, 2, 3, 4, 5, 6]
    assert [r.order_id for r in replies] == [2 * ORDER_ID_STRIDE + n for n in (1, 2, 3, 4, 5, 6)]
    records = list(Journal.read(tmp_path / "j"))  # one record per batch
    assert [(r.seq, r.timestamp, r.count) for r in records] == [
        (1, 50, 2), (3, 52, 1), (4, 53, 1), (5, 60, 2)
    ]
    firsts = [r.events[0] for r in replies]
    assert [None if isinstance(e, BookDelta) else e.timestamp for e in firsts] == [50, 51, 52, 53, 60, 61]


def test_retry_with_same_client_order_id_returns_the_original(matcher):
    first = matcher.process([order(coid="a", price=100)])[0]
    again = matcher.process([order(coid="a", price=999)])[0]
    assert again.duplicate and again.order_id == first.order_id and again.events == []
    assert list(matcher.engine.books["AAPL"].orders) == [first.order_id]
    other_owner = matcher.process([order(owner=2, coid="a")])[0]
    assert not other_owner.duplicate and other_owner.order_id != first.order_id


def test_duplicates_inside_one_batch(matcher):
    replies = matcher.process([order(coid="x"), order(coid="x"), order(coid="y")])
    assert [r.duplicate for r in replies] == [False, True, False]
    assert replies[1].order_id == replies[0].order_id


def test_idempotency_survives_restart(tmp_path):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    first = m.process([order(coid="keep")])[0]
    m.close()
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    again = m.process([order(coid="keep")])[0]
    assert again.duplicate and again.order_id == first.order_id
    m.close()


@pytest.mark.parametrize("snapshot_every", [10**9, 7, 100])
def test_recovery_equals_the_uninterrupted_run(tmp_path, snapshot_every):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, snapshot_every=snapshot_every)
    drive(m, seed=1, batches=40)
    expected = (m.seq, m.state_hash(), m.orders_created, dict(m.client_order_ids))
    m.close()
    replayed: list = []
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, on_reply=replayed.append)
    assert (m.seq, m.state_hash(), m.orders_created, m.client_order_ids) == expected
    if snapshot_every == 10**9:
        assert len(replayed) == m.seq  # no snapshot: the whole journal was replayed
    m.close()


def test_snapshot_at_n_plus_replay_equals_uninterrupted(tmp_path):
    straight = Matcher(SYMBOLS, journal=Journal(tmp_path / "straight", fsync=False))
    drive(straight, seed=3, batches=30)
    records = list(Journal.read(tmp_path / "straight"))
    commands = [  # (seq, timestamp, command) for every command in the log
        (record.seq + i, record.timestamp + i, cmd)
        for record in records
        for i, cmd in enumerate(decode_batch(record.payload))
    ]
    for cut in (1, len(commands) // 3, len(commands) - 1):
        prefix = Matcher(SYMBOLS)
        for seq, timestamp, cmd in commands[:cut]:
            assert not isinstance(cmd, CodecError), cmd
            prefix.apply(seq, timestamp, cmd)
        resumed = Matcher(SYMBOLS)
        resumed.restore(prefix.state())
        for record in records:  # whole records: the one the snapshot falls inside is applied in part
            resumed.apply_record(record)
        assert resumed.state_hash() == straight.state_hash()
        assert resumed.seq == straight.seq


def test_replayed_events_equal_the_live_ones(tmp_path):
    live: list = []
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    load, rng = LoadGenerator(5), random.Random(5)
    for _ in range(20):
        live.extend(m.process(load.batch(m.engine, rng.randint(1, 20))))
    m.close()
    replayed: list = []
    Matcher.open(SYMBOLS, tmp_path, fsync=False, on_reply=replayed.append).close()
    assert replayed == live
    assert any(isinstance(e, Trade) for r in live for e in r.events)


def test_undecodable_commands_take_their_seqs_and_are_skipped(tmp_path):
    good = msgpack.unpackb(encode_command(order()))
    journal = Journal(tmp_path / "j", fsync=False)
    journal.append(1, 10, b"\xc1garbage", count=2)  # a whole record
    journal.append(3, 11, encode_batch([order()]))
    journal.append(4, 12, msgpack.packb([good, [99, "no such command"], good]), count=3)  # one entry
    journal.append(7, 13, msgpack.packb([good]), count=2)  # fewer commands than its header says
    journal.commit()
    m = Matcher(SYMBOLS, journal=journal)
    replies: list = []
    m.recover(replies.append)
    assert m.seq == 8
    assert [bool(r.events) for r in replies] == [False, False, True, True, False, True, False, False]
    assert len(m.engine.books["AAPL"].orders) == 3


def test_a_sequence_gap_is_refused(matcher):
    with pytest.raises(ValueError, match="sequence gap"):
        matcher.apply(5, 1, order())


def test_snapshot_of_another_shard_is_refused():
    with pytest.raises(ValueError, match="shard"):
        Matcher(SYMBOLS, shard=1).restore(Matcher(SYMBOLS, shard=0).state())


def test_journal_behind_the_snapshot_is_refused(tmp_path):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    drive(m, seed=2, batches=5)
    m.snapshot()
    m.close()
    (tmp_path / "shard-0.journal").unlink()
    with pytest.raises(RuntimeError, match="journal ends"):
        Matcher.open(SYMBOLS, tmp_path, fsync=False)


def test_recovery_replays_everything_a_lagging_projection_has_not_seen(tmp_path):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, snapshot_every=50)
    drive(m, seed=4, batches=30)
    expected = m.state_hash()
    last = m.seq
    m.close()
    assert last > 200
    projected_up_to = 120  # the projection's cursor: it missed everything after 120
    replayed: list = []
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, on_reply=replayed.append, replay_after=projected_up_to)
    assert m.state_hash() == expected
    seqs = [r.seq for r in replayed]
    assert seqs == list(range(seqs[0], last + 1))
    assert seqs[0] <= projected_up_to + 1
    m.close()


def test_client_order_ids_are_per_symbol(matcher):
    aapl = matcher.process([order(coid="same")])[0]
    msft = matcher.process([NewOrder(0, 1, "MSFT", Side.BUY, 5, 100, client_order_id="same")])[0]
    assert not msft.duplicate and msft.order_id != aapl.order_id
    assert matcher.process([order(coid="same")])[0].duplicate


def test_a_large_batch_is_durable_when_answered_and_a_failed_fsync_fails_it(tmp_path, monkeypatch):
    m = Matcher.open(SYMBOLS, tmp_path)  # fsync on
    replies = m.process([order(owner=n) for n in range(OVERLAP_FSYNC_FROM)])  # applied during the fsync
    assert m.journal is not None and m.journal.last_seq == replies[-1].seq == OVERLAP_FSYNC_FROM

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        m.process([order(owner=n) for n in range(OVERLAP_FSYNC_FROM)])
    with pytest.raises(RuntimeError, match="reopen"):
        m.process([order()])
    m.close()


def risk_config() -> list:
    aapl = InstrumentRisk("AAPL", 100, max_position=50, max_order_qty=20)
    return [SetDefaultCash(10**9), SetInstrumentRisk(aapl)]


def test_the_risk_stage_switches_on_with_the_first_admin_command(matcher):
    assert matcher.risk is None  # no admin command yet: orders go straight to the engine
    assert isinstance(matcher.process([order(qty=500)])[0].events[0], OrderAccepted)
    matcher.process(risk_config())
    assert matcher.risk is not None
    too_big = matcher.process([order(qty=21)])[0]
    assert [e.reason for e in too_big.events if isinstance(e, OrderRejected)] == [RejectReason.ORDER_SIZE]
    fits = matcher.process([order(qty=20, price=100)])[0]
    assert isinstance(fits.events[0], OrderAccepted)
    assert any(isinstance(e, AccountUpdate) and e.reserved == 20 * 100 * 100 for e in fits.events)


@pytest.mark.parametrize("snapshot_every", [10**9, 5])
def test_risk_state_survives_recovery(tmp_path, snapshot_every):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, snapshot_every=snapshot_every)
    m.process(risk_config())
    drive(m, seed=4, batches=25)
    assert m.risk is not None
    expected = (m.seq, m.state_hash(), m.risk.state())
    m.close()
    again = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    assert again.risk is not None
    assert (again.seq, again.state_hash(), again.risk.state()) == expected
    again.close()


def test_an_instrument_configured_later_gets_a_book(matcher):
    matcher.process(risk_config())
    assert "NEW" not in matcher.engine.books
    matcher.process([SetInstrumentRisk(InstrumentRisk("NEW", 1))])
    reply = matcher.process([NewOrder(0, 1, "NEW", Side.SELL, 1, 5)])[0]
    assert isinstance(reply.events[0], OrderAccepted)


@pytest.mark.parametrize("replay_after", [None, 40])
def test_recovery_across_journal_segments(tmp_path, replay_after):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, snapshot_every=50, segment_bytes=2_000)
    drive(m, seed=6, batches=40)
    expected = (m.seq, m.state_hash(), m.orders_created)
    m.close()
    retired = Segments(tmp_path / "shard-0.journal").retired()
    assert len(retired) > 2 and retired[0][0] == 1
    replayed: list = []
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, on_reply=replayed.append, replay_after=replay_after)
    assert (m.seq, m.state_hash(), m.orders_created) == expected
    if replay_after is not None:  # a lagging projection: from an older snapshot, through retired segments
        assert replayed[0].seq <= replay_after + 1 and replayed[-1].seq == m.seq
    drive(m, seed=7, batches=5)  # and it goes on writing where the chain ends
    m.close()


def test_cancel_and_amend_without_a_symbol_find_the_order_and_replay_alike(tmp_path):
    """Routed by order id alone (the web tier need not know the symbol): the shard finds it in its
    books (its pending stops and held orders too); the journal keeps the command as sent, and replay
    finds the same."""
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    msft = m.process([NewOrder(0, 1, "MSFT", Side.SELL, 5, 300)])[0].order_id
    aapl = m.process([order(owner=2, qty=5, price=100)])[0].order_id
    amended = m.process([AmendOrder(aapl, 2, "", qty=3)])[0]
    assert [e.symbol for e in amended.events if isinstance(e, OrderAmended)] == ["AAPL"]
    assert isinstance(amended.command, AmendOrder) and amended.command.symbol == "AAPL"  # as listeners see it
    canceled = m.process([CancelOrder(msft, 1, "")])[0]
    gone = [(e.order_id, e.symbol, e.canceled_qty) for e in canceled.events if isinstance(e, OrderCanceled)]
    assert gone == [(msft, "MSFT", 5)]
    # someone else's order, or one no longer live: refused, nothing changes
    for cmd in (CancelOrder(aapl, 1, ""), CancelOrder(msft, 1, ""), CancelOrder(ORDER_ID_STRIDE + 1, 1, "")):
        reply = m.process([cmd])[0]
        assert [type(e) for e in reply.events] == [CancelRejected]
    assert m.symbol_of(aapl) == "AAPL" and m.symbol_of(msft) == ""
    expected = (m.seq, m.state_hash())
    m.close()
    again = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    assert (again.seq, again.state_hash()) == expected
    again.close()


def test_a_held_order_is_canceled_by_its_id_alone(matcher):
    hold_above_1_pct = InstrumentRisk("AAPL", 100, hold_volume_bps=100, reference_daily_volume=100)
    matcher.process([SetDefaultCash(10**9), SetInstrumentRisk(hold_above_1_pct)])
    held = matcher.process([order(qty=50, price=100)])[0]
    assert [type(e) for e in held.events if isinstance(e, OrderHeld)] == [OrderHeld]
    canceled = matcher.process([CancelOrder(held.order_id, 1, "")])[0]
    assert [(type(e), e.symbol) for e in canceled.events if isinstance(e, OrderCanceled)] == [
        (OrderCanceled, "AAPL")]


def test_a_matcher_with_balance_shards_takes_funded_orders_and_emits_settlements(tmp_path):
    """Issue 13: with balance shards elsewhere, a funded order is numbered and sequenced like any new
    order, and its cash moves come out as Settlements for the balance shards; a retried
    client_order_id hands its ticket back whole; a fence answers Voids and turns later arrivals away;
    all of it survives a restart from the journal."""
    from risk.core import Fence, FundedOrder
    from risk.core.balances import TICKET_STRIDE
    from risk.core.events import Settlement, Voids

    journal = Journal(tmp_path / "b.journal", fsync=False)
    matcher = Matcher(SYMBOLS, shard=1, balance_shards=2, journal=journal)
    sell_ticket, buy_ticket, lost = TICKET_STRIDE + 1, 2, TICKET_STRIDE + 2
    sell = FundedOrder(NewOrder(0, 1, "AAPL", Side.SELL, 5, 100), sell_ticket, 0)
    buy = FundedOrder(NewOrder(0, 2, "AAPL", Side.BUY, 3, 101, client_order_id="b1"), buy_ticket, 303)
    again = FundedOrder(NewOrder(0, 2, "AAPL", Side.BUY, 3, 101, client_order_id="b1"), 4, 303)
    replies = matcher.process([sell, buy, again, Fence(1, [lost]),
                               FundedOrder(NewOrder(0, 1, "AAPL", Side.SELL, 1, 99), lost, 0)])
    events: list[list[Any]] = [list(r.events) for r in replies]  # Settlement and Voids: not RiskEvents
    assert [r.order_id // ORDER_ID_STRIDE for r in replies[:2]] == [1, 1]
    settled = [[(s.balance_shard, [(line.owner, line.ticket, line.cash, line.release, line.done)
                                   for line in s.lines]) for s in each if isinstance(s, Settlement)]
               for each in events]
    assert settled[0] == [(1, [(1, sell_ticket, 0, 0, False)])]  # arrived: confirmed
    assert settled[1] == [(0, [(2, buy_ticket, 0, 0, False), (2, buy_ticket, -300, 303, True)]),
                          (1, [(1, sell_ticket, 300, 0, False)])]  # bought 3 at 100: 3 freed
    assert replies[2].duplicate and settled[2] == [(0, [(2, 4, 0, 303, True)])]  # the retry's ticket back
    voids = [e for e in events[3] if isinstance(e, Voids)]
    assert [(v.balance_shard, v.tickets) for v in voids] == [(1, (lost,))]
    assert replies[4].events == []  # fenced: turned away
    state = matcher.state()
    restored = Matcher(SYMBOLS, shard=1)
    restored.restore(state)
    assert restored.state_hash() == matcher.state_hash() and restored.balance_shards == 2


# ---- the embedded default's stages: R1, the symbol's checks and matching, R2 in one thread (issue 13) ----

def accounts(reply) -> dict[int, tuple[int, int]]:
    return {e.owner: (e.cash, e.reserved) for e in reply.events if isinstance(e, AccountUpdate)}


def reasons(reply) -> list:
    return [e.reason for e in reply.events if isinstance(e, OrderRejected)]


def test_the_embedded_matcher_funds_an_order_before_the_symbol_checks(matcher):
    """As a balance shard does in production: the cash is held first, so an order that fails both the
    funds and a symbol check is refused for its funds (the single-stage risk said price_band)."""
    from risk.core.cash import LocalSettlement

    banded = InstrumentRisk("AAPL", 100, price_band_bps=1_000, reference_price=100)
    matcher.process([SetDefaultCash(100_000), SetInstrumentRisk(banded)])
    assert matcher.risk is not None and isinstance(matcher.risk.cash, LocalSettlement)
    both = matcher.process([order(qty=20, price=200)])[0]  # 400,000 > 100,000, and 100% off the band
    assert reasons(both) == [RejectReason.INSUFFICIENT_FUNDS] and accounts(both) == {}
    band_only = matcher.process([order(qty=1, price=200)])[0]  # fundable: held, checked, released whole
    assert reasons(band_only) == [RejectReason.PRICE_BAND]
    assert matcher.risk.balances.account(1) == (100_000, 0)
    resting = matcher.process([order(qty=2, price=105)])[0]
    assert accounts(resting) == {1: (100_000, 2 * 105 * 100)}
    ticket = matcher.risk.ledger.orders[resting.order_id].ticket
    assert matcher.risk.balances.reservation(ticket).amount == 21_000


def test_the_embedded_matcher_funds_a_market_buy_at_its_protection_price(matcher):
    """A market buy without a protection price gets the best ask plus the band (or 5%) and is funded at
    it; it fills at that price or better, and what it did not spend comes back."""
    matcher.process([SetDefaultCash(10_000_000), SetInstrumentRisk(InstrumentRisk("AAPL", 100))])
    matcher.process([order(owner=2, side=Side.SELL, qty=3, price=100),
                     order(owner=2, side=Side.SELL, qty=3, price=104),
                     order(owner=2, side=Side.SELL, qty=3, price=106)])
    buy = NewOrder(0, 1, "AAPL", Side.BUY, 9, None, OrderType.MARKET)
    reply = matcher.process([buy])[0]
    assert reply.command is buy and buy.price == 105  # 100 + 5%: the level at 106 is beyond it
    assert [(t.price, t.qty) for t in reply.events if isinstance(t, Trade)] == [(100, 3), (104, 3)]
    assert accounts(reply)[1] == (10_000_000 - (300 + 312) * 100, 0)
    poor = NewOrder(0, 3, "AAPL", Side.BUY, 1_000, None, OrderType.MARKET)  # 1,000 x 111 x 100 > 10M
    assert reasons(matcher.process([poor])[0]) == [RejectReason.INSUFFICIENT_FUNDS]


def test_a_held_order_keeps_its_reservation_and_an_amendment_up_is_funded_first(matcher):
    hold_above_1_pct = InstrumentRisk("AAPL", 100, hold_volume_bps=100, reference_daily_volume=100)
    matcher.process([SetDefaultCash(1_000_000), SetInstrumentRisk(hold_above_1_pct)])
    held = matcher.process([order(qty=50, price=100)])[0]
    assert [type(e) for e in held.events if isinstance(e, OrderHeld)] == [OrderHeld]
    assert matcher.risk.balances.account(1) == (1_000_000, 500_000)  # held at R1 while it waits
    small = matcher.process([order(qty=1, price=100)])[0]
    up = matcher.process([AmendOrder(small.order_id, 1, "AAPL", price=5_000)])[0]  # needs 490,000 more
    assert [type(e) for e in up.events if isinstance(e, OrderAmended)] == [OrderAmended]
    assert matcher.risk.balances.account(1) == (1_000_000, 1_000_000)
    too_far = matcher.process([AmendOrder(small.order_id, 1, "AAPL", price=5_001)])[0]
    assert [(type(e), e.reason) for e in too_far.events] == [(AmendRejected, RejectReason.INSUFFICIENT_FUNDS)]
    canceled = matcher.process([CancelOrder(held.order_id, 1, "AAPL")])[0]
    assert accounts(canceled) == {1: (1_000_000, 500_000)}


def test_the_embedded_stages_survive_a_snapshot_and_a_replay(tmp_path):
    m = Matcher.open(SYMBOLS, tmp_path, fsync=False, snapshot_every=7)
    m.process([SetDefaultCash(10**7), SetInstrumentRisk(InstrumentRisk("AAPL", 100, price_band_bps=500,
                                                                        reference_price=100))])
    drive(m, seed=11, batches=20)
    assert m.risk is not None and m.risk.balances.check() == []
    expected = (m.seq, m.state_hash(), m.risk.balances.state())
    m.close()
    again = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    assert again.risk is not None and (again.seq, again.state_hash(), again.risk.balances.state()) == expected
    again.close()


@pytest.mark.parametrize(("qty", "price"), [(-5, 100), (0, 100), (5, -100), (5, 0)])
def test_a_malformed_buy_holds_nothing_on_its_way_to_the_engines_refusal(matcher, qty, price):
    matcher.process([SetDefaultCash(100_000), SetInstrumentRisk(InstrumentRisk("AAPL", 100))])
    reply = matcher.process([NewOrder(0, 1, "AAPL", Side.BUY, qty, price)])[0]
    assert reasons(reply) and accounts(reply) in ({}, {1: (100_000, 0)})
    assert matcher.risk is not None and matcher.risk.balances.account(1) in (None, (100_000, 0))
    assert matcher.risk.balances.check() == [] and not matcher.risk.balances.reservations
