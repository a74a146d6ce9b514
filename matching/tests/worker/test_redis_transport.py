"""The production transport against a real Redis: RedisBus (web side) and StreamRunner (matcher side).

Each test uses its own key prefix in TEST_REDIS_URL's database (default 15) and deletes it afterwards;
without Redis the tests skip loudly.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from matching.engine import (
    AdvanceTime,
    BookDelta,
    CancelOrder,
    NewOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    RejectReason,
    Side,
    TimeInForce,
)
from matching.tests.conftest import random_commands
from matching.tests.worker.stream_driver import (
    REDIS_URL,
    MatcherProcess,
    free_port,
    new_prefix,
)
from matching.worker.bus import Unavailable
from matching.worker.codec import encode_command
from matching.worker.matcher import ORDER_ID_STRIDE, Matcher, Reply
from matching.worker.redis_bus import RedisBus, symbol_shards
from matching.worker.replies import decode_reply
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import (
    StreamLost,
    StreamRunner,
    entry_timestamp,
    heartbeat_key,
    replay_stream,
    stream_key,
)

SYMBOLS = ("AAPL", "MSFT")


@pytest.fixture
def client(redis_client):  # the root conftest's; named so for the tests below
    return redis_client


@pytest.fixture
def prefix(redis_prefix):
    return redis_prefix


@pytest.fixture
def bus(prefix):
    bus = RedisBus(REDIS_URL, {"AAPL": 0, "MSFT": 0}, timeout=5, prefix=prefix)
    yield bus
    bus.close()


def order(owner=1, price=100, coid=None, symbol="AAPL", side=Side.BUY) -> NewOrder:
    return NewOrder(0, owner, symbol, side, 1, price, client_order_id=coid)


def applied(reply: Reply) -> NewOrder:
    """The new order as the matcher applied it."""
    assert isinstance(reply.command, NewOrder)
    return reply.command


def accepted(reply: Reply) -> OrderAccepted:
    """The reply's first event, an acceptance."""
    event = reply.events[0]
    assert isinstance(event, OrderAccepted)
    return event


def latest_seq(store: SnapshotStore) -> int:
    latest = store.latest()
    assert latest is not None
    return latest[0]


def full_replay(client, prefix, shard=0, symbols=SYMBOLS) -> Matcher:
    matcher = Matcher(symbols, shard=shard)
    replay_stream(matcher, client, stream_key(prefix, shard))
    return matcher


# ---- one runner in a thread ---------------------------------------------------------------------

def test_sync_submit_gets_its_own_reply(serve, bus):
    serve()
    reply = bus.submit(order(coid="one"), timeout=5)
    assert reply.seq == 1
    assert reply.events[0] == OrderAccepted(1, 1, "AAPL", Side.BUY, reply.events[0].order_type, 100, 1,
                                            reply.command.timestamp)
    assert reply.command.client_order_id == "one"
    retry = bus.submit(order(coid="one"), timeout=5)
    assert (retry.seq, retry.order_id, retry.duplicate, retry.events) == (2, reply.order_id, True, [])


def test_many_threads_each_get_their_own_reply(serve, bus):
    serve()
    replies: list[tuple[int, int, Reply]] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for i in range(25):
            reply = bus.submit(order(owner=n, price=100 + i, coid=f"{n}-{i}"), timeout=5)
            with lock:
                replies.append((n, i, reply))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.seq for _, _, r in replies) == list(range(1, 201))
    for n, i, reply in replies:
        assert applied(reply).client_order_id == f"{n}-{i}"
        assert accepted(reply).owner == n and accepted(reply).price == 100 + i


def test_async_callers_each_get_their_own_reply(serve, bus):
    serve()

    async def burst(base: int) -> list[Reply]:
        return await asyncio.gather(*(bus.submit_async(order(owner=base + n, coid=f"a{base + n}"), timeout=5)
                                      for n in range(60)))

    first = asyncio.run(burst(0))
    second = asyncio.run(burst(100))  # a new event loop gets its own connections
    replies = first + second
    assert sorted(r.seq for r in replies) == list(range(1, 121))
    assert [accepted(r).owner for r in replies] == [*range(60), *range(100, 160)]


