"""Order entry over WebSockets beside REST submit, in the same run, on a live server.

    python bench/ws_orders.py --connections 32 --window 16 --seconds 10 --runs 3 [--mode production]

Embedded (the default): a uvicorn server (exchange/tests/live_server.py: the embedded exchange, no market
maker, rate limits lifted, DEBUG off as deployed) on this machine. Production: scripts/run_production.sh
as it stands (bench/api_endpoints.py's `production`: 2 uvicorn workers, 2 matching and 2 balance shards,
Redis, a scratch PostgreSQL database, rate limits lifted). WebSocket phase: `--connections` sockets, each
of its own user, each keeping `--window` `order.submit` requests in flight (answers carry the request id).
REST phase: as many threads, each with a persistent HTTP connection, POSTing /api/submit one after the
other. Orders rest (buys at 50.00, sells at 150.00, AAPL and MSFT in turn, so on both matching shards in
production: nothing trades), so both doors do the same work: validation, the risk stage, the matcher, the
projection written before the answer (read-your-writes). Per phase: acknowledged orders a second and the
ack latency p50/p99 as the client sees it. Phases alternate; medians over --runs. The client shares the
machine's two cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# symbol -> (buy price, sell price): far from the market, so nothing trades. Production runs the market
# maker, and the 10% price band applies around its trades: set from its book at the start (`resting`).
PRICES = {"AAPL": ("50.00", "150.00"), "MSFT": ("50.00", "150.00")}


def order(n: int) -> dict[str, Any]:
    buy = n % 2 == 0
    symbol = "AAPL" if n % 4 < 2 else "MSFT"
    return {"symbol": symbol, "side": "buy" if buy else "sell", "quantity": "1",
            "price": PRICES[symbol][0 if buy else 1]}


def quotes(port: int, token: str, symbol: str) -> tuple[Decimal, Decimal]:
    """The market maker's best bid and ask in `symbol` (waiting for its first quotes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(100):
            conn.request("GET", f"/api/ticker/{symbol}", headers={"Authorization": f"Token {token}"})
            ticker = json.loads(conn.getresponse().read())
            if ticker["best_bid"] and ticker["best_ask"]:
                return Decimal(ticker["best_bid"]), Decimal(ticker["best_ask"])
            time.sleep(0.2)
    finally:
        conn.close()
    raise SystemExit(f"no quotes in {symbol}")


def resting(port: int, token: str) -> None:
    """Prices 5% outside the market maker's best bid and ask (inside the price band), for PRICES."""
    for symbol in PRICES:
        bid, ask = quotes(port, token, symbol)
        PRICES[symbol] = (str((bid * Decimal("0.95")).quantize(Decimal("0.01"))),
                          str((ask * Decimal("1.05")).quantize(Decimal("0.01"))))


async def ws_phase(url: str, tokens: list[str], window: int,
                   seconds: float) -> tuple[int, list[float], float]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    done = 0
    deadline = time.monotonic() + seconds

    async def one(token: str) -> None:
        nonlocal done
        headers = {"Authorization": f"Token {token}"}
        async with connect(url, additional_headers=headers, compression=None) as ws:
            sent: dict[int, float] = {}
            n = 0

            async def send_one() -> None:
                nonlocal n
                sent[n] = time.monotonic()
                await ws.send(json.dumps({"action": "order.submit", "id": n, **order(n)}))
                n += 1

            for _ in range(window):
                await send_one()
            while sent:
                answer = json.loads(await ws.recv())
                if answer.get("type") != "order.result":
                    continue
                started = sent.pop(answer["id"])
                if answer["status"] != 201:
                    raise RuntimeError(f"refused: {answer}")
                latencies.append((time.monotonic() - started) * 1000)
                done += 1
                if time.monotonic() < deadline:
                    await send_one()

    started = time.monotonic()
    await asyncio.gather(*(one(token) for token in tokens))
    return done, latencies or [0.0], time.monotonic() - started


def rest_phase(port: int, tokens: list[str], seconds: float) -> tuple[int, list[float], float]:
    latencies: list[float] = []
    counts = [0] * len(tokens)
    deadline = time.monotonic() + seconds

    def worker(i: int, token: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            conn.request("POST", "/api/submit", body=json.dumps(order(n)), headers=headers)
            answer = conn.getresponse()
            body = answer.read()
            if answer.status != 201:
                raise RuntimeError(f"refused: {answer.status} {body[:200]!r}")
            latencies.append((time.monotonic() - started) * 1000)
            counts[i] += 1
            n += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i, t)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), latencies, time.monotonic() - started


def summary(count: int, latencies: list[float], elapsed: float) -> dict[str, float]:
    latencies = sorted(latencies)
    return {"rate": count / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)]}


@contextlib.contextmanager
def server(args: argparse.Namespace, scratch: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(WebSocket URL, HTTP port, one token per connection) of the server the mode names."""
    if args.mode == "production":
        from bench.api_endpoints import production, tokens_for

        os.environ["ACCOUNT_STARTING_CASH"] = "1000000000"  # every order rests: cash for all of them
        # 32 x 16 requests in flight over 2 web processes, past the default back-pressure of 256 each
        os.environ.setdefault("MATCHER_MAX_IN_FLIGHT", "1024")
        with production(str(scratch)) as running:
            if running is None:
                raise SystemExit("production mode needs PostgreSQL (127.0.0.1:5432)")
            env, port, _pids = running
            tokens = tokens_for(env, args.connections)
            resting(port, tokens[0])
            print(f"prices:  {PRICES}")
            yield f"ws://127.0.0.1:{port}/ws", port, tokens
        return
    from bench.harness import deployed_settings
    from exchange.tests.live_server import live_exchange

    env = {"API_RATES": "submit=1000000/s,burst=1000000/s,sustained=100000000/min", **deployed_settings(),
           **dict(item.split("=", 1) for item in args.env)}
    with live_exchange(scratch, market_maker=False, static=False, extra_env=env) as live:
        created = live.manage("create_users", "--count", str(args.connections), "--prefix", "wsorders")
        yield live.ws_url, live.port, [line.split(",")[1]
                                       for line in created.strip().splitlines()[-args.connections:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--window", type=int, default=16, help="requests in flight per socket")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a server setting, e.g. PROJECTION_WAIT_TIMEOUT=0 (embedded only)")
    parser.add_argument("--mode", choices=("embedded", "production"), default="embedded")
    args = parser.parse_args()

    from bench.harness import machine

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp, server(args, Path(tmp)) as (ws_url, port, tokens):
        results: dict[str, list[dict[str, float]]] = {"websocket": [], "rest": []}
        for _ in range(args.runs):
            results["websocket"].append(summary(*asyncio.run(ws_phase(ws_url, tokens, args.window,
                                                                      args.seconds))))
            results["rest"].append(summary(*rest_phase(port, tokens, args.seconds)))
        print(f"{'door':>10} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8}  ({args.connections} clients, "
              f"median of {args.runs} runs of {args.seconds:.0f} s)")
        for door, runs in results.items():
            med = {key: statistics.median(r[key] for r in runs) for key in ("rate", "p50", "p99")}
            print(f"{door:>10} {med['rate']:>9.0f} {med['p50']:>8.1f} {med['p99']:>8.1f}")
        ratio = statistics.median(r["rate"] for r in results["websocket"]) / statistics.median(
            r["rate"] for r in results["rest"])
        print(f"websocket / rest: {ratio:.1f}x")


if __name__ == "__main__":
    main()
