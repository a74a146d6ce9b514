"""The embedded default end to end: the lazily started matcher thread, its journal, the projector
writing the ORM, a restart that recovers both, and /health reporting them."""

from __future__ import annotations

import pytest

from matching import services
from matching.engine import NewOrder, OrderAccepted, Side, Trade
from matching.models import Order
from matching.models import Trade as TradeRow


def buy(user, qty=5, price=10_000, coid=None):
    return NewOrder(0, user.id, "AAPL", Side.BUY, qty, price, client_order_id=coid)


def sell(user, qty=5, price=10_000):
    return NewOrder(0, user.id, "AAPL", Side.SELL, qty, price)


@pytest.mark.django_db(transaction=True)
def test_orders_reach_the_matcher_and_the_database_and_survive_a_restart(embedded, django_user_model, client):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    assert services.command_bus_health() == {}  # nothing started before the first command

    reply = services.command_bus().submit(buy(alice, coid="a-1"), timeout=5)
    assert isinstance(reply.events[0], OrderAccepted), reply
    health = client.get("/health").json()
    assert health["components"]["matcher"]["seq"] == 1
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
    bus.submit(buy(alice), timeout=5)
    bus.matcher.journal.close()  # the next group commit fails: the matcher stops taking commands
    with pytest.raises(Unavailable):
        bus.submit(buy(alice), timeout=5)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["components"]["matcher"]["status"] == "down"