def test_sync_and_async_callers_together(serve, bus):
    serve()
    sync_replies: list[Reply] = []

    def caller() -> None:
        sync_replies.extend(bus.submit(order(owner=7, coid=f"s{i}"), timeout=5) for i in range(40))

    thread = threading.Thread(target=caller)
    thread.start()

    async def main() -> list[Reply]:
        return await asyncio.gather(*(bus.submit_async(order(owner=8, coid=f"a{i}"), timeout=5)
                                      for i in range(40)))

    async_replies = asyncio.run(main())
    thread.join()
    assert sorted(r.seq for r in sync_replies + async_replies) == list(range(1, 81))
    assert {applied(r).owner for r in sync_replies} == {7}
    assert [applied(r).client_order_id for r in async_replies] == [f"a{i}" for i in range(40)]


def test_listeners_see_every_batch_in_order(serve, bus):
    runner = serve()
    seen: list[int] = []
    runner.runner.subscribe(lambda replies: seen.extend(r.seq for r in replies))
    for _ in range(6):
        bus.submit(order(), timeout=5)
    runner.stop()
    assert seen == [1, 2, 3, 4, 5, 6]


def test_day_orders_expire_on_time_through_the_stream(serve, bus, client, prefix):
    runner = serve()
    expired: list = []
    runner.runner.subscribe(lambda replies: expired.extend(
        e for r in replies for e in r.events if isinstance(e, OrderExpired)))
    soon = time.time_ns() + 300_000_000
    day = NewOrder(0, 1, "AAPL", Side.BUY, 1, 100, tif=TimeInForce.DAY, expire_at=soon)
    reply = bus.submit(day, timeout=5)
    deadline = time.monotonic() + 5
    while not expired and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e.order_id for e in expired] == [reply.order_id]
    runner.stop()
    assert full_replay(client, prefix).state_hash() == runner.runner.matcher.state_hash()


def test_undecodable_entry_takes_a_seq_and_gets_an_empty_reply(serve, bus, client, prefix):
    serve()
    client.xadd(stream_key(prefix, 0), {"c": b"\xc1garbage", "r": f"{prefix}:reply:junk"})
    _, raw = client.blpop([f"{prefix}:reply:junk"], timeout=5)
    assert decode_reply(raw) == Reply(1, 0)
    assert bus.submit(order(), timeout=5).seq == 2


def test_routing_by_symbol_and_explicit_shard(serve, bus):
    serve()
    unknown = bus.submit(order(symbol="NOPE"), timeout=5)  # unknown symbols go to the default shard
    assert unknown.events[0].reason is RejectReason.UNKNOWN_SYMBOL
    with pytest.raises(ValueError, match="shard="):
        bus.submit(AdvanceTime(0), timeout=5)
    assert bus.submit(AdvanceTime(0), timeout=5, shard=0).seq == 2
    assert symbol_shards({0: ["A"], "1": ["B", "C"]}) == {"A": 0, "B": 1, "C": 1}
    with pytest.raises(ValueError, match="assigned to shards"):
        symbol_shards({0: ["A"], 1: ["A"]})


def test_timestamps_follow_entry_ids_and_strictly_increase():
    assert entry_timestamp(b"1700000000123-4", 0) == 1_700_000_000_123_000_004
    assert entry_timestamp("1700000000123-4", 1_700_000_000_123_000_009) == 1_700_000_000_123_000_010


def test_health_reports_each_shard(serve, prefix):
    bus = RedisBus(REDIS_URL, {"AAPL": 0, "MSFT": 1}, timeout=5, prefix=prefix)
    assert bus.health()["status"] == "down"
    serve()
    bus.submit(order(), timeout=5)
    deadline = time.monotonic() + 5
    while bus.health()["shards"]["0"].get("seq") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # the heartbeat after the batch
    health = bus.health()
    assert health["mode"] == "redis"
    assert health["shards"]["0"]["status"] == "ok" and health["shards"]["0"]["seq"] == 1
    assert health["shards"]["1"] == {"status": "down"}
    assert health["status"] == "down"  # any shard down: the exchange is not healthy
    bus.close()


