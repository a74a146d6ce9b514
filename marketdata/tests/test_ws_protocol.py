"""Bad client messages over /ws: each gets an error with a machine-readable code and the connection stays
usable; paths other than /ws are refused; an Origin from elsewhere is refused, none at all is allowed."""

from __future__ import annotations

import asyncio
import json

from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from marketdata import publisher
from marketdata.session import MAX_MESSAGE_CHARS
from marketdata.tests.ws import application, connect, receive, request, run, send


def test_bad_messages_get_error_codes_and_the_connection_stays_open(embedded):
    cases = [
        ("{not json", "invalid_json"),
        ('{"action": "ping", "id": NaN}', "invalid_json"),
        ("[" * 100 + "]" * 100, "invalid_json"),
        ('{"action": "ping", "action": "ping"}', "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('"subscribe"', "invalid_message"),
        ('{"action": "ping", "id": {"a": 1}}', "invalid_message"),
        ('{"action": "dance"}', "unknown_action"),
        ('{"id": 4}', "unknown_action"),
        ('{"action": "subscribe", "symbol": "NOPE", "feed_types": ["trades"]}', "unknown_symbol"),
        ('{"action": "subscribe", "symbol": "AAPL", "feed_types": ["gossip"]}', "unknown_feed_type"),
        ('{"action": "subscribe", "symbol": "AAPL", "feed_types": []}', "invalid_message"),
        ('{"action": "subscribe", "symbol": "AAPL", "feed_types": "trades"}', "invalid_message"),
        ('{"action": "subscribe", "feed_types": ["trades"]}', "invalid_message"),
        ('{"action": "subscribe", "symbol": "AAPL", "feed_types": ["candles"], "interval": "7m"}',
         "invalid_interval"),
        ('{"action": "subscribe", "feed_types": ["orders"]}', "authentication_required"),
        ('{"action": "order.submit", "symbol": "AAPL"}', "authentication_required"),
        ('{"action": "auth"}', "invalid_message"),
        (json.dumps({"action": "ping", "pad": "x" * MAX_MESSAGE_CHARS}), "message_too_large"),
    ]

    async def scenario() -> None:
        comm = await connect()
        for text, code in cases:
            await send(comm, text)
            answer = await receive(comm)
            assert (answer["type"], answer["code"]) == ("error", code), text[:80]
            assert answer["message"]
        await comm.send_to(bytes_data=b"\x00\x01")
        assert (await receive(comm))["code"] == "invalid_message"
        pong = await request(comm, {"action": "ping", "id": "still-here"})
        assert pong == {"type": "pong", "id": "still-here"}
        # an error names the request it answers
        answer = await request(comm, {"action": "subscribe", "id": 5, "symbol": "NOPE",
                                      "feed_types": ["level2"]})
        assert answer["id"] == 5
        unsubscribed = await request(comm, {"action": "unsubscribe", "symbol": "AAPL",
                                            "feed_types": ["trades"]})
        assert unsubscribed == {"type": "unsubscribed", "symbol": "AAPL", "feed_types": ["trades"]}
        await comm.disconnect()

    run(scenario)


def test_paths_and_origins(embedded):
    async def handshake(path: str, headers: list) -> bool:
        comm = WebsocketCommunicator(application(), path, headers=headers)
        connected, _ = await comm.connect(timeout=10)
        if connected:
            await comm.disconnect()
        return connected

    async def scenario() -> None:
        assert await handshake("/ws", [])
        assert await handshake("/ws/", [])
        assert await handshake("/ws", [(b"origin", b"http://localhost:8000")])
        assert not await handshake("/ws", [(b"origin", b"http://evil.example")])
        assert not await handshake("/elsewhere", [])
        assert not await handshake("/ws/more", [])

    run(scenario)


def test_candles_and_ticker_on_subscribe_and_after_trades(embedded, django_user_model):
    from marketdata.tests.ws import aplace, receive_until

    maker = django_user_model.objects.create_user("maker").pk
    taker = django_user_model.objects.create_user("taker").pk

    async def scenario() -> None:
        await aplace(maker, "sell", "10.00", "5")
        await aplace(taker, "buy", "10.00", "1")
        comm = await connect()
        await request(comm, {"action": "subscribe", "symbol": "AAPL", "feed_types": ["candles", "ticker"],
                             "interval": "5m"})
        first = await receive_until(comm, lambda m: m["type"] == "candle")
        ticker = next(m for m in first if m["type"] == "ticker")
        assert (ticker["last"], ticker["volume"], ticker["ask"]) == ("10.00", "1", "10.00")
        assert (first[-1]["interval"], first[-1]["close"], first[-1]["volume"]) == ("5m", "10.00", "1")
        await aplace(maker, "sell", "11.00", "5")
        await aplace(taker, "buy", "11.00", "2")  # takes 2 of the 4 left at 10.00 (the better price)
        got = await receive_until(comm, lambda m: m["type"] == "candle" and m["volume"] == "3")
        candle = got[-1]
        assert (candle["open"], candle["high"], candle["close"], candle["trades"]) == ("10.00", "10.00",
                                                                                        "10.00", 2)
        await comm.disconnect()

    run(scenario)


def test_a_client_past_its_queue_bound_is_told_slow_consumer_and_closed(embedded, django_user_model):
    """One publication with more trades than the connection's bound: nothing is dropped silently."""
    from channels.routing import URLRouter
    from django.urls import re_path

    from marketdata.consumers import MarketConsumer
    from marketdata.tests.ws import aplace

    maker = django_user_model.objects.create_user("maker").pk
    taker = django_user_model.objects.create_user("taker").pk
    class Tiny(MarketConsumer):
        outbox_limit = 3

    app = URLRouter([re_path(r"^ws$", Tiny.as_asgi())])  # type: ignore[list-item, arg-type]  # as routing.py

    async def scenario() -> None:
        for n in range(6):
            await aplace(maker, "sell", f"20.0{n}", "1")
        comm = WebsocketCommunicator(app, "/ws")
        assert (await comm.connect(timeout=10))[0]
        pub = publisher.installed()
        assert pub is not None
        await pub.aclose()  # one publication, by hand: all six trades in one message
        await send(comm, {"action": "subscribe", "symbol": "AAPL", "feed_types": ["trades"]})
        assert (await receive(comm))["type"] == "subscribed"
        before = pub.pending()
        await aplace(taker, "buy", "20.05", "6")
        while pub.pending() == before:
            await asyncio.sleep(0.005)
        await pub.publish(get_channel_layer())
        told = await receive(comm)
        assert (told["type"], told.get("code")) == ("error", "slow_consumer"), told
        closed = await comm.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": 1008}

    run(scenario)
