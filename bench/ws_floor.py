"""The floor of this machine for the WebSocket aims: the same benchmarks against a bare ASGI app.

    python bench/ws_floor.py --subscribers 1000 --rate 20 --seconds 10 --runs 3

What can a WebSocket server in Python do at all here, before any of the exchange's work? `app` below is a
plain ASGI application (no Django, no Channels, no matching, no database) served by the same uvicorn
command as the exchange (one process: uvloop, httptools, websockets-sansio). It answers `order.submit`
at once with an `order.result` of status 201, and for each one publishes to every subscriber what the
exchange would: a crossing buy a trade and a level-2 update, a resting sell a level-2 update; it sends
each frame to every connection in turn, the trade first (no queue, no writer task, no conflation): the
least a server can do per frame. `bench/ws_fanout.py`'s subscribers and driver and `bench/ws_orders.py`'s
WebSocket phase run against it unchanged, so their figures compare with the exchange's
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ---- the bare server -------------------------------------------------------------------------------

_subscribers: dict[int, Any] = {}  # id(send) -> the connection's ASGI send
_book = {"seq": 0, "trade": 0}


def _level2(seq: int) -> str:
    return json.dumps({"type": "level2_update", "symbol": "AAPL", "bids": [["99.00", "5"]],
                       "asks": [["101.00", "5"]], "seq": seq, "prev_seq": seq - 1, "checksum": 0,
                       "timestamp": datetime.now(UTC).isoformat()})


async def _publish(texts: list[str]) -> None:
    senders = list(_subscribers.values())
    for text in texts:  # the trade to everyone, then the depth (as the exchange's writers take turns)
        for send in senders:
            with contextlib.suppress(Exception):  # a closed connection: its own loss
                await send({"type": "websocket.send", "text": text})


async def _answer(request: dict[str, Any], send: Any) -> None:
    trades = []
    _book["seq"] += 1
    texts = []
    if request.get("side") == "buy" and request.get("price") == "100.00":  # ws_fanout's crossing buy
        _book["trade"] += 1
        trade = {"type": "trade", "symbol": "AAPL", "trade_id": f"AAPL-{_book['trade']}", "price": "100.00",
                 "quantity": "1", "timestamp": datetime.now(UTC).isoformat(), "side": "buy",
                 "seq": _book["seq"]}
        trades.append(trade)
        texts.append(json.dumps(trade))
    texts.append(_level2(_book["seq"]))
    await send({"type": "websocket.send", "text": json.dumps(
        {"type": "order.result", "id": request.get("id"), "status": 201,
         "result": {"order_id": _book["seq"], "status": "filled" if trades else "open", "trades": trades}})})
    if _subscribers:
        await _publish(texts)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            request = json.loads(event.get("text") or "{}")
            if request.get("action") == "subscribe":
                await send({"type": "websocket.send", "text": json.dumps(
                    {"type": "level2_snapshot", "symbol": "AAPL", "bids": [], "asks": [],
                     "seq": _book["seq"], "checksum": 0, "timestamp": datetime.now(UTC).isoformat()})})
                _subscribers[id(send)] = send
            elif request.get("action") == "order.submit":
                await _answer(request, send)
    finally:
        _subscribers.pop(id(send), None)


# ---- the benchmark ---------------------------------------------------------------------------------

@dataclass
class BareServer:
    port: int
    ws_url: str
    price: str = "100.00"  # ws_fanout's crossing pairs


@contextlib.contextmanager
def bare_server() -> Iterator[BareServer]:
    from bench.api_load import wait_listening
    from matching.tests.worker.stream_driver import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.ws_floor:app", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--lifespan", "on",
         "--no-access-log", "--log-level", "warning"], cwd=ROOT, start_new_session=True)
    try:
        wait_listening(port, process)
        yield BareServer(port, f"ws://127.0.0.1:{port}/ws")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def main() -> None:
    from bench.ws_fanout import fanout_arguments, run_once

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    fanout_arguments(parser)
    parser.add_argument("--connections", type=int, default=32, help="order entry sockets")
    parser.add_argument("--window", type=int, default=16, help="order requests in flight per socket")
    args = parser.parse_args()

    from bench.harness import machine
    from bench.ws_orders import summary, ws_phase

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    tokens = ["-"] * args.connections
    with bare_server() as bare:
        entry = [summary(*asyncio.run(ws_phase(bare.ws_url, tokens, args.window, args.seconds)))
                 for _ in range(args.runs)]
        print(f"order entry, {args.connections} x {args.window} in flight: "
              f"{statistics.median(r['rate'] for r in entry):.0f} answers/s, "
              f"p50 {statistics.median(r['p50'] for r in entry):.1f} ms, "
              f"p99 {statistics.median(r['p99'] for r in entry):.1f} ms (median of {args.runs})")
        print(f"{'subscribers':>11} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'gaps':>5} {'trades/s':>9} "
              f"{'server CPU':>10} {'client CPU':>10}  (median of {args.runs} runs, "
              f"{args.seconds:.0f} s each, {args.rate} pairs/s)")
        for count in args.subscribers or [100, 1000]:
            runs = [run_once(bare, tokens[:2], count, args.procs, args.rate, args.seconds, None)
                    for _ in range(args.runs)]

            def med(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            print(f"{count:>11} {med('msgs_per_s'):>9.0f} {med('p50_ms'):>8.1f} {med('p99_ms'):>8.1f} "
                  f"{max(r['gaps'] for r in runs):>5} {med('trades') / args.seconds:>9.1f} "
                  f"{med('server_cpu'):>9.0f}% {med('client_cpu'):>9.0f}%")


if __name__ == "__main__":
    main()