# ---- failing fast ---------------------------------------------------------------------------

def test_no_runner_is_unavailable_at_once(bus, client, prefix):
    start = time.monotonic()
    with pytest.raises(Unavailable, match="down") as info:
        bus.submit(order(), timeout=5)
    assert time.monotonic() - start < 2.5  # refused, not timed out: well under the 5 s timeout
    assert info.value.retry_after > 0
    assert client.xlen(stream_key(prefix, 0)) == 0  # refused before anything was written

    async def main():
        with pytest.raises(Unavailable, match="down"):
            await bus.submit_async(order(), timeout=5)

    asyncio.run(main())
    assert time.monotonic() - start < 2.5


def test_stalled_runner_times_out_within_the_timeout(bus, client, prefix):
    # a heartbeat that has not lapsed yet (a runner killed a moment ago) but nobody reads the stream
    client.set(heartbeat_key(prefix, 0), json.dumps({"seq": 0, "lag": 0, "time": time.time()}), px=5000)
    for submit in (lambda: bus.submit(order(), timeout=0.3),
                   lambda: asyncio.run(bus.submit_async(order(), timeout=0.3))):
        start = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer"):
            submit()
        assert 0.25 < time.monotonic() - start < 2.5  # it waited for its own timeout, and no longer


def test_queue_full_is_refused_at_once(client, prefix):
    bus = RedisBus(REDIS_URL, {"AAPL": 0}, timeout=5, prefix=prefix, max_lag=100)
    client.set(heartbeat_key(prefix, 0), json.dumps({"seq": 5, "lag": 101, "time": time.time()}), px=5000)
    with pytest.raises(Unavailable, match="overloaded"):
        bus.submit(order(), timeout=5)
    assert bus.health()["shards"]["0"]["status"] == "overloaded"
    bus.close()


def test_too_many_callers_in_flight_are_refused_at_once(client, prefix):
    bus = RedisBus(REDIS_URL, {"AAPL": 0}, timeout=5, prefix=prefix, max_in_flight=1)
    client.set(heartbeat_key(prefix, 0), json.dumps({"seq": 0, "lag": 0, "time": time.time()}), px=5000)
    outcome: list[BaseException] = []

    def wait_in_vain() -> None:  # holds the only slot until its timeout (nobody answers)
        try:
            bus.submit(order(), timeout=1.0)
        except Unavailable as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=wait_in_vain)
    waiting.start()
    deadline = time.monotonic() + 2
    while client.xlen(stream_key(prefix, 0)) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    with pytest.raises(Unavailable, match="in flight"):
        bus.submit(order(), timeout=5)
    assert time.monotonic() - start < 2.5  # refused, not timed out
    waiting.join()
    assert "did not answer" in str(outcome[0])
    bus.close()


def test_unreachable_redis_is_unavailable_fast():
    bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0", {"AAPL": 0}, timeout=10)
    start = time.monotonic()
    with pytest.raises(Unavailable, match="unreachable"):
        bus.submit(order(), timeout=10)
    with pytest.raises(Unavailable, match="unreachable"):
        asyncio.run(bus.submit_async(order(), timeout=10))
    assert bus.health()["status"] == "down"
    assert time.monotonic() - start < 5  # both refused at once, not after the 10 s timeouts
    bus.close()


# ---- restart and exact replay -------------------------------------------------------------------

