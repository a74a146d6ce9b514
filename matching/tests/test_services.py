"""The embedded default end to end: the lazily started matcher thread, its journal, the projector
writing the ORM, a restart that recovers both, and /health reporting them."""

from __future__ import annotations

import pytest
from django.utils import timezone

from matching import services
from matching.engine import AmendOrder, NewOrder, OrderAccepted, OrderType, Side, Trade
from matching.models import Order
from matching.models import Trade as TradeRow
from matching.worker.embedded import EmbeddedBus


def buy(user, qty=5, price=10_000, coid=None):
    return NewOrder(0, user.id, "AAPL", Side.BUY, qty, price, client_order_id=coid)


def sell(user, qty=5, price=10_000):
    return NewOrder(0, user.id, "AAPL", Side.SELL, qty, price)


@pytest.mark.django_db(transaction=True)
def test_orders_reach_the_matcher_and_the_database_and_survive_a_restart(embedded, django_user_model, client):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    assert services.command_bus_health()["matcher"]["detail"].startswith("not started")  # not before an order

    reply = services.command_bus().submit(buy(alice, coid="a-1"), timeout=5)
    assert isinstance(reply.events[0], OrderAccepted), reply
    health = client.get("/health").json()
    assert health["components"]["matcher"]["seq"] == reply.seq
    assert health["components"]["projector"]["status"] == "ok"
    services.command_bus_stop()  # the projector writes out everything on the way down
    assert Order.objects.get(order_id=reply.order_id).status == "open"

    bus = services.command_bus()  # a new process, as far as the matcher knows: recovers its journal
    assert bus.submit(buy(alice, coid="a-1"), timeout=5).duplicate
    fill = bus.submit(sell(bob), timeout=5)
    assert [type(e) for e in fill.events].count(Trade) == 1
    services.command_bus_stop()
    assert Order.objects.get(order_id=reply.order_id).status == "filled"
    assert TradeRow.objects.filter(maker_order_id=reply.order_id, taker_order_id=fill.order_id).count() == 1
    assert Order.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_health_is_503_once_the_matcher_has_failed(embedded, django_user_model, client):
    from matching.worker.bus import Unavailable

    alice = django_user_model.objects.create_user("alice")
    bus = services.command_bus()
    assert isinstance(bus, EmbeddedBus) and bus.matcher.journal is not None
    bus.submit(buy(alice), timeout=5)
    bus.matcher.journal.close()  # the next group commit fails: the matcher stops taking commands
    with pytest.raises(Unavailable):
        bus.submit(buy(alice), timeout=5)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["components"]["matcher"]["status"] == "down"


def market_data_seen(client) -> dict:
    """Everything the trade history feeds, as the API serves it."""
    return {
        "trades": client.get("/api/trades/AAPL?limit=200").json(),
        "ticker": client.get("/api/ticker/AAPL").json(),
        **{interval: client.get(f"/api/candles/AAPL?interval={interval}&limit=500").json()
           for interval in ("1m", "5m", "1h", "1d")},
    }


def trade_a_little(bus, alice, bob, rounds: int) -> list:
    """Each round: alice bids, bob sells into the best bid (a trade), alice bids again lower; the trades."""
    replies = []
    for n in range(rounds):
        replies.append(bus.submit(buy(alice, qty=3, price=10_000 + n), timeout=5))
        replies.append(bus.submit(sell(bob, qty=2, price=9_000), timeout=5))
        replies.append(bus.submit(buy(alice, qty=1, price=9_500 - n), timeout=5))
    return trades_of(replies)


def trades_of(replies) -> list:
    return [e for r in replies for e in r.events if isinstance(e, Trade)]


@pytest.mark.django_db(transaction=True)
def test_market_data_survives_a_restart(embedded, settings, tmp_path, django_user_model, client):
    from matching.worker.snapshots import SnapshotStore

    settings.MATCHER_SNAPSHOT_EVERY = 5  # 16 commands: the last snapshot at 15
    alice, bob = django_user_model.objects.create_user("alice"), django_user_model.objects.create_user("bob")
    client.force_login(alice)
    trades = trade_a_little(services.command_bus(), alice, bob, 5)
    last = services.command_bus().submit(sell(bob, qty=4, price=9_000), timeout=5)
    trades += trades_of([last])
    before = market_data_seen(client)
    assert len(before["trades"]) == len(trades) > 6  # the last sell took several bids
    assert before["ticker"]["volume_24h"] == str(sum(t.qty for t in trades))
    assert sum(c["trades"] for c in before["1d"]) == len(trades)
    services.command_bus_stop()
    latest = SnapshotStore(tmp_path / "shard-0-snapshots").latest()
    assert latest is not None
    snapshot_seq = latest[0]
    assert 2 < snapshot_seq < last.seq  # trades on both sides of the last snapshot

    assert market_data_seen(client) == before  # a new process: rebuilt from the Trade rows
    trades += trades_of([services.command_bus().submit(sell(bob, qty=1, price=9_000), timeout=5)])
    after = market_data_seen(client)  # and it carries on
    assert len(after["trades"]) == len(trades) == len(before["trades"]) + 1
    assert after["ticker"]["volume_24h"] == str(sum(t.qty for t in trades))
    assert sum(c["trades"] for c in after["1d"]) == len(trades)


