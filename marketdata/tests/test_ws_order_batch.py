"""Submits over /ws are batched across the process's connections (marketdata/order_entry.py): many sent
at once on several sockets leave for the matcher in fewer batches than orders, and each still gets the
answer POST /api/submit gives for the same input, under its own request id."""

from __future__ import annotations

import asyncio
from typing import Any

from django.test import Client

from marketdata import order_entry
from marketdata.tests.test_ws_private import comparable, rest
from marketdata.tests.ws import connect, receive_until, run, send, session_cookie

CASES: list[dict[str, Any]] = [
    {"symbol": "AAPL", "side": "buy", "quantity": "2", "price": "90.00"},  # rests
    {"symbol": "AAPL", "side": "sell", "quantity": "1", "price": "110.00"},  # rests
    {"symbol": "AAPL", "side": "buy", "quantity": "2", "price": "90.005"},  # off the tick: 400
    {"symbol": "NOPE", "side": "buy", "quantity": "2", "price": "90.00"},  # unknown symbol: 400
    {"symbol": "AAPL", "side": "buy", "quantity": "1", "type": "market", "price": "1"},  # 400
]


def test_a_burst_of_submits_is_batched_and_each_answered_as_rest(embedded, django_user_model, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"submit": "1000/s", "burst": "1000/s",
                                                          "sustained": "10000/min"}}
    browsers = []
    for n in range(4):
        browser = Client()
        browser.force_login(django_user_model.objects.create_user(f"burst{n}", password="pw"))
        browsers.append(browser)

    async def scenario() -> None:
        expected = [await rest(browsers[0], "post", "/api/submit", case) for case in CASES]
        comms = [await connect(headers=[session_cookie(browser)]) for browser in browsers]
        before = order_entry.batcher()
        batches, orders = before.batches, before.orders
        rounds = 10
        for comm in comms:  # every request goes out before any answer is read
            for n in range(rounds * len(CASES)):
                await send(comm, {"action": "order.submit", "id": n, **CASES[n % len(CASES)]})

        async def answers(comm: Any) -> dict[int, dict[str, Any]]:
            seen: set[int] = set()

            def last(message: dict[str, Any]) -> bool:
                if message["type"] == "order.result":
                    seen.add(message["id"])
                return len(seen) == rounds * len(CASES)

            got = await receive_until(comm, last)
            return {m["id"]: m for m in got if m["type"] == "order.result"}

        for got in await asyncio.gather(*(answers(comm) for comm in comms)):
            assert sorted(got) == list(range(rounds * len(CASES)))
            for n, message in got.items():
                status, body = expected[n % len(CASES)]
                assert message["status"] == status, message
                assert comparable(message["result"]) == comparable(body), message
        sent_batches = order_entry.batcher().batches - batches
        sent_orders = order_entry.batcher().orders - orders
        assert sent_orders == len(comms) * rounds * len(CASES)
        assert sent_batches < sent_orders  # some left together
        for comm in comms:
            await comm.disconnect()

    run(scenario)