def test_restart_resumes_from_its_snapshot_and_replays_exactly(serve, bus, client, prefix, tmp_path):
    commands = random_commands(11, 400, symbols=SYMBOLS)  # limits, stops, cancels, amends, AdvanceTime
    first = serve(tmp_path, snapshot_every=60)
    answered = [bus.submit(cmd, timeout=5, shard=0) for cmd in commands[:250]]
    first.stop()  # snapshots on the way out
    assert latest_seq(SnapshotStore(tmp_path)) == 250
    for cmd in commands[250:]:  # queued while the matcher is down (no caller waits)
        client.xadd(stream_key(prefix, 0), {"c": encode_command(cmd)})

    second = serve(tmp_path, snapshot_every=60)
    assert second.replayed == 150 and second.runner.matcher.seq == 400
    second.stop()
    replay = full_replay(client, prefix)
    assert replay.seq == 400
    assert second.runner.matcher.state_hash() == replay.state_hash()
    assert second.runner.matcher.state() == replay.state()

    # from an older snapshot the replay is longer and ends in the same state
    *newer, _oldest = sorted(tmp_path.glob("snapshot-*.json"), reverse=True)
    for path in newer:
        path.unlink()
    oldest_seq = latest_seq(SnapshotStore(tmp_path))
    assert oldest_seq < 250
    third = StreamRunner(Matcher(SYMBOLS), client, 0, SnapshotStore(tmp_path), prefix=prefix)
    assert third.recover() == 400 - oldest_seq
    assert third.matcher.state() == replay.state()

    # and the replies replay too: what callers were told is what the log reproduces
    again = Matcher(SYMBOLS)
    replayed: list[Reply] = []
    replay_stream(again, client, stream_key(prefix, 0), on_reply=replayed.append)
    assert replayed[:250] == answered


def test_recover_replays_everything_after_a_projection_cursor(serve, bus, client, prefix, tmp_path):
    first = serve(tmp_path, snapshot_every=10)
    answered = [bus.submit(order(owner=1 + i % 3, price=100 + i % 4, coid=str(i),
                                 side=Side.BUY if i % 2 else Side.SELL), timeout=5) for i in range(45)]
    first.stop()
    assert latest_seq(SnapshotStore(tmp_path)) == 45
    # one entry the stopped runner never read, whose caller may still be waiting
    client.xadd(stream_key(prefix, 0), {"c": encode_command(order(coid="late")), "r": f"{prefix}:reply:late"})
    replay = full_replay(client, prefix)

    def recovered(replay_after):
        runner = StreamRunner(Matcher(SYMBOLS), client, 0, SnapshotStore(tmp_path), prefix=prefix)
        seen: list[Reply] = []
        runner.subscribe(seen.extend)  # subscribed before recover: sees the replayed batches
        runner.recover(replay_after=replay_after)
        assert runner.matcher.state() == replay.state()
        return [r.seq for r in seen], seen

    seqs, seen = recovered(33)  # kept snapshots: 30, 40, 45 -> starts from 30
    assert seqs == list(range(31, 47))
    assert seen[:15] == answered[30:]  # the projection gets exactly what the callers were told
    _, raw = client.blpop([f"{prefix}:reply:late"], timeout=5)
    assert decode_reply(raw).seq == 46  # answered: past the newest snapshot
    assert not list(client.scan_iter(match=f"{prefix}:reply:*"))  # seqs the snapshot covers: not again

    assert recovered(5)[0] == list(range(1, 47))  # no snapshot that old: from the stream's start
    assert list(client.scan_iter(match=f"{prefix}:reply:*")) == [f"{prefix}:reply:late".encode()]
    assert client.llen(f"{prefix}:reply:late") == 1  # only seq 46 is answered (again)
    assert recovered(45)[0] == recovered(None)[0] == [46]  # the newest snapshot, 45


def test_a_lost_stream_refuses_to_start(serve, bus, client, prefix, tmp_path):
    runner = serve(tmp_path)
    for i in range(5):
        bus.submit(order(coid=str(i)), timeout=5)
    runner.stop()
    client.delete(stream_key(prefix, 0))  # e.g. Redis restarted without its append-only file
    with pytest.raises(StreamLost):
        StreamRunner(Matcher(SYMBOLS), client, 0, SnapshotStore(tmp_path), prefix=prefix).recover()
    client.xadd(stream_key(prefix, 0), {"c": b""})  # recreated: fewer entries than the state has seen
    with pytest.raises(StreamLost):
        StreamRunner(Matcher(SYMBOLS), client, 0, SnapshotStore(tmp_path), prefix=prefix).recover()


# ---- two shards, two processes ---------------------------------------------------------------------

