"""Admin changes reach the real embedded matcher's risk stage as commands, take effect on the next order
without a restart, and leave an audit row naming who sent them; a matcher that does not take them is
an error message in the admin, never a 500."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from exchange.models import Instrument
from matching import services as matching_services
from matching.engine import OrderRejected
from matching.models import AuditEvent, Order
from matching.worker.embedded import EmbeddedBus
from risk import services
from risk.config import worker_config
from risk.core import AccountUpdate, AdminApplied, HeldOrderReleased
from risk.models import Account, RiskLimit, UserRiskLimit

pytestmark = pytest.mark.django_db(transaction=True)

LIMITS = "/admin/risk/risklimit/"


@pytest.fixture
def aapl(risk_matcher):
    """AAPL with the seeded limits (a transactional test before may have flushed them) sent to the matcher."""
    instrument = Instrument.objects.get(symbol="AAPL")
    RiskLimit.objects.update_or_create(instrument=instrument, defaults={
        "max_position": Decimal(10_000), "max_order_size": Decimal(1_000), "price_band_pct": Decimal(10),
        "hold_volume_pct": Decimal(5), "reference_daily_volume": Decimal(100_000)})
    services.risk_limit_changed(instrument=instrument)
    return instrument


@pytest.fixture
def alice(aapl, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("alice", password="pw"))
    return client


def submit(client: Client, **fields: str):
    order = {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00", **fields}
    return client.post("/api/submit", order, content_type="application/json")


def form(limit: RiskLimit, **changes: str) -> dict[str, str]:
    fields = ("max_position", "max_order_size", "price_band_pct", "hold_volume_pct", "reference_daily_volume",
              "reference_price", "circuit_move_pct", "circuit_window_seconds", "circuit_halt_seconds")
    data = {name: "" if getattr(limit, name) is None else str(getattr(limit, name)) for name in fields}
    return {**data, **changes}


def messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def stop_the_matcher() -> None:
    """The matcher thread ends: the bus refuses at once."""
    bus = matching_services.command_bus()
    assert isinstance(bus, EmbeddedBus)
    bus.stop()


def test_a_changed_limit_applies_to_the_next_order(admin_client, admin_user, alice, aapl):
    assert submit(alice, quantity="800").status_code == 201
    limit = aapl.risk_limit
    response = admin_client.post(f"{LIMITS}{limit.pk}/change/", form(limit, max_order_size="500"))
    assert response.status_code == 302, messages(response)
    refused = submit(alice, quantity="800")
    assert refused.status_code == 422
    assert refused.json()["code"] == "order_size"
    assert submit(alice, quantity="500").status_code == 201
    audit = AuditEvent.objects.get(kind=AuditEvent.AdminKind.RISK_LIMIT_SET, actor=admin_user)
    assert (audit.symbol, audit.detail["outcome"]) == ("AAPL", "applied")
    assert audit.detail["command"]["config"]["max_order_qty"] == 500
    assert audit.seq > 0


def test_deleting_the_limit_lifts_it(admin_client, alice, aapl):
    response = admin_client.post(f"{LIMITS}{aapl.risk_limit.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, messages(response)
    assert not RiskLimit.objects.filter(instrument=aapl).exists()
    assert submit(alice, quantity="5000").status_code == 201


def test_a_user_override_wins_until_deleted(admin_client, alice, aapl, django_user_model):
    user = django_user_model.objects.get(username="alice")
    response = admin_client.post("/admin/risk/userrisklimit/add/", {
        "user": user.pk, "instrument": aapl.pk, "max_position": "", "max_order_size": "2000"})
    assert response.status_code == 302, messages(response)
    assert submit(alice, quantity="1500").status_code == 201
    override = UserRiskLimit.objects.get(user=user)
    admin_client.post(f"/admin/risk/userrisklimit/{override.pk}/delete/", {"post": "yes"})
    assert submit(alice, quantity="1500").json()["code"] == "order_size"
    kinds = list(AuditEvent.objects.filter(user=user).values_list("kind", flat=True))
    assert kinds.count(AuditEvent.AdminKind.USER_LIMIT_SET) == 2


def test_halt_and_resume_from_the_instrument_admin(admin_client, admin_user, alice, aapl):
    response = admin_client.post("/admin/exchange/instrument/", {"action": "halt",
                                                                 "_selected_action": [aapl.pk]})
    assert "Halt sent to the matcher for AAPL." in messages(response)
    halted = submit(alice)
    assert (halted.status_code, halted.json()["code"]) == (422, "halted")
    response = admin_client.post("/admin/exchange/instrument/", {"action": "resume",
                                                                 "_selected_action": [aapl.pk]})
    assert "Resume sent to the matcher for AAPL." in messages(response)
    assert submit(alice).status_code == 201
    audit = AuditEvent.objects.filter(actor=admin_user, symbol="AAPL").order_by("seq")
    assert [a.kind for a in audit] == ["halt", "resume"]
    assert audit[0].detail["command"]["reason"] == "halted by admin"
    # resuming what is not halted is refused by the matcher: an error message, recorded all the same
    response = admin_client.post("/admin/exchange/instrument/", {"action": "resume",
                                                                 "_selected_action": [aapl.pk]})
    assert any("not_halted" in m for m in messages(response))
    resumed = AuditEvent.objects.filter(kind="resume").last()
    assert resumed is not None and resumed.detail["outcome"] == "rejected"


def test_deposit_and_a_refused_withdrawal(admin_client, admin_user, alice, django_user_model):
    user = django_user_model.objects.get(username="alice")
    response = admin_client.post("/admin/risk/account/adjust-cash/", {"username": "alice", "amount": "250.5"})
    assert response.status_code == 302
    assert any(m.startswith("Deposited 250.5000 for alice") for m in messages(response))
    audit = AuditEvent.objects.get(kind=AuditEvent.AdminKind.CASH_ADJUST)
    assert (audit.user, audit.actor, audit.detail["amount"]) == (user, admin_user, "250.5")
    assert audit.detail["command"]["amount"] == 2_505_000
    assert "AccountUpdate" in audit.detail["events"]
    too_much = admin_client.post("/admin/risk/account/adjust-cash/", {"username": "alice",
                                                                      "amount": "-2000000"})
    assert too_much.status_code == 200  # the form again
    assert any("below_reserved" in m for m in messages(too_much))


def test_the_service_reports_the_account_the_matcher_holds(alice, admin_user, django_user_model):
    user = django_user_model.objects.get(username="alice")
    assert submit(alice, quantity="10", price="100.00").status_code == 201  # reserves 1,000
    reply = services.adjust_cash(user=user, amount=Decimal("-0.0001"), admin=admin_user)
    update = next(e for e in reply.events if isinstance(e, AccountUpdate))
    assert (update.cash, update.reserved) == (10_000_000_000 - 1, 10_000_000)
    with pytest.raises(services.RiskCommandRejected, match="below_reserved"):
        services.adjust_cash(user=user, amount=Decimal("-999999"), admin=admin_user)


def test_held_orders_are_released_or_rejected(alice, admin_user, aapl):
    RiskLimit.objects.filter(instrument=aapl).update(max_order_size=None,
                                                     reference_daily_volume=Decimal(1_000))
    services.risk_limit_changed(instrument=aapl, admin=admin_user)  # now orders above 50 wait for an admin
    first = submit(alice, quantity="100", client_order_id="big-1")
    second = submit(alice, quantity="60", client_order_id="big-2")
    assert first.status_code == second.status_code == 201
    first_id, second_id = first.json()["order_id"], second.json()["order_id"]
    released = services.release_held_order(order_id=first_id, admin=admin_user)
    assert any(isinstance(e, HeldOrderReleased) and e.order_id == first_id for e in released.events)
    rejected = services.reject_held_order(order_id=second_id, admin=admin_user)
    assert [e.reason for e in rejected.events if isinstance(e, OrderRejected)] == ["held_rejected"]
    with pytest.raises(services.RiskCommandRejected, match="unknown_held_order"):
        services.release_held_order(order_id=second_id, admin=admin_user)
    kinds = list(AuditEvent.objects.filter(actor=admin_user, order_id__in=[first_id, second_id])
                 .order_by("seq").values_list("kind", "detail__outcome"))
    assert kinds == [("held_release", "applied"), ("held_reject", "applied"), ("held_release", "rejected")]


def test_an_unavailable_matcher_is_an_error_message(admin_client, aapl):
    stop_the_matcher()
    limit = aapl.risk_limit
    response = admin_client.post(f"{LIMITS}{limit.pk}/change/", form(limit, max_order_size="7"))
    assert response.status_code == 302
    assert any(m.startswith("Not saved: the matcher is not running") for m in messages(response))
    assert RiskLimit.objects.get(pk=limit.pk).max_order_size == Decimal(1_000)  # rolled back
    response = admin_client.post("/admin/exchange/instrument/", {"action": "halt",
                                                                 "_selected_action": [aapl.pk]})
    assert response.status_code == 302
    assert any("not running" in m for m in messages(response))
    response = admin_client.post("/admin/risk/account/adjust-cash/", {"username": "admin", "amount": "1"})
    assert response.status_code == 200
    assert any("not running" in m for m in messages(response))
    delete = admin_client.post(f"{LIMITS}{limit.pk}/delete/", {"post": "yes"})
    assert any(m.startswith("Not deleted") for m in messages(delete))
    assert RiskLimit.objects.filter(pk=limit.pk).exists()


def test_the_worker_config_applies_again_at_any_time(risk_matcher):
    replies = [matching_services.command_bus().submit(cmd, 5) for cmd in worker_config()]
    assert all(any(isinstance(e, AdminApplied) for e in r.events) for r in replies)


def test_the_projection_follows_the_commands(alice, admin_user, aapl, django_user_model):
    user = django_user_model.objects.get(username="alice")
    services.adjust_cash(user=user, amount=Decimal(5), admin=admin_user)
    services.halt_instrument(symbol="AAPL", reason="test", admin=admin_user)
    matching_services.command_bus_stop()  # writes the projection out
    assert Account.objects.get(user=user).cash == Decimal("1000005.0000")
    aapl.refresh_from_db()
    assert (aapl.status, aapl.halt_reason) == ("halted", "test")



def test_the_held_queue_in_the_admin(admin_client, alice, aapl, admin_user, django_user_model):
    """Hold, release, fill; hold, reject: end to end through the API, the admin and the projection."""
    RiskLimit.objects.filter(instrument=aapl).update(max_order_size=None,
                                                     reference_daily_volume=Decimal(1_000))
    services.risk_limit_changed(instrument=aapl, admin=admin_user)
    ids = [submit(alice, quantity="100", client_order_id=f"big-{n}").json()["order_id"] for n in (1, 2)]
    matching_services.command_bus_stop()  # writes the projection out
    queue = admin_client.get("/admin/risk/heldorder/")
    assert sorted(queue.context["cl"].result_list.values_list("order_id", flat=True)) == ids
    pks = dict(Order.objects.filter(order_id__in=ids).values_list("order_id", "pk"))
    released = admin_client.post("/admin/risk/heldorder/", {"action": "release",
                                                            "_selected_action": [pks[ids[0]]]})
    assert any(m.startswith(f"Released #{ids[0]}") for m in messages(released))
    admin_client.post("/admin/risk/heldorder/", {"action": "reject", "_selected_action": [pks[ids[1]]]})
    matching_services.command_bus_stop()
    statuses = dict(Order.objects.filter(order_id__in=ids).values_list("order_id", "status"))
    assert statuses == {ids[0]: "open", ids[1]: "rejected"}
    assert Order.objects.get(order_id=ids[1]).reject_reason == "held_rejected"
    assert admin_client.get("/admin/risk/heldorder/").context["cl"].result_count == 0

    # the released order rests in the book and fills like any other; its owner sees every step
    seller = Client()
    seller.force_login(django_user_model.objects.create_user("seller"))
    for _ in range(2):  # 50 is the largest order the hold rule lets through
        fill = submit(seller, side="sell", quantity="50", price="100.00")
        assert fill.status_code == 201 and fill.json()["status"] == "filled", fill.json()
    matching_services.command_bus_stop()
    assert Order.objects.get(order_id=ids[0]).status == "filled"
    mine = alice.get(f"/api/orders/{ids[0]}").json()
    assert (mine["status"], mine["filled_quantity"]) == ("filled", "100")
    account = alice.get("/api/account").json()
    assert [(p["symbol"], p["quantity"]) for p in account["positions"]] == [("AAPL", "100")]


def test_an_instrument_added_in_the_admin_trades_at_once(admin_client, alice):
    response = admin_client.post("/admin/exchange/instrument/add/", {
        "symbol": "NEW", "name": "New Corp.", "tick_size": "0.05", "lot_size": "10"})
    assert response.status_code == 302, response.content
    resting = submit(alice, symbol="NEW", side="sell", quantity="20", price="10.05")
    assert (resting.status_code, resting.json()["status"]) == (201, "open"), resting.json()
    assert alice.get("/api/book/NEW").json()["asks"] == [{"price": "10.05", "quantity": "20"}]
    matching_services.command_bus_stop()
    audit = AuditEvent.objects.get(symbol="NEW", kind="risk_limit_set")
    assert audit.detail["outcome"] == "applied"
    assert audit.detail["command"]["config"]["cash_per_tick_lot"] == 5_000  # 0.05 x 10 in 0.0001 units


def test_an_instrument_saved_while_the_matcher_is_down_is_kept_with_a_warning(admin_client, risk_matcher):
    stop_the_matcher()
    aapl = Instrument.objects.get(symbol="AAPL")
    response = admin_client.post(f"/admin/exchange/instrument/{aapl.pk}/change/", {
        "symbol": "AAPL", "name": "Apple", "tick_size": "0.01", "lot_size": "1"}, follow=True)
    assert any("saved; the matcher takes it at its next start" in m for m in messages(response))
    assert Instrument.objects.get(symbol="AAPL").name == "Apple"
