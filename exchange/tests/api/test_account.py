"""GET/PATCH /api/account and GET /api/user/{user_id}/positions: balances and positions from the
projection, P&L against the last trade the matcher published; only my own unless I am staff."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client

from exchange.models import Instrument
from matching import services
from matching.models import Order
from risk.core import AccountUpdate
from risk.models import Position
from risk.projection import apply_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def aapl():
    """A transactional test before may have flushed the seeded instruments."""
    defaults = {"name": "Apple Inc.", "tick_size": "0.01", "lot_size": "1"}
    return Instrument.objects.get_or_create(symbol="AAPL", defaults=defaults)[0]


@pytest.fixture
def alice_user(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw")


@pytest.fixture
def alice(alice_user, client):
    client.force_login(alice_user)
    return client


def login(django_user_model, username: str, **flags: bool) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username, password="pw", **flags))
    return client


def trade(django_user_model, price: str) -> None:
    """A trade in AAPL between two others, so the ticker's last price is `price`."""
    buyer, seller = login(django_user_model, "buyer"), login(django_user_model, "seller")
    order = {"symbol": "AAPL", "quantity": "1", "price": price}
    bought = buyer.post("/api/submit", {**order, "side": "buy"}, content_type="application/json")
    assert bought.status_code == 201
    sold = seller.post("/api/submit", {**order, "side": "sell"}, content_type="application/json")
    assert sold.json()["status"] == "filled", sold.json()


def test_an_account_before_its_first_trade(alice, alice_user):
    body = alice.get("/api/account").json()
    assert body == {"user_id": alice_user.pk, "username": "alice", "cash": "1000000.0000",
                    "reserved": "0.0000", "available": "1000000.0000", "stp_default": "cancel_newest",
                    "positions": []}


def test_balances_from_the_projection(alice, alice_user):
    apply_events([(4, AccountUpdate(alice_user.pk, 50_001_234, 10_000_000, 10**18))])  # shard 0 reports
    body = alice.get("/api/account").json()
    assert (body["cash"], body["reserved"], body["available"]) == ("5000.1234", "1000.0000", "4000.1234")


def test_positions_valued_at_the_last_trade(embedded, alice, alice_user, django_user_model):
    aapl = Instrument.objects.get(symbol="AAPL")
    Position.objects.create(user=alice_user, instrument=aapl, qty=Decimal(10), cost=Decimal("1000.0000"),
                            realised=Decimal("25.5000"), seq=3)
    before = alice.get("/api/account").json()["positions"]
    assert before == [{"symbol": "AAPL", "quantity": "10", "average_price": "100.00", "last_price": None,
                       "market_value": None, "realised_pnl": "25.5000", "unrealised_pnl": None}]
    trade(django_user_model, "110.50")
    after = alice.get("/api/account").json()["positions"][0]
    assert (after["last_price"], after["market_value"], after["unrealised_pnl"]) == ("110.50", "1105.0000",
                                                                                      "105.0000")


def test_a_short_and_a_flat_position(embedded, alice, alice_user, django_user_model):
    aapl = Instrument.objects.get(symbol="AAPL")
    odd = Instrument.objects.create(symbol="ODD", name="o", tick_size=Decimal("0.05"),
                                    lot_size=Decimal("0.1"))
    Position.objects.create(user=alice_user, instrument=aapl, qty=Decimal(-4), cost=Decimal("-400.0000"),
                            seq=1)
    Position.objects.create(user=alice_user, instrument=odd, qty=Decimal(0), cost=Decimal(0),
                            realised=Decimal("-3.2500"), seq=1)
    trade(django_user_model, "90.00")
    short, flat = alice.get("/api/account").json()["positions"]
    assert (short["quantity"], short["average_price"], short["unrealised_pnl"]) == ("-4", "100.00",
                                                                                    "40.0000")
    assert flat == {"symbol": "ODD", "quantity": "0.0", "average_price": None, "last_price": None,
                    "market_value": "0.0000", "realised_pnl": "-3.2500", "unrealised_pnl": "0.0000"}


def test_set_my_stp_default_and_orders_use_it(embedded, alice, alice_user):
    response = alice.patch("/api/account", {"stp_default": "cancel_oldest"}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["stp_default"] == "cancel_oldest"
    assert response.json()["cash"] == "1000000.0000"  # the row it created holds the starting cash
    bad = alice.patch("/api/account", {"stp_default": "sometimes"}, content_type="application/json")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_request")
    placed = alice.post("/api/submit", {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "100.00"},
                        content_type="application/json")
    named = alice.post("/api/submit", {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "100.00",
                                       "stp": "none"}, content_type="application/json")
    services.command_bus_stop()  # writes the projection out
    assert Order.objects.get(order_id=placed.json()["order_id"]).stp == "cancel_oldest"
    assert Order.objects.get(order_id=named.json()["order_id"]).stp == "none"


def test_my_positions_by_user_id(alice, alice_user, aapl):
    Position.objects.create(user=alice_user, instrument=aapl, qty=Decimal(0),
                            cost=Decimal(0), realised=Decimal(7), seq=1)
    response = alice.get(f"/api/user/{alice_user.pk}/positions")
    assert response.status_code == 200
    assert [p["realised_pnl"] for p in response.json()] == ["7.0000"]


def test_others_positions_are_404_unless_staff(alice, alice_user, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    for target in (bob.pk, 999_999):
        response = alice.get(f"/api/user/{target}/positions")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    staff = login(django_user_model, "desk", is_staff=True)
    assert staff.get(f"/api/user/{alice_user.pk}/positions").json() == []
    assert staff.get("/api/user/999999/positions").status_code == 404


def test_unauthenticated_calls_are_401():
    anonymous = Client()
    patch = anonymous.patch("/api/account", {"stp_default": "none"}, content_type="application/json")
    for response in (anonymous.get("/api/account"), anonymous.get("/api/user/1/positions"), patch):
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"


def test_the_schema_documents_them(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/account", "/api/user/{user_id}/positions"):
        assert f"  {path}:" in text, path
    assert "stp_default" in text and "unrealised_pnl" in text
