"""The projection's models and their admin: orders and trades read-mostly, the audit trail read-only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from matching.engine import Side
from matching.models import AuditEvent, Order
from matching.tests.test_projector import Feed

pytestmark = pytest.mark.django_db
AUDIT = "/admin/matching/auditevent/"


@pytest.fixture(autouse=True)
def _fast_test_settings(settings):
    """Render admin pages without collectstatic, and hash passwords cheaply."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def traded(django_user_model):
    """Two users' orders and one trade between them, through a real matcher and the projector."""
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    feed = Feed()
    ask = feed.order(alice, Side.SELL, 5, 100, client_order_id="ask-1")
    bid = feed.order(bob, Side.BUY, 2, 100)
    assert ask is not None and bid is not None
    return alice, bob, Order.objects.get(pk=ask.pk), Order.objects.get(pk=bid.pk)


def test_average_price(traded):
    _, _, ask, bid = traded
    assert bid.average_price_ticks == Decimal(100)
    ask.filled_lots, ask.notional_ticks_lots = 3, Decimal(301)
    assert ask.average_price_ticks == Decimal(301) / 3
    ask.filled_lots = 0
    assert ask.average_price_ticks is None


def test_client_order_id_is_unique_per_user_when_set(traded):
    _, bob, ask, bid = traded

    def copy(order, **changes):
        fields = {f.attname: getattr(order, f.attname) for f in Order._meta.fields if f.name != "id"}
        return Order(**{**fields, "order_id": order.order_id + 100, **changes})

    copy(bid).save()  # no client id twice: fine
    copy(ask, user_id=bob.pk).save()  # the same client id, another user: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        copy(ask, order_id=ask.order_id + 200).save()


def test_order_and_trade_admin_lists_load(admin_client, traded):
    _, _, ask, _ = traded
    response = admin_client.get("/admin/matching/order/", {"status__exact": "partially_filled", "q": "ask-1"})
    assert response.status_code == 200
    assert str(ask.order_id).encode() in response.content
    for query in ({"q": str(ask.order_id)}, {"q": "alice"}, {"side__exact": "sell", "symbol": "AAPL"}):
        assert admin_client.get("/admin/matching/order/", query).status_code == 200
    assert admin_client.get(f"/admin/matching/order/{ask.pk}/change/").status_code == 200
    assert admin_client.get("/admin/matching/order/add/").status_code == 403
    assert admin_client.get("/admin/matching/trade/", {"q": "bob"}).status_code == 200


def test_audit_admin_is_read_only(admin_client, traded):
    alice, _, ask, _ = traded
    event = AuditEvent.objects.filter(order_id=ask.order_id).first()
    assert event is not None
    response = admin_client.get(AUDIT, {"kind__exact": "accepted", "user__id__exact": alice.pk, "q": "alice"})
    assert response.status_code == 200
    assert b"accepted" in response.content
    assert admin_client.get(AUDIT, {"at__year": event.at.year}).status_code == 200
    assert admin_client.get(f"{AUDIT}add/").status_code == 403
    assert admin_client.post(f"{AUDIT}add/", {"kind": "accepted"}).status_code == 403
    assert admin_client.post(f"{AUDIT}{event.pk}/change/", {"kind": "canceled"}).status_code == 403
    assert admin_client.get(f"{AUDIT}{event.pk}/delete/").status_code == 403
    admin_client.post(AUDIT, {"action": "delete_selected", "_selected_action": [event.pk]})
    assert AuditEvent.objects.filter(pk=event.pk, kind="accepted").exists()
    assert AuditEvent.objects.count() == 4
