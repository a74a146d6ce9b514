from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

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
    assert users.count() == 2
    demo, admin = users.get(username="demo"), users.get(username="admin")
    assert demo.check_password("demo") and not demo.is_staff
    assert admin.check_password("admin") and admin.is_superuser and admin.is_staff
    assert "demo / demo" in output and "admin / admin" in output


def test_leaves_a_changed_password_alone(settings):
    settings.DEBUG = True
    get_user_model().objects.create_user("demo", password="changed")
    assert "demo exists with another password" in run()
    assert get_user_model().objects.get(username="demo").check_password("changed")


def test_does_nothing_without_debug(settings):
    settings.DEBUG = False
    assert "DEBUG is off" in run()
    assert not get_user_model().objects.exists()
