"""The durable path: engine alone vs matcher with its journal (fsync on) vs the embedded and Redis buses.

    python bench/worker_bench.py [--commands 200000] [--redis-commands 30000] [--runs 3] [--seed 7]
                                 [--redis-only 1]

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
  `RedisBus.submit_async` as above (all W on one bus: one web process), and at 256 clients once more
  on uvloop (the production web tier's loop, uvicorn's), when it is installed. Each row takes a fresh
  runner and an empty database, and only the first --redis-commands commands of the stream; its ratio
  is to the engine alone over those same commands. Each Redis row also gives the CPU time per command
  (median run) of the three processes: the callers' (the bus, its sender and reply reader threads
  included), the runner's and redis-server's (from /proc, Linux only). Skipped, saying so, when
  redis-server is not installed.

The durable figures are also given as a ratio to the engine-alone throughput of the same run.
`--redis-only 1` runs the Redis rows (and the engine alone over their commands) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
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


def drive(bus: EmbeddedBus | RedisBus, commands: list, window: int, loop: str = "asyncio"
          ) -> tuple[float, list[int]]:
    """`window` asyncio clients (as in the web tier), each sending its next command once answered,
    on the `loop` given (asyncio or uvloop): commands a second and each acknowledgement's latency (ns)."""
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
    if loop == "uvloop":
        import uvloop

        uvloop.run(clients())
    else:
        asyncio.run(clients())
    return len(commands) / (time.perf_counter() - t0), latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bus_in_flight(commands: list, window: int) -> tuple[float, list[int]]:
    """The embedded bus, a fresh matcher with its journal."""
    with tempfile.TemporaryDirectory() as directory:
        bus = EmbeddedBus(Matcher.open(SYMBOLS, directory, snapshot_every=10**9), max_queue=window + 1)
        bus.start()
        result = drive(bus, commands, window)
        bus.stop()
        bus.matcher.close()
    return result


def redis_in_flight(server: RedisServer, commands: list, window: int, loop: str = "asyncio"
                    ) -> tuple[float, list[int], tuple[float, float, float]]:
    """As `bus_in_flight`, through `RedisBus.submit_async` to a fresh stream runner process; also the
    CPU time per command (µs) of this process, the runner's and redis-server's."""
    prefix = "bench"
    runner = RunnerProcess(server.url, prefix, server.directory / "runner.log")
    try:
        bus = RedisBus(server.url, dict.fromkeys(SYMBOLS, 0), timeout=30, shards=[0], prefix=prefix,
                       max_in_flight=window)
        try:
            bus.submit(commands[0], timeout=30)  # starts the bus's sender and reader threads
            pids = (os.getpid(), runner.proc.pid, server.proc.pid)
            before = [cpu_seconds(pid) for pid in pids]
            rate, latencies = drive(bus, commands[1:], window, loop)
            used = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
        finally:
            bus.close()
    except BaseException:
        runner.kill()
        raise
    seq = runner.stop()
    if seq != len(commands):
        raise RuntimeError(f"the stream runner stopped at seq {seq}, not {len(commands)}")
    server.flush()
    per_command = len(commands) - 1
    cpu = (used[0] * 1e6 / per_command, used[1] * 1e6 / per_command, used[2] * 1e6 / per_command)
    return rate, latencies, cpu


def main() -> int:
    args = parse_args(__doc__, commands=200_000, runs=3, redis_commands=30_000, redis_only=0)
    print_header()
    print(f"journal: fsync on, in {tempfile.gettempdir()}")
    builder = StreamBuilder(args.seed)
    builder.build(args.commands)
    n = len(builder.commands)
    m = min(n, args.redis_commands)

    batches: tuple[int, ...] = (1, 10, 100, 1000)
    windows: tuple[int, ...] = (1, 16, 256, 4096)
    redis_rows: list[tuple[int, str]] = [(1, "asyncio"), (16, "asyncio"), (256, "asyncio")]
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401

        redis_rows.append((256, "uvloop"))
    alone: list[float] = []
    alone_m: list[float] = []
    matcher: dict[int, list[float]] = {b: [] for b in batches}
    bus: dict[int, list[float]] = {w: [] for w in windows}
    lat: dict[int, list[int]] = {}
    # per Redis row and run: commands/s, CPU per command, sorted latencies
    rbus: dict[tuple[int, str], list[tuple[float, tuple[float, float, float], list[int]]]] = {
        row: [] for row in redis_rows}
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
            if args.redis_only:
                batches, windows = (), ()
            alone.append(engine_alone(builder.commands))
            for b in batches:
                matcher[b].append(matcher_batches(fresh(builder.commands), b))
            for w in windows:
                rate, latencies = bus_in_flight(fresh(builder.commands), w)
                bus[w].append(rate)
                lat[w] = sorted(latencies)
            if server is not None:
                alone_m.append(engine_alone(builder.commands[:m]))
                for row in redis_rows:
                    rate, latencies, cpu = redis_in_flight(server, fresh(builder.commands[:m]), *row)
                    rbus[row].append((rate, cpu, sorted(latencies)))
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
        print("  (latency and CPU per command, callers' process / runner / redis-server: of the median run)")
        for row in redis_rows:
            w, loop = row
            runs = sorted(rbus[row], key=lambda run: run[0])
            rate, cpu, latencies = runs[len(runs) // 2]
            label = f"  redis bus, {w:>4} clients{', uvloop' if loop == 'uvloop' else ''}"
            print(f"{label:<36}{rate:>10,.0f}   {rate / base_m:.2f}   ack latency "
                  f"p50 {percentile(latencies, 0.5):7.1f} us  p99 {percentile(latencies, 0.99):8.1f} us   "
                  f"CPU {cpu[0]:.1f} / {cpu[1]:.1f} / {cpu[2]:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
