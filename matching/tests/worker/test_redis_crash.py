"""kill -9 the matcher process under load (and once Redis itself), restart, again: nothing acknowledged
is lost, and the recovered state is the state a full replay of the stream gives.

Runs against a private redis-server with appendonly yes and appendfsync always (the production
configuration). CRASH_CYCLES (default 3) sets the number of kills.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time

import redis

from matching.engine import CancelOrder, Command, NewOrder, OrderAccepted, OrderType, Side
from matching.tests.worker.stream_driver import MatcherProcess, RedisServer
from matching.worker.bus import Unavailable
from matching.worker.matcher import Matcher, Reply
from matching.worker.redis_bus import RedisBus
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import replay_stream, stream_key

CYCLES = int(os.environ.get("CRASH_CYCLES", "3"))
SYMBOLS = ["AAPL", "MSFT"]
PREFIX = "crash"


class Load:
    """Callers in threads sending orders and cancels; every reply received is an acknowledgement."""

    def __init__(self, bus: RedisBus, callers: int = 4) -> None:
        self.bus = bus
        self.acked: list[Reply] = []
        self.unavailable = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._caller, args=(n,), daemon=True)
                         for n in range(callers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def max_seq(self) -> int:
        with self._lock:
            return max((r.seq for r in self.acked), default=0)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _caller(self, n: int) -> None:
        rng = random.Random(n)
        live: list[tuple[int, str]] = []
        owner = n + 1
        i = 0
        while not self._stop.is_set():
            roll = rng.random()
            cmd: Command
            if roll < 0.2 and live:
                order_id, symbol = live.pop(rng.randrange(len(live)))
                cmd = CancelOrder(order_id, owner, symbol)
            else:
                i += 1
                symbol, side = rng.choice(SYMBOLS), rng.choice((Side.BUY, Side.SELL))
                if roll < 0.3:
                    cmd = NewOrder(0, owner, symbol, side, rng.randint(1, 20), None, OrderType.MARKET,
                                   client_order_id=f"{n}-{i}")
                else:
                    cmd = NewOrder(0, owner, symbol, side, rng.randint(1, 20), 10_000 + rng.randint(-10, 10),
                                   client_order_id=f"{n}-{i}")
            try:
                reply = self.bus.submit(cmd, timeout=1.5)
            except Unavailable:
                with self._lock:
                    self.unavailable += 1
                self._stop.wait(0.05)
                continue
            with self._lock:
                self.acked.append(reply)
            if isinstance(cmd, NewOrder) and any(isinstance(e, OrderAccepted) for e in reply.events):
                live.append((reply.order_id, cmd.symbol))


def wait_for_progress(load: Load, before: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while load.count() <= before:
        assert time.monotonic() < deadline, "no command was acknowledged: the matcher made no progress"
        time.sleep(0.02)


def replayed_of(proc: MatcherProcess) -> int:
    line = next(line for line in proc.lines if " recovered at seq " in line)
    found = re.search(r", (\d+) replayed\)", line)
    assert found is not None, line
    return int(found[1])


def test_kill_9_loses_nothing_acknowledged(tmp_path):
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    data = tmp_path / "matcher"
    bus = RedisBus(server.url, {s: 0 for s in SYMBOLS}, timeout=1.5, prefix=PREFIX)
    load = Load(bus)
    rng = random.Random(2026)
    procs: list[MatcherProcess] = []
    redis_crash_cycle = min(1, CYCLES - 1)
    try:
        load.start()
        for cycle in range(CYCLES):
            acked_before = load.max_seq()  # nothing can be acknowledged while no matcher runs
            proc = MatcherProcess(0, SYMBOLS, server.url, PREFIX, data, snapshot_every=150)
            procs.append(proc)
            recovered = proc.wait_recovered()
            assert recovered >= acked_before, f"cycle {cycle}: recovered to {recovered}, acked {acked_before}"
            count = load.count()
            wait_for_progress(load, count)
            if cycle == redis_crash_cycle:  # Redis dies under load; its append-only file keeps every ack
                time.sleep(rng.uniform(0.1, 0.4))
                server.kill()
                server.start()
                count = load.count()
                wait_for_progress(load, count)  # the runner reconnected and serves again
            time.sleep(rng.uniform(0.2, 0.8))
            proc.kill9()

        load.stop()
        last_ack = load.max_seq()
        final = MatcherProcess(0, SYMBOLS, server.url, PREFIX, data, snapshot_every=150)
        procs.append(final)
        recovered = final.wait_recovered()
        assert recovered >= last_ack
        assert final.terminate() == 0, final.errors
    finally:
        load.stop()
        for proc in procs:
            proc.ensure_dead()
        bus.close()

    try:
        client = redis.Redis.from_url(server.url)
        replay = Matcher(SYMBOLS)
        replies: list[Reply] = []
        replay_stream(replay, client, stream_key(PREFIX, 0), on_reply=replies.append)
        # seqs are contiguous positions in the stream, and the recovered matcher saw all of it
        assert replay.seq == len(replies) == client.xlen(stream_key(PREFIX, 0)) == recovered
        client.close()
    finally:
        server.kill()

    acked = load.acked
    assert len(acked) > 100 and load.unavailable > 0, (len(acked), load.unavailable)
    assert len({r.seq for r in acked}) == len(acked), "two callers were given the same seq"
    for reply in acked:  # every acknowledged command is in the log, at its seq, with the same outcome
        assert replies[reply.seq - 1] == reply

    latest = SnapshotStore(data / "shard-0-stream-snapshots").latest()
    assert latest is not None
    seq, state = latest
    assert seq == replay.seq and isinstance(state, dict)
    restored = Matcher(SYMBOLS)
    restored.restore(state["matcher"])
    assert restored.state_hash() == replay.state_hash()
    assert restored.state() == replay.state()
    # restarts resumed from snapshots (replaying only the tail), not from the start of the stream
    assert any(replayed_of(p) < p.wait_recovered() for p in procs)
