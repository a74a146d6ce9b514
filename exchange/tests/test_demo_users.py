from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from exchange.marketmaker import accounts
from exchange.models import Instrument
from risk.models import UserRiskLimit

pytestmark = pytest.mark.django_db


def run() -> str:
    out = StringIO()
    call_command("ensure_demo_users", stdout=out)
    return out.getvalue()


def test_creates_demo_users_once(settings):
    settings.DEBUG = True
    run()
    output = run()
    users = get_user_model().objects
    assert users.count() == 3
    demo, admin = users.get(username="demo"), users.get(username="admin")
    assert demo.check_password("demo") and not demo.is_staff
    assert admin.check_password("admin") and admin.is_superuser and admin.is_staff
    assert "demo / demo" in output and "admin / admin" in output
    assert "Market maker user: marketmaker (no password)" in output


def test_creates_the_market_makers_user_and_limits_once(settings):
    settings.DEBUG = True
    first = run()
    maker = get_user_model().objects.get(username=accounts.USERNAME)
    assert not maker.has_usable_password() and not maker.is_staff
    symbols = list(Instrument.objects.values_list("symbol", flat=True))
    assert symbols  # the seeded instruments
    limits = UserRiskLimit.objects.filter(user=maker)
    assert sorted(limits.values_list("instrument__symbol", flat=True)) == sorted(symbols)
    assert {(limit.max_position, limit.max_order_size) for limit in limits} == {(Decimal(20_000), None)}
    assert "position limits added for" in first
    assert "position limits added" not in run()  # kept, not added again
    assert limits.count() == len(symbols)


def test_leaves_a_changed_password_alone(settings):
    settings.DEBUG = True
    get_user_model().objects.create_user("demo", password="changed")
    assert "demo exists with another password" in run()
    assert get_user_model().objects.get(username="demo").check_password("changed")


def test_no_demo_logins_without_debug_but_the_market_maker_user(settings):
    settings.DEBUG = False
    assert "DEBUG is off" in run()
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["marketmaker"]
    assert not get_user_model().objects.get().has_usable_password()
