"""The durable path: engine alone vs matcher with its journal (fsync on) vs the embedded and Redis buses.

    python bench/worker_bench.py [--commands 200000] [--redis-commands 10000] [--runs 3] [--seed 7]

Same seeded stream as engine_bench.py. Four ways through it, each timed in the same run:

- engine alone: `MatchingEngine.apply`, no I/O (the ceiling);
- matcher: `Matcher.process(batch)` for several batch sizes: encode, journal, one fsync per batch, apply;
- embedded bus: W asyncio clients (as the web tier's requests are), each sending its next command
  once the last is answered (W = 1 is one order at a time); the matcher thread group-commits whatever
  is queued. Reports commands/second and the acknowledgement latency (submit to reply, which comes
  after the fsync) p50/p99;
- Redis bus (production): a private redis-server (`appendonly yes`, `appendfsync always`, data in a
  temporary directory) and a `StreamRunner` for shard 0 in its own process (bench/redis_runner.py, as
  `manage.py runmatcher` runs it, without Django), driven by W asyncio clients through
  `RedisBus.submit_async` as above. Each row takes a fresh runner and an empty database, and only the
  first --redis-commands commands of the stream (the bus is far slower); its ratio is to the engine
  alone over those same commands. Skipped, saying so, when redis-server is not installed.

The durable figures are also given as a ratio to the engine-alone throughput of the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_bench import SYMBOLS, StreamBuilder
from bench.harness import parse_args, percentile, print_header
from bench.redis_runner import RedisServer, RunnerProcess
from matching.engine import MatchingEngine, NewOrder
from matching.worker.embedded import EmbeddedBus
from matching.worker.matcher import Matcher
from matching.worker.redis_bus import RedisBus


def fresh(commands: list) -> list:
    """Copies with order id 0: the matcher numbers orders itself (1, 2, 3 ... as the stream did)."""
    out = []
    for cmd in commands:
        if type(cmd) is NewOrder:
            cmd = NewOrder(0, cmd.owner, cmd.symbol, cmd.side, cmd.qty, cmd.price, cmd.order_type)
        out.append(cmd)
    return out


def engine_alone(commands: list) -> float:
    engine = MatchingEngine(SYMBOLS)
    apply = engine.apply
    t0 = time.perf_counter()
    for cmd in commands:
        apply(cmd)
    return len(commands) / (time.perf_counter() - t0)


def matcher_batches(commands: list, batch: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        matcher = Matcher.open(SYMBOLS, directory, snapshot_every=10**9)
        process = matcher.process
        t0 = time.perf_counter()
        for start in range(0, len(commands), batch):
            process(commands[start:start + batch])
        rate = len(commands) / (time.perf_counter() - t0)
        matcher.close()
    return rate


def drive(bus: EmbeddedBus | RedisBus, commands: list, window: int) -> tuple[float, list[int]]:
    """`window` asyncio clients (as in the web tier), each sending its next command once answered:
    commands a second and each acknowledgement's latency (ns)."""
    clock, latencies = time.perf_counter_ns, []
    stream = iter(commands)

    async def client() -> None:
        for cmd in stream:
            sent = clock()
            await bus.submit_async(cmd, timeout=30)
            latencies.append(clock() - sent)

    async def clients() -> None:
        try:
            await asyncio.gather(*(client() for _ in range(window)))
        finally:
            if isinstance(bus, RedisBus):
                await bus.aclose()  # its connections belong to this event loop

    t0 = time.perf_counter()
    asyncio.run(clients())
    return len(commands) / (time.perf_counter() - t0), latencies


def bus_in_flight(commands: list, window: int) -> tuple[float, list[int]]:
    """The embedded bus, a fresh matcher with its journal."""
    with tempfile.TemporaryDirectory() as directory:
        bus = EmbeddedBus(Matcher.open(SYMBOLS, directory, snapshot_every=10**9), max_queue=window + 1)
        bus.start()
        result = drive(bus, commands, window)
        bus.stop()
        bus.matcher.close()
    return result


