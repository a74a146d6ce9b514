"""End to end on a live server (uvicorn, the embedded exchange: exchange/tests/live_server.py) with a real
WebSocket client (`websockets`): feeds in sequence while orders cross over REST, the book equal to the
REST depth, private feeds apart, and order entry over the socket answering as REST does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from exchange.tests.live_server import call_json, live_exchange

TIMEOUT = 15.0


def call(base: str, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, Any]:
    return call_json(base + path, method, token=token, body=body)


async def until(ws: Any, done: Any) -> list[dict]:
    got: list[dict] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                got.append(json.loads(await ws.recv()))
                if done(got[-1]):
                    return got
    except TimeoutError:
        raise AssertionError(f"not received in {TIMEOUT}s; got {got}") from None


def test_live_feeds_private_updates_and_order_entry(tmp_path):
    with live_exchange(tmp_path, market_maker=False, static=False,
                       extra_env={"API_RATES": "submit=1000/s,burst=1000/s,sustained=100000/min"}) as live:
        lines = live.manage("create_users", "--count", "2", "--prefix", "wslive").strip().splitlines()
        token_a, token_b = (line.split(",")[1] for line in lines[-2:])
        base = live.base_url

        async def post(path: str, token: str, body: dict) -> tuple[int, Any]:
            return await asyncio.to_thread(call, base, "POST", path, token, body)

        async def scenario() -> None:
            public = await connect(live.ws_url)
            a = await connect(live.ws_url, additional_headers={"Authorization": f"Token {token_a}"})
            b = await connect(live.ws_url)
            await b.send(json.dumps({"action": "auth", "token": token_b}))
            assert (await until(b, lambda m: True))[0]["type"] == "authenticated"
            await public.send(json.dumps({"action": "subscribe", "symbol": "AAPL",
                                          "feed_types": ["trades", "level2"]}))
            got = await until(public, lambda m: m["type"] == "level2_snapshot")
            assert got[0]["type"] == "subscribed"
            last_seq = got[-1]["seq"]
            for ws in (a, b):
                await ws.send(json.dumps({"action": "subscribe", "feed_types": ["orders"]}))
                await until(ws, lambda m: m["type"] == "subscribed")

            # a rests over the socket, b takes over REST
            await a.send(json.dumps({"action": "order.submit", "id": "r1", "symbol": "AAPL", "side": "sell",
                                     "quantity": "3", "price": "140.00"}))
            rested = (await until(a, lambda m: m["type"] == "order.result"))[-1]
            assert (rested["id"], rested["status"], rested["result"]["status"]) == ("r1", 201, "open")
            status, taken = await post("/api/submit", token_b,
                                       {"symbol": "AAPL", "side": "buy", "quantity": "2", "price": "140.00"})
            assert status == 201 and taken["status"] == "filled"

            feed = await until(public,
                               lambda m: m["type"] == "level2_update" and m["asks"] == [["140.00", "1"]])
            trades = [m for m in feed if m["type"] == "trade"]
            assert [(t["price"], t["quantity"], t["side"]) for t in trades] == [("140.00", "2", "buy")]
            for message in feed:
                if message["type"] == "level2_update":
                    assert message["prev_seq"] == last_seq  # in sequence, nothing missed
                    last_seq = message["seq"]
            status, book = await asyncio.to_thread(call, base, "GET", "/api/book/AAPL", token_a)
            assert status == 200 and book["seq"] == last_seq
            assert [[lv["price"], lv["quantity"]] for lv in book["asks"]] == feed[-1]["asks"]

            mine_a = await until(a, lambda m: m["type"] == "order" and m["status"] == "partially_filled")
            mine_b = await until(b, lambda m: m["type"] == "order" and m["status"] == "filled")
            assert {m["order_id"] for m in mine_a if "order_id" in m} == {rested["result"]["order_id"]}
            assert {m["order_id"] for m in mine_b} == {taken["order_id"]}

            # order entry: the same refusal over the socket as over REST
            bad = {"symbol": "AAPL", "side": "buy", "quantity": "0", "price": "1.00"}
            status, answer = await post("/api/submit", token_a, bad)
            await a.send(json.dumps({"action": "order.submit", "id": 2, **bad}))
            result = (await until(a, lambda m: m["type"] == "order.result"))[-1]
            assert (result["status"], result["result"]) == (status, answer)
            assert status == 400
            for ws in (public, a, b):
                await ws.close()

        asyncio.run(scenario())
