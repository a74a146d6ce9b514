"""The production mode's live feeds: two `runmatcher` shard processes publish through channels-redis; two
separate uvicorn web processes each serve a WebSocket subscriber; both subscribers see the same sequenced
level-2 updates and trades for a symbol of each shard, a user's private updates reach them in the other
web process, and order entry over the socket works there.

PostgreSQL (a scratch database) and a private redis-server (the command log, the cache and the channel
layer) are required; without them the test skips loudly."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from exchange.tests.live_server import stop, wait_healthy
from marketdata.tests.test_ws_live import call, until
from matching.tests.worker.stream_driver import (
    ROOT,
    RedisServer,
    RunmatcherProcess,
    free_port,
    scratch_postgres_or_skip,
)


def test_two_web_processes_see_the_same_sequenced_updates(tmp_path):
    with scratch_postgres_or_skip() as database_url:
        redis_server = RedisServer(tmp_path)
        redis_server.start()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "exchange.settings", "PYTHONUNBUFFERED": "1",
               "EXCHANGE_MODE": "production", "DEBUG": "false", "SECRET_KEY": "test-only-ws-production-key",
               "DATABASE_URL": database_url, "REDIS_URL": redis_server.url,
               "REDIS_CACHE_URL": redis_server.url, "MATCHER_SHARDS": "0=AAPL,GOOGL;1=MSFT,TSLA",
               "MATCHER_DATA_DIR": str(tmp_path / "matcher"), "DEMO_MARKET_MAKER": "0",
               "API_RATES": "submit=1000/s,burst=1000/s,sustained=100000/min"}

        def manage(*args: str) -> str:
            done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            return done.stdout

        manage("migrate", "--noinput")
        created = manage("create_users", "--count", "2", "--prefix", "wsprod").strip().splitlines()
        seller, buyer = (line.split(",")[1] for line in created[-2:])
        shards = [RunmatcherProcess(n, [], env) for n in (0, 1)]
        webs: list[tuple[subprocess.Popen, int, Path]] = []
        try:
            for shard in shards:
                shard.wait_recovered(60)
            for n in range(2):
                port, log = free_port(), tmp_path / f"web{n}.log"
                with log.open("w") as out:
                    server = subprocess.Popen(
                        [sys.executable, "-m", "uvicorn", "exchange.asgi:application", "--port", str(port),
                         "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--lifespan",
                         "on"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True)
                webs.append((server, port, log))
            for server, port, log in webs:
                wait_healthy(f"http://127.0.0.1:{port}", server, log)
            asyncio.run(_scenario([port for _, port, _ in webs], seller, buyer))
        finally:
            for server, _, _ in webs:
                stop(server)
            for shard in shards:
                if shard.proc.poll() is None:
                    shard.terminate()
                shard.ensure_dead()
            redis_server.kill()


async def _scenario(ports: list[int], seller: str, buyer: str) -> None:
    base = [f"http://127.0.0.1:{port}" for port in ports]
    subscribers = [await connect(f"ws://127.0.0.1:{port}/ws") for port in ports]
    # the buyer's private feed in web process 2; its orders go in through web process 1's REST API
    private = await connect(f"ws://127.0.0.1:{ports[1]}/ws",
                            additional_headers={"Authorization": f"Token {buyer}"})
    await private.send(json.dumps({"action": "subscribe", "feed_types": ["orders"]}))
    await until(private, lambda m: m["type"] == "subscribed")
    seen: list[dict[str, list[dict]]] = [{}, {}]
    for ws in subscribers:
        for symbol in ("AAPL", "MSFT"):  # one of each shard
            await ws.send(json.dumps({"action": "subscribe", "symbol": symbol,
                                      "feed_types": ["trades", "level2"]}))
            await until(ws, lambda m: m["type"] == "level2_snapshot")

    async def rest(port_base: str, token: str, body: dict) -> dict:
        status, answer = await asyncio.to_thread(call, port_base, "POST", "/api/submit", token, body)
        assert status == 201, answer
        return answer

    taken: dict[str, int] = {}
    for symbol, best, next_ in (("AAPL", "150.00", "151.00"), ("MSFT", "400.00", "401.00")):
        await rest(base[0], seller, {"symbol": symbol, "side": "sell", "quantity": "5", "price": best})
        await rest(base[0], seller, {"symbol": symbol, "side": "sell", "quantity": "5", "price": next_})
        answer = await rest(base[0], buyer,
                            {"symbol": symbol, "side": "buy", "quantity": "7", "price": next_})
        assert answer["status"] == "filled"
        taken[symbol] = answer["order_id"]
    # order entry over the socket, in web process 2
    await private.send(json.dumps({"action": "order.submit", "id": 1, "symbol": "MSFT", "side": "buy",
                                   "quantity": "1", "price": "401.00"}))
    filled: set[int] = set()

    def private_done(m: dict[str, Any]) -> bool:
        if m["type"] == "order.result":
            assert m["status"] == 201 and m["result"]["status"] == "filled", m
            filled.add(m["result"]["order_id"])
        elif m["type"] == "order" and m["status"] == "filled":
            filled.add(-m["order_id"])  # seen on the private feed
        return len(filled) == 4 and all(-order_id in filled for order_id in taken.values())

    await until(private, private_done)

    for n, ws in enumerate(subscribers):  # until each has the final books: AAPL 3 left, MSFT 2 left
        final = {"AAPL": [["151.00", "3"]], "MSFT": [["401.00", "2"]]}
        done: set[str] = set()

        def record(m: dict[str, Any], n: int = n, done: set[str] = done, final: dict = final) -> bool:
            if m["type"] in ("trade", "level2_update"):
                seen[n].setdefault(m["symbol"], []).append(m)
                if m["type"] == "level2_update" and m["asks"] == final[m["symbol"]]:
                    done.add(m["symbol"])
            return done == {"AAPL", "MSFT"}

        await until(ws, record)
    for symbol in ("AAPL", "MSFT"):
        first, second = seen[0][symbol], seen[1][symbol]
        levels = [m for m in first if m["type"] == "level2_update"]
        for before, after in itertools.pairwise(levels):
            assert after["prev_seq"] == before["seq"]  # no gap
        # both processes' subscribers got the same trades, and the same depth states with the same seqs
        assert [m for m in first if m["type"] == "trade"] == [m for m in second if m["type"] == "trade"]
        assert {(m["seq"], json.dumps(m["asks"])) for m in levels} == \
            {(m["seq"], json.dumps(m["asks"])) for m in second if m["type"] == "level2_update"}
        assert len([m for m in first if m["type"] == "trade"]) == {"AAPL": 2, "MSFT": 3}[symbol]
    for ws in [*subscribers, private]:
        await ws.close()
    # where a trade's delay came from: each web process's fan-out, each shard's publisher (its heartbeat)
    for port_base in base:
        for _ in range(50):
            status, figures = await asyncio.to_thread(call, port_base, "GET", "/api/performance/system",
                                                      seller)
            assert status == 200, figures
            published = [shard["stages"].get("matcher.trade_to_feed", {}).get("count", 0)
                         for shard in figures["shards"]]
            if len(published) == 2 and all(published):
                break
            await asyncio.sleep(0.1)  # the shards' heartbeats come every half second
        assert len(published) == 2 and all(published), figures["shards"]
        assert figures["stages"]["ws.trade_to_fanout"]["count"] >= 1
