"""WebSocket fan-out: N subscribers on one symbol while orders cross, on a live server.

    python bench/ws_fanout.py --subscribers 100 --subscribers 1000 --rate 20 --seconds 10 --runs 3
    python bench/ws_fanout.py --mode production --subscribers 1000 --rate 5

Embedded (the default): a uvicorn server (exchange/tests/live_server.py: the embedded exchange, no market
maker, DEBUG off as deployed). Production: scripts/run_production.sh (2 uvicorn workers, the shards,
Redis, PostgreSQL, the market maker; the pairs cross in the middle of its spread). Subscriber processes
(--procs, each a uvloop loop of `bench/ws_lean.py` clients) subscribe to AAPL trades and level2; a driver
sends `--rate` crossing pairs a second (a resting sell, then a buy that takes it: one trade each) through
WebSocket order entry. Per run: messages delivered per second (all subscribers), the match-to-client
latency of trades (client receive time - the trade's engine timestamp; one clock, one machine), detected
gaps (level2 prev_seq != the last seq; trade ids not consecutive; FANOUT_DEBUG=1 prints each) and the
server's memory per connection (RSS after connecting minus before, over N; the largest of the runs, as
later runs reuse memory the first one freed). Server CPU: the processes listening on the port. Medians
over --runs; gaps: the most any run saw. The clients share the machine's cores with the server: latencies
include that contention. At the end, the server's own stages of a trade's way over all the runs
(matcher.trade_to_feed, ws.trade_to_fanout: GET /api/performance/system; docs/ARCHITECTURE.md, "Metrics").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def server_pids(port: int) -> list[int]:
    """The processes listening on `port` (one uvicorn, or a uvicorn and its workers)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", out)})


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time of the processes so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(*pids: int) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def subscribers(url: str, count: int, ready: Any, go: Any, stop: Any, results: Any,
                compression: str | None) -> None:
    """One process: `count` subscribers; reports (messages, trade latencies in ms, gaps, CPU %).
    `bench/ws_lean.py`'s client on uvloop (the `websockets` client's per-message cost made these
    processes, not the server, the larger share of the cores), or with `compression` the `websockets`
    client, which negotiates permessage-deflate."""
    import uvloop

    from bench.ws_lean import connect as lean_connect

    state: dict[str, Any] = {"messages": 0, "gaps": 0, "latencies": []}
    measuring = False
    verbose = bool(os.environ.get("FANOUT_DEBUG"))  # print each gap
    subscribe = json.dumps({"action": "subscribe", "symbol": "AAPL", "feed_types": ["trades", "level2"]})

    def follower() -> Any:
        """A handler of one subscriber's messages (its own sequence state)."""
        last: dict[str, Any] = {"seq": None, "trade": None, "ready": False}

        def on_text(raw: bytes | str, now: float) -> None:
            message = json.loads(raw)
            kind = message["type"]
            if kind == "level2_snapshot":
                last["seq"] = message["seq"]
                if not last["ready"]:
                    last["ready"] = True
                    ready.put(1)
                return
            if kind == "level2_update":
                if message["prev_seq"] != last["seq"]:
                    state["gaps"] += 1
                    if verbose:
                        print("l2 gap", message["prev_seq"], last["seq"], message["seq"], flush=True)
                last["seq"] = message["seq"]
            elif kind == "trade":
                number = int(message["trade_id"].rsplit("-", 1)[1])
                if last["trade"] is not None and number != last["trade"] + 1:
                    state["gaps"] += 1
                    if verbose:
                        print("trade gap", last["trade"], number, flush=True)
                last["trade"] = number
                if measuring:
                    ts = datetime.fromisoformat(message["timestamp"]).timestamp()
                    state["latencies"].append((now - ts) * 1000)
            if measuring:
                state["messages"] += 1

        return on_text

    async def lean() -> None:
        socket = await lean_connect(url, follower())
        socket.send_text(subscribe)
        await socket.closed

    async def deflating() -> None:
        from websockets.asyncio.client import connect

        on_text = follower()
        async with connect(url, max_queue=None, compression=compression) as ws:
            await ws.send(subscribe)
            async for raw in ws:
                on_text(raw, time.time())

    async def main() -> None:
        nonlocal measuring
        one = deflating if compression else lean
        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.to_thread(go.wait)
        measuring = True
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.to_thread(stop.wait)
        measuring = False
        busy = (time.process_time() - cpu) / (time.monotonic() - wall) * 100
        results.put((state["messages"], state["latencies"], state["gaps"], busy))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    uvloop.run(main())


async def drive(url: str, tokens: list[str], rate: int, seconds: float, price: str = "100.00") -> int:
    """Crossing pairs at `rate` a second through WebSocket order entry (two users: a user's orders do not
    trade with each other); the trades made."""
    from websockets.asyncio.client import connect

    trades = 0
    seller = await connect(url, additional_headers={"Authorization": f"Token {tokens[0]}"})
    buyer = await connect(url, additional_headers={"Authorization": f"Token {tokens[1]}"})
    async with seller, buyer:
        async def order(n: int, side: str) -> dict:
            ws = seller if side == "sell" else buyer
            await ws.send(json.dumps({"action": "order.submit", "id": n, "symbol": "AAPL", "side": side,
                                      "quantity": "1", "price": price}))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("type") == "order.result" and answer["id"] == n:
                    return answer

        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            for k, side in enumerate(("sell", "buy")):  # production: the market maker may take either
                result = await order(n + k, side)
                trades += len(result["result"].get("trades", []))
            n += 2
            pause = start + n / 2 / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
    return trades


