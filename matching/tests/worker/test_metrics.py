"""Metrics: the histogram against a sorted-list reference, striping across threads, throughput windows,
and what the embedded bus, the stream runner and the Redis bus record and publish."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching.engine import NewOrder, OrderAccepted, Side
from matching.tests.worker.load import SYMBOLS
from matching.tests.worker.stream_driver import REDIS_URL
from matching.worker.bus import Unavailable
from matching.worker.embedded import EmbeddedBus
from matching.worker.matcher import Matcher, Reply
from matching.worker.metrics import (
    BUCKETS,
    MAX_BITS,
    QUANTILES,
    SUB_COUNT,
    Recorder,
    Registry,
    Throughput,
    bucket_of,
    bucket_range,
)
from matching.worker.redis_bus import RedisBus
from matching.worker.stream_runner import StreamRunner, heartbeat_key

LARGEST = (1 << MAX_BITS) - 1  # above it values share the last bucket


def reference(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# ---- the histogram --------------------------------------------------------------------------------

@given(st.integers(0, LARGEST))
def test_every_value_falls_in_its_buckets_range(value):
    low, high = bucket_range(bucket_of(value))
    assert low <= value <= high
    assert high - low <= max(0, value) // 64  # 1/64 of the value at most (exact below 128)


def test_buckets_tile_the_range_without_gaps():
    previous_high = -1
    for index in range(BUCKETS):
        low, high = bucket_range(index)
        assert low == previous_high + 1
        assert bucket_of(low) == bucket_of(high) == index
        previous_high = high
    assert previous_high == LARGEST
    assert bucket_of(LARGEST + 1) == bucket_of(10**20) == BUCKETS - 1
    assert bucket_of(-5) == 0


values_lists = st.lists(st.one_of(st.integers(0, 300), st.integers(0, 10**7), st.integers(0, LARGEST)),
                        min_size=1, max_size=400)


@given(values_lists, st.sampled_from([q for _, q in QUANTILES] + [0.0001, 0.25, 0.75, 1.0]))
def test_percentiles_agree_with_a_sorted_list(values, q):
    recorder = Recorder("t")
    for value in values:
        recorder.record(value)
    histogram = recorder.snapshot()
    got, want = histogram.percentile(q), reference(values, q)
    assert bucket_of(got) == bucket_of(want)  # the same bucket: within 1/64 of the true value
    assert want <= got <= max(values)
    assert got - want <= want // 64
    if want < SUB_COUNT:
        assert got == want
    assert histogram.count == len(values)
    assert histogram.max == max(values)
    assert histogram.total == sum(values)


@given(values_lists)
def test_record_many_is_record_in_bulk(values):
    one, bulk = Recorder("one"), Recorder("bulk")
    for value in values:
        one.record(value)
    bulk.record_many(values)
    assert one.snapshot().counts == bulk.snapshot().counts
    assert one.summary() == bulk.summary()


def test_summary_in_microseconds_and_ascending():
    recorder = Recorder("t")
    recorder.record_many(range(1_000, 1_001_000, 1_000))  # 1 µs .. 1000 µs
    summary = recorder.summary()
    assert summary["unit"] == "us"
    assert summary["count"] == 1000
    assert summary["mean"] == pytest.approx(500.5, rel=0.001)
    assert summary["max"] == 1000.0
    assert summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["p999"] <= summary["max"]
    assert summary["p50"] == pytest.approx(500, rel=1 / 64)
    assert summary["p99"] == pytest.approx(990, rel=1 / 64)
    sizes = Recorder("sizes", unit="commands")
    sizes.record_many([1, 1, 1, 50])
    assert sizes.summary() == {"unit": "commands", "count": 4, "mean": 13.2, "p50": 1.0, "p90": 50.0,
                               "p99": 50.0, "p999": 50.0, "max": 50.0}
    assert Recorder("empty").summary()["count"] == 0


def test_threads_record_without_losing_counts_and_their_stripes_retire():
    recorder = Recorder("t")
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        for i in range(20_000):
            recorder.record(n * 1000 + i % 7)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    histogram = recorder.snapshot()
    assert histogram.count == 8 * 20_000
    assert histogram.max == 7000 + 6
    assert recorder._stripes == []  # folded into the retired stripe when each thread ended


# ---- throughput -------------------------------------------------------------------------------------

def test_throughput_windows():
    now = [1_000 * 10**9]
    counter = Throughput("c", clock=lambda: now[0])
    for _ in range(6000):  # 100 a second for 60 s
        now[0] += 10**7
        counter.add()
    assert counter.total == 6000
    assert counter.rate(1) == pytest.approx(100, rel=0.02)
    assert counter.rate(10) == pytest.approx(100, rel=0.02)
    assert counter.rate(60) == pytest.approx(100, rel=0.02)
    now[0] += 5 * 10**9  # quiet for 5 s
    assert counter.rate(1) == 0
    assert counter.rate(10) == pytest.approx(50, rel=0.03)
    now[0] += 120 * 10**9  # long after: old slots never count again
    assert counter.rates() == {"last_1s": 0.0, "last_10s": 0.0, "last_60s": 0.0, "total": 6000}


def test_a_young_counter_rates_over_its_own_age():
    now = [5 * 10**9]
    counter = Throughput("c", clock=lambda: now[0])
    now[0] += 2 * 10**9
    counter.add(400)
    assert counter.rate(60) == pytest.approx(200)  # 400 in its 2 s of life, not 400 / 60


def test_registry_summary_by_prefix_and_reset():
    registry = Registry()
    registry.stage("matcher.process").record(5_000)
    registry.stage("matcher.idle")  # nothing recorded: left out
    registry.stage("api.submit.post").record(9_000)
    registry.throughput("matcher.commands").add(3)
    assert registry.stage("matcher.process") is registry.stage("matcher.process")
    summary = registry.summary(prefix="matcher.")
    assert list(summary["stages"]) == ["matcher.process"]
    assert summary["stages"]["matcher.process"]["max"] == 5.0
    assert summary["throughput"]["matcher.commands"]["total"] == 3
    assert summary["uptime_seconds"] >= 0
    json.dumps(summary)  # published in heartbeats as JSON
    registry.reset()
    assert registry.summary()["stages"] == {}
    assert registry.summary()["throughput"]["matcher.commands"]["total"] == 0


# ---- the embedded bus -------------------------------------------------------------------------------

@pytest.fixture
def registry():
    return Registry()


@pytest.fixture
def bus(tmp_path, registry):
    bus = EmbeddedBus(Matcher.open(SYMBOLS, tmp_path, fsync=False), metrics=registry)
    bus.start()
    yield bus
    bus.stop()
    bus.matcher.close()


def order(owner: int = 1, price: int = 100, coid: str | None = None) -> NewOrder:
    return NewOrder(0, owner, "AAPL", Side.BUY, 1, price, client_order_id=coid)


def test_the_embedded_bus_records_every_stage(bus, registry):
    for n in range(20):
        bus.submit(order(price=100 + n), timeout=5)

    async def main() -> list[Reply]:
        return await asyncio.gather(*(bus.submit_async(order(owner=n), timeout=5) for n in range(2, 32)))

    asyncio.run(main())
    stages = registry.summary()["stages"]
    assert stages["bus.ack_sync"]["count"] == 20
    assert stages["bus.ack_async"]["count"] == 30
    assert stages["matcher.queue_wait"]["count"] == 50
    batches = stages["matcher.batch_size"]["count"]
    assert 1 < batches <= 50
    for name in ("matcher.process", "matcher.journal_write", "matcher.journal_fsync", "matcher.listeners"):
        assert stages[name]["count"] == batches, name
    for summary in stages.values():
        assert summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["p999"] <= summary["max"]
    # a caller waits at least as long as the matcher took
    assert stages["bus.ack_sync"]["max"] >= stages["matcher.process"]["p50"]
    assert registry.summary()["throughput"]["matcher.commands"]["total"] == 50


def test_submit_many_reaches_the_matcher_as_one_batch(bus, registry):
    replies = bus.submit_many([order(price=100 + n, coid=f"c{n % 40}") for n in range(50)], timeout=5)
    assert all(isinstance(r, Reply) for r in replies)
    assert [r.seq for r in replies] == list(range(1, 51))  # in order
    assert [r.duplicate for r in replies] == [False] * 40 + [True] * 10
    assert [r.order_id for r in replies[40:]] == [r.order_id for r in replies[:10]]
    sizes = registry.summary()["stages"]["matcher.batch_size"]
    assert (sizes["count"], sizes["max"]) == (1, 50.0)
    assert registry.summary()["stages"]["bus.ack_sync"]["count"] == 50


def test_submit_many_refuses_at_once_when_the_queue_cannot_take_all(tmp_path, registry):
    bus = EmbeddedBus(Matcher.open(SYMBOLS, tmp_path, fsync=False), max_queue=10, metrics=registry)
    bus.start()
    try:
        with pytest.raises(Unavailable):
            bus.submit_many([order(price=100 + n) for n in range(11)], timeout=5)
        assert bus.matcher.seq == 0  # nothing queued
        assert len(bus.submit_many([order(price=100 + n) for n in range(10)], timeout=5)) == 10
    finally:
        bus.stop()
        bus.matcher.close()


# ---- production: the runner publishes, the web side reads -------------------------------------------

@pytest.fixture
def prefix(redis_prefix):  # the root conftest's
    return redis_prefix


def test_the_stream_runner_publishes_its_metrics_with_its_heartbeat(redis_client, prefix):
    runner_metrics, web_metrics = Registry(), Registry()
    runner = StreamRunner(Matcher(SYMBOLS), redis_client, prefix=prefix, block_ms=50, metrics=runner_metrics)
    runner.recover()
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    bus = RedisBus(REDIS_URL, {"AAPL": 0, "MSFT": 0}, timeout=5, prefix=prefix, metrics=web_metrics)
    try:
        for n in range(5):
            bus.submit(order(price=100 + n), timeout=5)
        batch = [order(owner=2, price=90 + n, coid=f"b{n % 3}") for n in range(6)]
        results = bus.submit_many(batch, timeout=5)
        replies = [r for r in results if isinstance(r, Reply)]
        assert replies == results  # none Unavailable
        assert [r.seq for r in replies] == list(range(6, 12))  # one pipeline, in order
        assert [r.duplicate for r in replies] == [False] * 3 + [True] * 3
        assert isinstance(replies[0].events[0], OrderAccepted)
        # the runner records a batch once its replies are out: wait for the last batch's figures
        commands, deadline = runner_metrics.throughput("matcher.commands"), time.monotonic() + 10
        while commands.total < 11 and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.heartbeat()
        beat = bus.heartbeats()[0]
        assert beat is not None
        published = beat["metrics"]
        assert published["throughput"]["matcher.commands"]["total"] == 11
        stages = published["stages"]
        assert stages["matcher.batch_size"]["max"] >= 1
        batches = stages["matcher.batch_size"]["count"]
        for name in ("matcher.apply", "matcher.replies", "matcher.listeners"):
            assert stages[name]["count"] == batches, name
        assert not any(name.startswith("bus.") for name in stages)  # the web side's, not published
        assert web_metrics.stage("bus.ack_sync").snapshot().count == 11
    finally:
        runner.stop()
        thread.join(10)
        bus.close()
    assert redis_client.get(heartbeat_key(prefix, 0)) is None  # withdrawn on the way out


def test_submit_many_answers_a_down_shard_s_commands_alone(redis_client, prefix):
    runner = StreamRunner(Matcher(["AAPL"], shard=0), redis_client, prefix=prefix, block_ms=50,
                          metrics=Registry())
    runner.recover()
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    bus = RedisBus(REDIS_URL, {"AAPL": 0, "MSFT": 1}, timeout=2, prefix=prefix, metrics=Registry())
    try:
        runner.heartbeat()
        msft = NewOrder(0, 1, "MSFT", Side.BUY, 1, 100)
        replies = bus.submit_many([order(), msft, order(price=101)], timeout=2)
        assert isinstance(replies[0], Reply) and isinstance(replies[2], Reply)
        assert isinstance(replies[1], Unavailable)  # shard 1 has no runner: refused, nothing written
        assert redis_client.xlen(f"{prefix}:commands:1") == 0
    finally:
        runner.stop()
        thread.join(10)
        bus.close()
