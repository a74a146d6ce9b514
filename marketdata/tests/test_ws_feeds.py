"""The public feeds over /ws against the real embedded matcher and the in-memory channel layer:
snapshot, then trades and sequenced level-2 updates; a forced drop in the layer is a visible gap, and a
resync gives exactly the server's book."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading

from marketdata import publisher
from marketdata.feed import checksum
from marketdata.tests.ws import abook, aplace, connect, receive, receive_until, request, run, send


def level2(message: dict) -> bool:
    return message["type"] in ("level2_snapshot", "level2_update")


def test_subscribe_snapshot_then_trades_and_updates_in_sequence(embedded, django_user_model):
    from matching.worker.metrics import METRICS

    for stage in ("ws.trade_to_fanout", "matcher.trade_to_feed"):  # counted below: this test's trades only
        METRICS.stage(stage).reset()
    seller = django_user_model.objects.create_user("seller").pk
    buyer = django_user_model.objects.create_user("buyer").pk

    async def scenario() -> None:
        await aplace(seller, "sell", "151.00", "4")  # before the subscription: in the snapshot
        comm = await connect()
        answer = await request(comm, {"action": "subscribe", "symbol": "AAPL",
                                      "feed_types": ["trades", "level2", "ticker"]})
        assert answer == {"type": "subscribed", "symbol": "AAPL",
                          "feed_types": ["level2", "ticker", "trades"]}
        snapshot = await receive(comm)
        assert snapshot["type"] == "level2_snapshot"
        assert (snapshot["bids"], snapshot["asks"]) == ([], [["151.00", "4"]])
        assert snapshot["checksum"] == checksum([], [["151.00", "4"]])
        ticker = await receive(comm)
        assert ticker["type"] == "ticker" and ticker["ask"] == "151.00" and ticker["last"] is None

        await aplace(seller, "sell", "150.50", "2")
        update = (await receive_until(comm, level2))[-1]
        assert update["type"] == "level2_update"
        assert update["prev_seq"] == snapshot["seq"] and update["seq"] > snapshot["seq"]
        assert update["asks"] == [["150.50", "2"], ["151.00", "4"]]

        await aplace(buyer, "buy", "151.00", "3")  # takes 2 at 150.50 and 1 at 151.00
        got = await receive_until(comm, lambda m: level2(m) and m["asks"] == [["151.00", "3"]])
        trades = [m for m in got if m["type"] == "trade"]
        assert [(t["price"], t["quantity"], t["side"]) for t in trades] == [("150.50", "2", "buy"),
                                                                             ("151.00", "1", "buy")]
        assert trades[0]["trade_id"] == "AAPL-1" and trades[1]["trade_id"] == "AAPL-2"
        assert trades[0]["timestamp"].endswith("+00:00")
        chain = [update] + [m for m in got if level2(m)]
        for before, after in itertools.pairwise(chain):
            assert after["prev_seq"] == before["seq"]  # no gap on the way
        final = chain[-1]
        assert final["checksum"] == checksum(final["bids"], final["asks"])
        server = await abook()
        assert (final["bids"], final["asks"], final["seq"]) == (server["bids"], server["asks"], server["seq"])
        await comm.disconnect()

    run(scenario)
    # where the trades' delay came from, per stage, as GET /api/performance/system shows it
    from exchange.api.performance_views import system_figures

    figures = system_figures()
    assert figures["stages"]["ws.trade_to_fanout"]["count"] >= 1
    assert figures["shards"][0]["stages"]["matcher.trade_to_feed"]["count"] >= 1


def test_a_message_the_layer_drops_is_a_gap_and_a_resync_gives_the_servers_book(embedded, django_user_model,
                                                                                    settings):
    """The in-memory layer with a capacity of one message per channel: the second of two publications
    sent before the consumer reads is dropped (ChannelFull), as channels-redis drops past its capacity."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                           "CONFIG": {"capacity": 1}}}
    seller = django_user_model.objects.create_user("seller").pk
    from channels.layers import get_channel_layer

    async def published_alone(pub: publisher.Publisher, side: str, price: str) -> list:
        """Place one order and collect its publication (not sent yet)."""
        before = pub.pending()
        await aplace(seller, side, price, "1")
        while pub.pending() == before:  # the matcher hands the batch to listeners after answering
            await asyncio.sleep(0.005)
        return await pub.collect()

    async def scenario() -> None:
        comm = await connect()  # starts the embedded publisher's loop in this loop ...
        pub = publisher.installed()
        assert pub is not None
        await pub.aclose()  # ... which this test drives by hand instead
        await request(comm, {"action": "subscribe", "symbol": "AAPL", "feed_types": ["level2"]})
        snapshot = await receive(comm)
        first = await published_alone(pub, "sell", "160.00")
        second = await published_alone(pub, "sell", "161.00")
        layer = get_channel_layer()
        assert layer is not None
        # together: both are put before the consumer runs again, so the second finds its channel full
        await asyncio.gather(*(layer.group_send(group, message) for group, message in first + second))
        got = await receive(comm)
        assert got["prev_seq"] == snapshot["seq"] and got["asks"] == [["160.00", "1"]]
        third = await published_alone(pub, "sell", "162.00")
        for group, message in third:
            await layer.group_send(group, message)
        after_gap = await receive(comm)
        assert after_gap["prev_seq"] != got["seq"]  # the client sees that it missed an update ...
        assert after_gap["prev_seq"] == second[0][1]["level2"][0]  # ... the one the layer dropped
        # resync: subscribe again; the new snapshot is exactly the server's book
        await send(comm, {"action": "subscribe", "symbol": "AAPL", "feed_types": ["level2"]})
        resync = (await receive_until(comm, lambda m: m["type"] == "level2_snapshot"))[-1]
        server = await abook()
        assert (resync["bids"], resync["asks"]) == (server["bids"], server["asks"])
        assert resync["seq"] == server["seq"]
        assert resync["asks"] == [["160.00", "1"], ["161.00", "1"], ["162.00", "1"]]
        await comm.disconnect()

    run(scenario)