def test_two_shards_in_two_processes(client, prefix, tmp_path):
    shards = {0: ["AAPL", "MSFT"], 1: ["GOOG", "TSLA"]}
    procs = [MatcherProcess(shard, symbols, REDIS_URL, prefix, tmp_path) for shard, symbols in shards.items()]
    try:
        assert [p.wait_recovered() for p in procs] == [0, 0]
        bus = RedisBus(REDIS_URL, symbol_shards(shards), timeout=5, prefix=prefix)
        symbols = [s for group in shards.values() for s in group]
        sent: list[tuple[NewOrder, Reply]] = []
        lock = threading.Lock()

        def caller(n: int) -> None:
            for i in range(30):
                cmd = order(owner=n, price=100 + i % 5, coid=f"{n}-{i}", symbol=symbols[(n + i) % 4],
                            side=Side.BUY if (n + i) % 2 else Side.SELL)
                reply = bus.submit(cmd, timeout=5)
                with lock:
                    sent.append((cmd, reply))

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(1, 7)]
        for t in threads:
            t.start()

        async def async_callers() -> list[tuple[NewOrder, Reply]]:
            cmds = [order(owner=50 + n, coid=f"x{n}", symbol=symbols[n % 4]) for n in range(40)]
            replies = await asyncio.gather(*(bus.submit_async(c, timeout=5) for c in cmds))
            return list(zip(cmds, replies, strict=True))

        sent.extend(asyncio.run(async_callers()))
        for t in threads:
            t.join()

        by_shard: dict[int, list[int]] = {0: [], 1: []}
        for cmd, reply in sent:
            shard = 0 if cmd.symbol in shards[0] else 1
            assert reply.order_id // ORDER_ID_STRIDE == shard
            assert applied(reply).client_order_id == cmd.client_order_id
            accepted = [e for e in reply.events if isinstance(e, OrderAccepted)]
            assert accepted and accepted[0].owner == cmd.owner and accepted[0].symbol == cmd.symbol
            assert all(getattr(e, "symbol", None) in shards[shard] for e in reply.events
                       if not isinstance(e, BookDelta))
            by_shard[shard].append(reply.seq)
        for shard, seqs in by_shard.items():  # each shard sequences its own commands, no gaps
            assert sorted(seqs) == list(range(1, len(seqs) + 1)), shard
        assert sum(len(s) for s in by_shard.values()) == 6 * 30 + 40

        # cancels routed by the order id alone reach the shard that made the order, which finds it
        for shard, (symbol, *_) in shards.items():
            resting = bus.submit(order(owner=99, price=1, symbol=symbol), timeout=5)  # far below the market
            cancel = bus.submit(CancelOrder(resting.order_id, 99, ""), timeout=5)
            assert cancel.order_id == resting.order_id
            canceled = [(e.order_id, e.symbol) for e in cancel.events if isinstance(e, OrderCanceled)]
            assert canceled == [(resting.order_id, symbol)]
            by_shard[shard] += [resting.seq, cancel.seq]
        assert bus.health()["status"] == "ok"

        codes = [p.terminate() for p in procs]  # SIGTERM: snapshot, withdraw the heartbeat, exit 0
        assert codes == [0, 0], [p.errors for p in procs]
        for p in procs:
            assert any(line.startswith(f"shard {p.shard} stopped at seq ") for line in p.lines)
            store = SnapshotStore(tmp_path / f"shard-{p.shard}-stream-snapshots")
            assert latest_seq(store) == len(by_shard[p.shard])
        assert bus.health()["status"] == "down"
        with pytest.raises(Unavailable, match="down"):
            bus.submit(order(), timeout=5)
        bus.close()
    finally:
        for p in procs:
            p.ensure_dead()


def test_runmatcher_waits_for_redis_and_stops_on_sigterm(tmp_path):
    proc = MatcherProcess(0, list(SYMBOLS), f"redis://127.0.0.1:{free_port()}/0", new_prefix(), tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not any("unreachable" in line for line in proc.errors) and time.monotonic() < deadline:
            time.sleep(0.02)  # it keeps retrying (Redis may start after it), saying why
        assert proc.proc.poll() is None
        assert proc.terminate() == 0
        assert not any("recovered" in line for line in proc.lines)
    finally:
        proc.ensure_dead()
