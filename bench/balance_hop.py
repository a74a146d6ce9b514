"""The balance stage's extra hop (issue 13), measured at the transport: orders through one matching
shard's runner as today, and through a balance shard's runner first (R1, then the funded order
forwarded to the matching shard, whose settlements come back to the balance stream: R2).

    python bench/balance_hop.py --clients 16 --seconds 5 --runs 3

A private durable redis-server (appendonly, appendfsync always, as production) and runner processes
(bench/redis_runner.py): for the one-stage path a matching runner whose risk keeps the cash itself
(today's production shard); for the two-stage path a balance runner and a matching runner with
`balance_shards=1`. `--clients` threads, each with a connection and a reply list of its own, send
one order and wait for its answer (closed loop), as the web tier's callers do: limit orders of 1 lot,
buys and sells at the same price from different owners, so half of them trade and every trade settles
(two lines back to the balance stream in the two-stage path). The answer to a two-stage order comes
from the matching runner, the balance runner having forwarded it with the caller's reply address.
Reported per path: orders a second and the ack latency p50/p99 (the client's clock), medians over
`--runs`; the paths alternate within each run, and the ratio two-stage / one-stage is taken per run.
The clients share the machine's cores with Redis and the runners.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.harness import machine
from bench.redis_runner import RedisServer, RunnerProcess
from matching.engine import NewOrder, Side
from matching.worker.balance_codec import Place, balance_entry, balance_stream_key, encode_balance_command
from matching.worker.codec import encode_command
from matching.worker.replies import unaddress
from matching.worker.stream_runner import entry_fields, stream_key
from risk.core.commands import SetDefaultCash

PRICE = 100
CASH_PER_TICK_LOT = 1  # no SetInstrumentRisk is sent: risk's default for an unconfigured instrument


def order(client: int, n: int) -> NewOrder:
    """Client c's n-th order: even clients buy, odd ones sell, all at one price: half of them trade."""
    side = Side.BUY if client % 2 == 0 else Side.SELL
    return NewOrder(0, 1 + client, "AAPL", side, 1, PRICE)


def phase(url: str, prefix: str, two_stage: bool, clients: int, seconds: float
          ) -> tuple[int, list[float], float]:
    latencies: list[float] = []
    counts = [0] * clients
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(c: int) -> None:
        conn = redis.Redis.from_url(url)
        reply_key = f"{prefix}:reply:bench-{c}-{two_stage}"
        mine: list[float] = []
        n = 0
        try:
            while time.monotonic() < deadline:
                request_id = str(n).encode()
                cmd = order(c, n)
                started = time.perf_counter()
                if two_stage:
                    payload = encode_balance_command(Place(cmd, 0, cmd.qty * PRICE * CASH_PER_TICK_LOT
                                                           if cmd.side is Side.BUY else 0))
                    conn.xadd(balance_stream_key(prefix, 0), balance_entry(payload, reply_key, request_id))
                else:
                    conn.xadd(stream_key(prefix, 0), entry_fields(encode_command(cmd), reply_key, request_id))
                popped = conn.blpop([reply_key], timeout=30)
                if not popped:
                    raise RuntimeError("no answer in 30 s")
                item = popped[1]
                got, _ = unaddress(item if isinstance(item, bytes) else item.encode())
                if got != request_id:
                    raise RuntimeError(f"answer to {got!r}, not {request_id!r}")
                mine.append((time.perf_counter() - started) * 1000)
                n += 1
        finally:
            conn.close()
        counts[c] = n
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), sorted(latencies) or [0.0], time.monotonic() - started


def summary(count: int, latencies: list[float], elapsed: float) -> dict[str, float]:
    return {"rate": count / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)]}


def run_path(server: RedisServer, directory: Path, two_stage: bool, clients: int, seconds: float
             ) -> dict[str, float]:
    server.flush()
    prefix = "hop"
    runners = []
    try:
        if two_stage:
            runners.append(RunnerProcess(server.url, prefix, directory / "balance.log", 0, role="balance"))
            runners.append(RunnerProcess(server.url, prefix, directory / "matching.log", 0, balance_shards=1))
        else:
            client = redis.Redis.from_url(server.url)
            # today's shard: risk on (its first admin command), every account opening with plenty of cash
            client.xadd(stream_key(prefix, 0), entry_fields(encode_command(SetDefaultCash(10**15))))
            client.close()
            runners.append(RunnerProcess(server.url, prefix, directory / "matching.log", 0))
        count, latencies, elapsed = phase(server.url, prefix, two_stage, clients, seconds)
        if two_stage:  # the settlements came back: a confirmation for every order, more for the trades
            time.sleep(0.5)
            client = redis.Redis.from_url(server.url)
            settled = client.xlen(balance_stream_key(prefix, 0)) - count
            client.close()
            if settled < count:
                raise RuntimeError(f"{count} orders, only {settled} settlements reached the balance shard")
        return summary(count, latencies, elapsed)
    finally:
        for runner in runners:
            runner.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    results: dict[str, list[dict[str, float]]] = {"one stage": [], "two stages": []}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server = RedisServer(directory)
        try:
            print(f"redis {server.version()}, appendfsync always; {args.clients} clients, closed loop")
            for _ in range(args.runs):
                results["one stage"].append(run_path(server, directory, False, args.clients, args.seconds))
                results["two stages"].append(run_path(server, directory, True, args.clients, args.seconds))
        finally:
            server.stop()
    print(f"{'path':>11} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8}  (median of {args.runs} runs of "
          f"{args.seconds:g} s)")
    for path, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in ("rate", "p50", "p99")}
        print(f"{path:>11} {med['rate']:>9.0f} {med['p50']:>8.2f} {med['p99']:>8.2f}")
    ratios = [two["rate"] / one["rate"] for one, two in zip(results["one stage"], results["two stages"],
                                                             strict=True)]
    added = [two["p50"] - one["p50"] for one, two in zip(results["one stage"], results["two stages"],
                                                         strict=True)]
    print(f"two stages / one stage, throughput: {statistics.median(ratios):.2f}x; "
          f"added ack latency p50: {statistics.median(added):.2f} ms")


if __name__ == "__main__":
    main()