@pytest.mark.django_db(transaction=True)
def test_market_data_survives_a_crash_with_the_projection_behind(embedded, settings, django_user_model,
                                                                 client, monkeypatch):
    """The projector could not write the last trades before the process died: the restart takes the
    rows up to the projection's cursor and the rest from the journal's replay, each trade once."""
    from django.db import DatabaseError

    from matching import projector

    settings.MATCHER_SNAPSHOT_EVERY = 5
    alice, bob = django_user_model.objects.create_user("alice"), django_user_model.objects.create_user("bob")
    client.force_login(alice)
    bus = services.command_bus()
    trades = trade_a_little(bus, alice, bob, 3)
    writer = services.embedded_projector()
    assert writer is not None
    writer.flush(timeout=5)
    projected = TradeRow.objects.count()
    assert projected == len(trades) > 0

    def database_down(*args, **kwargs):
        raise DatabaseError("the database is down")

    monkeypatch.setattr(projector, "write_replies", database_down)
    try:
        trades += trade_a_little(bus, alice, bob, 3)
        before = market_data_seen(client)
    finally:
        writer.stop(flush=False)  # the process dies: what the projector had queued is lost
        services.command_bus_stop()
        monkeypatch.undo()
    assert len(before["trades"]) == len(trades) > projected
    assert TradeRow.objects.count() == projected

    assert market_data_seen(client) == before
    services.command_bus_stop()  # the projector has caught up meanwhile
    assert sorted(TradeRow.objects.values_list("trade_id", flat=True)) == [t.trade_id for t in trades]


@pytest.mark.django_db(transaction=True)
def test_the_bus_starts_and_stops_with_the_server(embedded):
    """The ASGI lifespan events (uvicorn sends them) start the embedded matcher before any request and
    stop it cleanly."""
    from asgiref.sync import async_to_sync
    from channels.testing import ApplicationCommunicator

    from exchange.asgi import application

    assert "seq" not in services.command_bus_health()["matcher"]  # not started

    async def run() -> tuple[dict, dict, dict]:
        server = ApplicationCommunicator(application, {"type": "lifespan"})
        await server.send_input({"type": "lifespan.startup"})
        started = await server.receive_output(10)
        health = services.command_bus_health()
        await server.send_input({"type": "lifespan.shutdown"})
        stopped = await server.receive_output(10)
        return started, health, stopped

    started, health, stopped = async_to_sync(run)()
    assert started == {"type": "lifespan.startup.complete"}
    assert health["matcher"]["seq"] >= 0  # started, nobody asked yet
    assert stopped == {"type": "lifespan.shutdown.complete"}
    assert "seq" not in services.command_bus_health()["matcher"]  # stopped


def test_with_balance_shards_orders_and_buy_amendments_are_funded_as_the_web_tier_computes(
        db, settings, django_user_model):
    """matching.services in balance mode (issue 13): what a new order reserves (qty x price x the
    instrument's cash per tick and lot; a sell nothing), and an amendment of a resting buy names the
    order's ticket and what it will reserve; a sell's amendment needs nothing from R1."""
    from matching.worker.balance_codec import PlaceAmend
    from matching.worker.matcher import ORDER_ID_STRIDE
    from matching.worker.redis_bus import RedisBus

    settings.EXCHANGE_MODE, settings.BALANCE_SHARDS = "production", 2
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # never reached: nothing is sent
    settings.MATCHER_SHARDS = {0: ["AAPL"], 1: ["MSFT"]}
    assert services.balance_mode() and services.balance_shard_of(7) == 1
    bus = RedisBus(settings.REDIS_URL, {"AAPL": 0, "MSFT": 1})
    try:
        spec = services.OrderSpec("MSFT", Side.BUY, OrderType.LIMIT, 3, 10_050)
        funded = services.place(services.new_order(user_id=7, order=spec), bus)
        assert (funded.matching_shard, funded.amount) == (1, 3 * 10_050 * 100)  # tick 0.01 x lot 1: 100
        spec = services.OrderSpec("MSFT", Side.SELL, OrderType.LIMIT, 3, 10_050)
        assert services.place(services.new_order(user_id=7, order=spec), bus).amount == 0
    finally:
        bus.close()
    user = django_user_model.objects.create_user("funded")
    order_id = ORDER_ID_STRIDE + 5
    common = {"user": user, "symbol": "MSFT", "order_type": "limit", "tif": "gtc", "stp": "cancel_newest",
              "status": "open", "created_seq": 1, "updated_seq": 1, "created_at": timezone.now(),
              "updated_at": timezone.now()}
    Order.objects.create(order_id=order_id, side="buy", price_ticks=10_000, qty_lots=10, remaining_lots=6,
                         ticket=10**12 + 3, **common)
    Order.objects.create(order_id=order_id + 1, side="sell", price_ticks=10_000, qty_lots=10,
                         remaining_lots=6, ticket=10**12 + 4, **common)
    buy, sell = Order.objects.get(order_id=order_id), Order.objects.get(order_id=order_id + 1)
    up = services.amend_place(AmendOrder(order_id, user.pk, "MSFT", 12, 10_100), buy)
    assert isinstance(up, PlaceAmend)
    assert (up.matching_shard, up.ticket, up.needed) == (1, 10**12 + 3, (6 + 2) * 10_100 * 100)
    assert services.amend_place(AmendOrder(order_id + 1, user.pk, "MSFT", None, 10_100), sell) is None
    not_theirs = AmendOrder(order_id, user.pk + 1, "MSFT", None, 10_100)
    assert services.amend_place(not_theirs, buy) is None
