"""Who reaches the risk admin and what they may do there (no matcher involved)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from exchange.models import Instrument
from matching.models import AuditEvent, Order
from risk.models import Account, Position, RiskAlert, RiskLimit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_settings")]

NOW = datetime(2026, 1, 2, tzinfo=UTC)
LIMITS = "/admin/risk/risklimit/"


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("desk", is_staff=True))
    return client


@pytest.fixture
def trader(django_user_model):
    return django_user_model.objects.create_user("trader")


def aapl_limit() -> RiskLimit:
    return RiskLimit.objects.get(instrument__symbol="AAPL")


def test_staff_see_the_limits_but_cannot_change_them(staff):
    page = staff.get(LIMITS)
    assert page.status_code == 200
    assert b"AAPL" in page.content and b"GOOGL" in page.content
    change = f"{LIMITS}{aapl_limit().pk}/change/"
    view = staff.get(change)
    assert view.status_code == 200
    assert b'name="max_position"' not in view.content  # read-only
    assert staff.post(change, {"max_position": "1"}).status_code == 403
    assert staff.get(f"{LIMITS}add/").status_code == 403
    assert staff.post(f"{LIMITS}{aapl_limit().pk}/delete/", {"post": "yes"}).status_code == 403
    assert aapl_limit().max_position == Decimal(10_000)


@pytest.mark.parametrize("model", ["userrisklimit", "account", "position", "heldorder", "riskalert"])
def test_staff_see_every_risk_page(staff, model):
    assert staff.get(f"/admin/risk/{model}/").status_code == 200


def test_superusers_may_change_limits(admin_client):
    page = admin_client.get(f"{LIMITS}{aapl_limit().pk}/change/")
    assert page.status_code == 200
    assert b'name="max_position"' in page.content
    assert admin_client.get(f"{LIMITS}add/").status_code == 200
    assert admin_client.get("/admin/risk/userrisklimit/add/").status_code == 200


def test_an_invalid_limit_is_a_form_error_not_a_command(admin_client):
    response = admin_client.post(f"{LIMITS}{aapl_limit().pk}/change/", {
        "max_position": "10.5", "max_order_size": "", "price_band_pct": "", "hold_volume_pct": "5",
        "reference_daily_volume": "0", "reference_price": "", "circuit_move_pct": "",
        "circuit_window_seconds": "", "circuit_halt_seconds": ""})
    assert response.status_code == 200  # the form again, with the error
    assert b"not a whole multiple" in response.content
    assert aapl_limit().max_position == Decimal(10_000)
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("staff_flag", [None, False])
def test_others_are_sent_to_the_admin_login(client, django_user_model, staff_flag):
    if staff_flag is False:
        client.force_login(django_user_model.objects.create_user("nobody"))
    for path in (LIMITS, "/admin/risk/account/", "/admin/risk/account/adjust-cash/",
                 "/admin/risk/heldorder/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url.startswith("/admin/login/")


def test_accounts_and_positions_are_read_only(admin_client, trader):
    account = Account.objects.create(user=trader, cash=Decimal("1000.5000"), reserved=Decimal(100), seq=3)
    Position.objects.create(user=trader, instrument=Instrument.objects.get(symbol="AAPL"), qty=Decimal(4),
                            cost=Decimal("402.0000"), seq=3)
    listing = admin_client.get("/admin/risk/account/")
    assert b"900.5000" in listing.content  # available
    assert b"Deposit or withdraw cash" in listing.content
    assert admin_client.get("/admin/risk/account/add/").status_code == 403
    assert b'name="cash"' not in admin_client.get(f"/admin/risk/account/{account.pk}/change/").content
    positions = admin_client.get("/admin/risk/position/")
    assert b"100.500000" in positions.content  # average price
    user_page = admin_client.get(f"/admin/auth/user/{trader.pk}/change/")
    assert b"1000.5000" in user_page.content  # the balances on the user's page


def test_only_superusers_adjust_cash(staff, admin_client):
    refused = staff.get("/admin/risk/account/adjust-cash/")
    assert refused.status_code == 302
    assert b"Deposit or withdraw" not in staff.get("/admin/risk/account/").content
    form = admin_client.get("/admin/risk/account/adjust-cash/?username=trader")
    assert form.status_code == 200
    assert b'value="trader"' in form.content
    invalid = admin_client.post("/admin/risk/account/adjust-cash/", {"username": "ghost", "amount": "0"})
    assert b"no such user" in invalid.content and b"non-zero" in invalid.content


def order(trader, order_id: int, status: str) -> Order:
    return Order.objects.create(order_id=order_id, user=trader, symbol="AAPL", side="buy", order_type="limit",
                                tif="gtc", status=status, price_ticks=10_000, qty_lots=6_000,
                                remaining_lots=6_000, stp="cancel_newest", created_seq=order_id,
                                updated_seq=order_id, created_at=NOW, updated_at=NOW)


def test_the_held_queue_lists_held_orders_only(admin_client, trader):
    order(trader, 1, "open")
    order(trader, 2, "held")
    page = admin_client.get("/admin/risk/heldorder/")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert list(page.context["cl"].result_list.values_list("order_id", flat=True)) == [2]
    assert b"Release selected held orders" in page.content


def test_staff_without_permission_get_no_held_order_actions(staff, trader, django_user_model):
    order(trader, 2, "held")
    assert b"Release selected" not in staff.get("/admin/risk/heldorder/").content
    desk = django_user_model.objects.get(username="desk")
    desk.user_permissions.add(Permission.objects.get(codename="change_heldorder"))
    assert b"Release selected" in staff.get("/admin/risk/heldorder/").content


def test_acknowledge_alerts(admin_client, trader, admin_user):
    alert = RiskAlert.objects.create(seq=4, user=trader, instrument=Instrument.objects.get(symbol="AAPL"),
                                     kind="position_limit", detail="12000 > 10000", created_at=NOW)
    response = admin_client.post("/admin/risk/riskalert/", {"action": "acknowledge",
                                                            "_selected_action": [alert.pk]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged and alert.acknowledged_by == admin_user


def test_the_audit_trail_is_read_only_with_search_and_filters(admin_client, trader, admin_user):
    AuditEvent.objects.create(seq=8, kind=AuditEvent.AdminKind.CASH_ADJUST, order_id=0, user=trader,
                              actor=admin_user,
                              symbol="", detail={"amount": "5"}, at=NOW)
    AuditEvent.objects.create(seq=9, kind=AuditEvent.Kind.ACCEPTED, order_id=3, user=trader, symbol="AAPL",
                              detail={}, at=NOW)
    found = admin_client.get("/admin/matching/auditevent/", {"q": "admin"})  # the actor's name
    assert found.context["cl"].result_count == 1
    by_kind = admin_client.get("/admin/matching/auditevent/", {"kind__exact": "accepted"})
    assert by_kind.context["cl"].result_count == 1
    by_actor = admin_client.get("/admin/matching/auditevent/", {"actor__id__exact": admin_user.pk})
    assert by_actor.context["cl"].result_count == 1
    row = AuditEvent.objects.get(seq=8)
    assert b'name="detail"' not in admin_client.get(f"/admin/matching/auditevent/{row.pk}/change/").content
    deleted = admin_client.post(f"/admin/matching/auditevent/{row.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403
