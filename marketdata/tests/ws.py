"""Helpers for the WebSocket tests: Channels' WebsocketCommunicator on the project's own ASGI application
(origin check, session and token authentication, routing: exactly what a server serves), and orders
placed through the real embedded matcher. The tests are async functions run with `run()` (no
pytest-asyncio here); ORM work goes through threads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

TIMEOUT = 10.0  # seconds a test waits for a message it expects (a generous bound, never asserted on)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(scenario)()


def application() -> Any:
    from exchange.asgi import application

    return application


async def connect(path: str = "/ws", headers: Iterable[tuple[bytes, bytes]] = ()) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application(), path, headers=list(headers))
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected, f"the handshake to {path} was refused"
    return comm


async def send(comm: WebsocketCommunicator, message: Any) -> None:
    await comm.send_to(text_data=message if isinstance(message, str) else json.dumps(message))


async def receive(comm: WebsocketCommunicator, timeout: float = TIMEOUT) -> dict[str, Any]:
    return json.loads(await comm.receive_from(timeout=timeout))


async def receive_until(comm: WebsocketCommunicator, done: Callable[[dict[str, Any]], bool],
                        timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Every message up to and including the first for which `done` is true."""
    got: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"not received in {timeout}s; got {got}")
        message = await receive(comm, left)
        got.append(message)
        if done(message):
            return got


async def request(comm: WebsocketCommunicator, message: dict[str, Any]) -> dict[str, Any]:
    """Send, then the first answer of a type other than the feeds' (subscribed, pong, error, ...)."""
    await send(comm, message)
    feed_types = {"level2_snapshot", "level2_update", "trade", "ticker", "candle", "order", "fill"}
    got = await receive_until(comm, lambda m: m["type"] not in feed_types)
    return got[-1]


def place(user_id: int, side: str, price: str, qty: str, symbol: str = "AAPL", **extra: Any) -> Any:
    """A limit order straight into the matcher (synchronous)."""
    from exchange.models import Instrument
    from matching import services
    from matching.engine import OrderType, Side

    instrument = Instrument.objects.get(symbol=symbol)
    spec = services.OrderSpec(symbol, Side(side), OrderType.LIMIT, instrument.qty_to_lots(Decimal(qty)),
                              instrument.price_to_ticks(Decimal(price)), **extra)
    return services.order_submit(user_id=user_id, order=spec)


async def aplace(user_id: int, side: str, price: str, qty: str, symbol: str = "AAPL") -> Any:
    return await sync_to_async(place, thread_sensitive=False)(user_id, side, price, qty, symbol)


def book(symbol: str = "AAPL", depth: int = 10) -> dict[str, Any]:
    """The REST depth's levels as the WebSocket writes them ([price, qty] strings) and its seq."""
    from exchange.models import Instrument
    from matching import services

    instrument = Instrument.objects.get(symbol=symbol)
    raw = services.market_data().depth(symbol, depth)
    def side(levels: list) -> list[list[str]]:
        return [[str(instrument.ticks_to_price(p)), str(instrument.lots_to_qty(q))] for p, q in levels]

    return {"seq": raw["seq"], "bids": side(raw["bids"]), "asks": side(raw["asks"])}


async def abook(symbol: str = "AAPL") -> dict[str, Any]:
    return await sync_to_async(book, thread_sensitive=False)(symbol)


def token_for(user: Any) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key


def session_cookie(client: Any) -> tuple[bytes, bytes]:
    """The Cookie header of a logged-in django.test.Client."""
    from django.conf import settings

    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    return b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()