def test_a_publication_while_the_snapshot_is_read_reaches_the_client_after_it(embedded, django_user_model,
                                                                               monkeypatch):
    """The consumer joins the symbol's group, then reads the snapshot (a thread; production reads Redis):
    a publication in between is held and follows the snapshot, chained onto it. Dropped, as it was, the
    trade went missing and the next update looked like a gap (seen with 1,000 subscribers in production:
    bench/ws_fanout.py). The snapshot read is held open here until that publication has reached the
    consumer, with the book as it was before the trade."""
    from channels.layers import get_channel_layer

    from marketdata import consumers
    from marketdata.hub import HUB

    seller = django_user_model.objects.create_user("seller").pk
    buyer = django_user_model.objects.create_user("buyer").pk
    read, published = threading.Event(), threading.Event()
    real_snapshot = consumers._public_snapshot

    def snapshot_outrun(symbol: str, intervals: set[str]):
        found = real_snapshot(symbol, intervals)
        read.set()
        assert published.wait(10)
        return found

    async def scenario() -> None:
        comm = await connect()
        pub = publisher.installed()
        assert pub is not None
        await pub.aclose()  # publications by hand, at the moment this test chooses
        layer = get_channel_layer()
        assert layer is not None

        async def publish_next(side: str, price: str, quantity: str, user: int) -> None:
            before = pub.pending()
            await aplace(user, side, price, quantity)
            while pub.pending() == before:
                await asyncio.sleep(0.005)
            delivered = HUB.delivered
            for group, message in await pub.collect():
                await layer.group_send(group, message)
            while HUB.delivered == delivered:  # the relay handed it to the consumer
                await asyncio.sleep(0.005)

        await aplace(seller, "sell", "151.00", "4")
        monkeypatch.setattr(consumers, "_public_snapshot", snapshot_outrun)
        await send(comm, {"action": "subscribe", "symbol": "AAPL", "feed_types": ["trades", "level2"]})
        await asyncio.to_thread(read.wait, 10)
        await publish_next("buy", "151.00", "1", buyer)  # the trade, while the snapshot is in flight
        published.set()
        got = await receive_until(comm, lambda m: m["type"] == "level2_update")
        assert [m["type"] for m in got] == ["subscribed", "level2_snapshot", "trade", "level2_update"]
        snapshot, trade, update = got[1:]
        assert snapshot["asks"] == [["151.00", "4"]]  # read before the trade
        assert (trade["price"], trade["quantity"], trade["seq"]) == ("151.00", "1", update["seq"])
        assert update["asks"] == [["151.00", "3"]]
        assert update["prev_seq"] == snapshot["seq"] < update["seq"]  # chained: no gap
        await publish_next("sell", "152.00", "1", seller)  # and live from there on
        following = await receive(comm)
        assert following["prev_seq"] == update["seq"]
        assert following["asks"] == [["151.00", "3"], ["152.00", "1"]]
        await comm.disconnect()

    run(scenario)