def redis_in_flight(server: RedisServer, commands: list, window: int) -> tuple[float, list[int]]:
    """As `bus_in_flight`, through `RedisBus.submit_async` to a fresh stream runner process."""
    prefix = "bench"
    runner = RunnerProcess(server.url, prefix, server.directory / "runner.log")
    try:
        bus = RedisBus(server.url, dict.fromkeys(SYMBOLS, 0), timeout=30, shards=[0], prefix=prefix,
                       max_in_flight=window)  # each waiting client holds one connection
        try:
            rate, latencies = drive(bus, commands, window)
        finally:
            bus.close()
    except BaseException:
        runner.kill()
        raise
    seq = runner.stop()
    if seq != len(commands):
        raise RuntimeError(f"the stream runner stopped at seq {seq}, not {len(commands)}")
    server.flush()
    return rate, latencies


def main() -> int:
    args = parse_args(__doc__, commands=200_000, runs=3, redis_commands=10_000)
    print_header()
    print(f"journal: fsync on, in {tempfile.gettempdir()}")
    builder = StreamBuilder(args.seed)
    builder.build(args.commands)
    n = len(builder.commands)
    m = min(n, args.redis_commands)

    batches, windows, redis_windows = (1, 10, 100, 1000), (1, 16, 256, 4096), (1, 16, 256)
    alone: list[float] = []
    alone_m: list[float] = []
    matcher: dict[int, list[float]] = {b: [] for b in batches}
    bus: dict[int, list[float]] = {w: [] for w in windows}
    lat: dict[int, list[int]] = {}
    rbus: dict[int, list[float]] = {w: [] for w in redis_windows}
    rlat: dict[int, list[int]] = {}
    with contextlib.ExitStack() as cleanup:
        server: RedisServer | None = None
        skipped = ""
        if RedisServer.binary() is None or m <= 0:
            why = "redis-server is not installed" if m > 0 else "--redis-commands 0"
            skipped = f"!!! {why}: the Redis bus rows are SKIPPED !!!"
            print(f"redis:   {skipped}")
        else:
            directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="worker-bench-redis-")))
            server = RedisServer(directory)
            cleanup.callback(server.stop)
            print(f"redis:   redis-server {server.version()}, appendonly yes, appendfsync always, in "
                  f"{directory.parent}; the Redis rows take the first {m:,} commands of the stream")
        gc.disable()  # as the matcher process runs; nothing in a book forms a cycle
        cleanup.callback(gc.enable)
        for _ in range(args.runs):
            alone.append(engine_alone(builder.commands))
            for b in batches:
                matcher[b].append(matcher_batches(fresh(builder.commands), b))
            for w in windows:
                rate, latencies = bus_in_flight(fresh(builder.commands), w)
                bus[w].append(rate)
                lat[w] = sorted(latencies)
            if server is not None:
                alone_m.append(engine_alone(builder.commands[:m]))
                for w in redis_windows:
                    rate, latencies = redis_in_flight(server, fresh(builder.commands[:m]), w)
                    rbus[w].append(rate)
                    rlat[w] = sorted(latencies)
            gc.collect()

    base = statistics.median(alone)
    print(f"\n{n} commands, medians of {args.runs} runs (commands/second; ratio to engine alone):")
    print(f"  engine alone                      {base:>10,.0f}")
    for b in batches:
        rate = statistics.median(matcher[b])
        print(f"  matcher, batches of {b:<5}         {rate:>10,.0f}   {rate / base:.2f}")
    for w in windows:
        rate = statistics.median(bus[w])
        print(f"  embedded bus, {w:>4} clients          {rate:>10,.0f}   {rate / base:.2f}   ack latency "
              f"p50 {percentile(lat[w], 0.5):7.1f} us  p99 {percentile(lat[w], 0.99):8.1f} us")
    if skipped:
        print(f"\nRedis bus: {skipped}")
    elif alone_m:
        base_m = statistics.median(alone_m)
        print(f"\nRedis bus: the first {m} commands, medians of {args.runs} runs:")
        print(f"{f'  engine alone, first {m} commands':<36}{base_m:>10,.0f}")
        for w in redis_windows:
            rate = statistics.median(rbus[w])
            print(f"{f'  redis bus, {w:>4} clients':<36}{rate:>10,.0f}   {rate / base_m:.2f}   ack latency "
                  f"p50 {percentile(rlat[w], 0.5):7.1f} us  p99 {percentile(rlat[w], 0.99):8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