def run_once(live: Any, tokens: list[str], count: int, procs: int, rate: int, seconds: float,
             compression: str | None) -> dict[str, float]:
    pids = server_pids(live.port)
    before = rss_kib(*pids)
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go, stop = ctx.Event(), ctx.Event()
    shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=subscribers,
                           args=(live.ws_url, share, ready, go, stop, results, compression))
               for share in shares if share]
    for worker in workers:
        worker.start()
    for _ in range(count):
        ready.get(timeout=120)
    time.sleep(1.0)
    per_connection = (rss_kib(*pids) - before) / count
    go.set()
    started, cpu = time.monotonic(), cpu_seconds(*pids)
    trades = asyncio.run(drive(live.ws_url, tokens, rate, seconds, live.price))
    time.sleep(0.5)  # the last publication reaches the clients
    stop.set()
    elapsed = time.monotonic() - started
    server_cpu = (cpu_seconds(*pids) - cpu) / elapsed * 100
    messages, latencies, gaps, client_cpu = 0, [], 0, 0.0
    for _ in workers:
        got = results.get(timeout=60)
        messages += got[0]
        latencies += got[1]
        gaps += got[2]
        client_cpu += got[3]
    for worker in workers:
        worker.join(30)
    latencies.sort()
    return {"msgs_per_s": messages / elapsed, "p50_ms": latencies[len(latencies) // 2] if latencies else 0,
            "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else 0, "gaps": gaps,
            "kib_per_conn": per_connection, "trades": trades, "server_cpu": server_cpu,
            "client_cpu": client_cpu}


@dataclass
class Target:
    port: int
    ws_url: str
    price: str  # of the driver's crossing pairs
    tokens: list[str]  # the driver's two users


@contextlib.contextmanager
def target(args: argparse.Namespace, scratch: Path) -> Iterator[Target]:
    """The server `--mode` names. Production: scripts/run_production.sh (2 uvicorn workers, the shards,
    Redis, PostgreSQL, the market maker); the pairs cross at the middle of the market maker's spread."""
    settings = dict(item.split("=", 1) for item in args.env)
    if args.mode == "production":
        from bench.api_endpoints import production, tokens_for
        from bench.ws_orders import quotes

        os.environ.update(settings)
        with production(str(scratch)) as running:
            if running is None:
                raise SystemExit("production mode needs PostgreSQL (127.0.0.1:5432)")
            env, port, _pids = running
            tokens = tokens_for(env, 2)
            bid, ask = quotes(port, tokens[0], "AAPL")
            mid = ((bid + ask) / 2).quantize(Decimal("0.01"))
            print(f"market maker: {bid} / {ask}, pairs at {mid}")
            yield Target(port, f"ws://127.0.0.1:{port}/ws", str(mid), tokens)
        return
    from bench.harness import deployed_settings
    from exchange.tests.live_server import live_exchange

    with live_exchange(scratch, market_maker=False, static=False,
                       extra_env={"API_RATES": "submit=100000/s,burst=100000/s,sustained=10000000/min",
                                  **deployed_settings(), **settings}) as live:
        created = live.manage("create_users", "--count", "2", "--prefix", "fanout").strip().splitlines()
        yield Target(live.port, live.ws_url, "100.00", [line.split(",")[1] for line in created[-2:]])


def fanout_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a fan-out run (this script's and bench/ws_floor.py's)."""
    parser.add_argument("--subscribers", type=int, action="append")
    parser.add_argument("--rate", type=int, default=20, help="crossing pairs a second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2, help="subscriber processes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    fanout_arguments(parser)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a server setting, e.g. GC_YOUNG_THRESHOLD=0")
    parser.add_argument("--mode", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--deflate", action="store_true",
                        help="clients negotiate permessage-deflate (browsers do; default: off)")
    args = parser.parse_args()
    counts = args.subscribers or [100, 1000]
    compression = "deflate" if args.deflate else None

    from bench.harness import machine

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp, target(args, Path(tmp)) as live:
        tokens = live.tokens
        print(f"{'subscribers':>11} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'gaps':>5} {'KiB/conn':>9}"
              f" {'trades/s':>9} {'server CPU':>10} {'client CPU':>10}  (median of {args.runs} runs, "
              f"{args.seconds:.0f} s each)")
        for count in counts:
            runs = [run_once(live, tokens, count, args.procs, args.rate, args.seconds, compression)
                    for _ in range(args.runs)]

            def med(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            print(f"{count:>11} {med('msgs_per_s'):>9.0f} {med('p50_ms'):>8.1f} {med('p99_ms'):>8.1f} "
                  f"{max(r['gaps'] for r in runs):>5} {max(r['kib_per_conn'] for r in runs):>9.1f} "
                  f"{med('trades') / args.seconds:>9.1f} {med('server_cpu'):>9.0f}% "
                  f"{med('client_cpu'):>9.0f}%")
        print_stages(live)


def print_stages(live: Target) -> None:
    """The server's own measure of a trade's way (GET /api/performance/system), over all the runs above:
    engine time -> channel layer per shard, engine time -> queued for every connection of the web
    process that answered (production has two; either may answer)."""
    from exchange.tests.live_server import call_json

    status, figures = call_json(f"http://127.0.0.1:{live.port}/api/performance/system", token=live.tokens[0])
    if status != 200:
        print(f"stages: GET /api/performance/system answered {status}")
        return
    found = [(f"shard {shard['shard']} matcher.trade_to_feed", shard["stages"].get("matcher.trade_to_feed"))
             for shard in figures["shards"]]
    found.append(("web ws.trade_to_fanout", figures["stages"].get("ws.trade_to_fanout")))
    for name, stage in found:
        if stage:
            print(f"server stage {name}: p50 {stage['p50'] / 1000:.1f} ms, p99 {stage['p99'] / 1000:.1f} ms "
                  f"({stage['count']} publications with trades, all runs)")


if __name__ == "__main__":
    main()