def test_a_publication_s_trade_reaches_every_connection_before_any_connection_s_depth(embedded,
                                                                                       django_user_model):
    """Each connection's writer yields after a frame while it has more: the frames of one publication go
    out trade to all, then depth to all (the order of every connection's sends, as the server makes
    them), so a trade's latency to the last of N subscribers is N frames, not 2N."""
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator

    from marketdata.tests.ws import application

    seller = django_user_model.objects.create_user("seller").pk
    buyer = django_user_model.objects.create_user("buyer").pk
    sent: list[tuple[int, str]] = []  # (connection, message type) in the order the server sent them

    def noting(app, tag: int):
        async def wrapped(scope, receive, send):
            async def send_noted(message):
                if message["type"] == "websocket.send":
                    sent.append((tag, json.loads(message["text"])["type"]))
                await send(message)
            await app(scope, receive, send_noted)
        return wrapped

    async def scenario() -> None:
        comms = []
        for tag in range(3):
            comm = WebsocketCommunicator(noting(application(), tag), "/ws")
            assert (await comm.connect())[0]
            comms.append(comm)
        pub = publisher.installed()
        assert pub is not None
        await pub.aclose()  # one publication with both orders, sent by hand
        for comm in comms:
            await request(comm, {"action": "subscribe", "symbol": "AAPL", "feed_types": ["trades", "level2"]})
            await receive(comm)  # the snapshot
        before = pub.pending()
        await aplace(seller, "sell", "150.00", "2")
        await aplace(buyer, "buy", "150.00", "1")
        while pub.pending() < before + 2:
            await asyncio.sleep(0.005)
        layer = get_channel_layer()
        assert layer is not None
        del sent[:]
        for group, message in await pub.collect():
            await layer.group_send(group, message)
        for comm in comms:
            got = await receive_until(comm, lambda m: m["type"] == "level2_update")
            assert [m["type"] for m in got] == ["trade", "level2_update"]
            await comm.disconnect()

    run(scenario)
    kinds = [kind for _, kind in sent if kind in ("trade", "level2_update")]
    assert kinds == ["trade"] * 3 + ["level2_update"] * 3, sent


def test_publications_handed_over_in_one_turn_all_go_out_in_order(embedded, django_user_model, caplog):
    """The relay hands a connection every publication the layer holds before the connection's writer
    runs: each wakes the writer (only the first finds it waiting), and every trade goes out, in order,
    with nothing failing on the way."""
    from channels.layers import get_channel_layer

    seller = django_user_model.objects.create_user("seller").pk
    buyer = django_user_model.objects.create_user("buyer").pk

    async def scenario() -> None:
        comm = await connect()
        pub = publisher.installed()
        assert pub is not None
        await pub.aclose()  # the publications are sent by hand, all at once
        await request(comm, {"action": "subscribe", "symbol": "AAPL", "feed_types": ["trades"]})
        publications = []
        for _ in range(3):
            before = pub.pending()
            await aplace(seller, "sell", "150.00", "1")
            await aplace(buyer, "buy", "150.00", "1")
            while pub.pending() < before + 2:
                await asyncio.sleep(0.005)
            publications.append(await pub.collect())
        layer = get_channel_layer()
        assert layer is not None
        for messages in publications:  # no turn of the loop in between: the in-memory layer never waits
            for group, message in messages:
                await layer.group_send(group, message)
        got = await receive_until(comm, lambda m: m.get("trade_id") == "AAPL-3")
        assert [m["trade_id"] for m in got if m["type"] == "trade"] == ["AAPL-1", "AAPL-2", "AAPL-3"]
        await comm.disconnect()

    with caplog.at_level("ERROR", logger="marketdata.hub"):
        run(scenario)
    assert not caplog.records
