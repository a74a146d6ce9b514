"""Sign up, log in, log out (Django auth), and the load-test users command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

NEW = {"username": "newbie", "password1": "a-Long-secret-42", "password2": "a-Long-secret-42"}


def test_sign_up_logs_in_and_goes_home(client):
    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    assert b'name="password2"' in page.content
    response = client.post("/accounts/signup/", NEW)
    assert response.status_code == 302
    assert response.url == "/"
    assert get_user_model().objects.filter(username="newbie").exists()
    home = client.get("/")
    assert home.context["user"].username == "newbie"
    assert b"Log out" in home.content
    assert client.get("/api/account").json()["cash"] == "1000000.0000"  # the starting cash


def test_sign_up_refuses_bad_input(client, django_user_model):
    django_user_model.objects.create_user("taken")
    for data in ({**NEW, "password2": "something-else-42"}, {**NEW, "username": "taken"},
                 {**NEW, "password1": "123", "password2": "123"}):
        response = client.post("/accounts/signup/", data)
        assert response.status_code == 200
        assert response.context["form"].errors
    assert not django_user_model.objects.filter(username="newbie").exists()


def test_signed_in_users_are_sent_home(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone"))
    assert client.get("/accounts/signup/").url == "/"


def test_log_in_links_to_sign_up_and_log_out_works(client, django_user_model):
    django_user_model.objects.create_user("trader", password="pw-secret-42")
    login_page = client.get("/accounts/login/")
    assert b'href="/accounts/signup/"' in login_page.content
    logged_in = client.post("/accounts/login/", {"username": "trader", "password": "pw-secret-42"})
    assert logged_in.status_code == 302
    assert client.get("/").context["user"].is_authenticated
    assert client.get("/accounts/logout/").status_code == 405  # only by POST (the form in the header)
    assert client.post("/accounts/logout/").status_code == 302
    home = client.get("/")
    assert not home.context["user"].is_authenticated
    assert b'href="/accounts/signup/"' in home.content


def create_users(*args: str) -> str:
    out = StringIO()
    call_command("create_users", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_create_users_prints_tokens_and_is_idempotent(django_user_model):
    first = create_users("--count", "3", "--prefix", "load", "--password", "x-secret")
    lines = first.strip().splitlines()
    assert [line.split(",")[0] for line in lines] == ["load1", "load2", "load3"]
    for line in lines:
        username, key = line.split(",")
        user = django_user_model.objects.get(username=username)
        assert Token.objects.get(user=user).key == key
        assert user.check_password("x-secret") and not user.is_staff
    again = create_users("--count", "4", "--prefix", "load", "--password", "other")
    assert again.strip().splitlines()[:3] == lines  # same users, same tokens
    assert django_user_model.objects.filter(username__startswith="load").count() == 4
    assert django_user_model.objects.get(username="load1").check_password("x-secret")  # kept as it was


def test_create_users_writes_a_tokens_file(tmp_path, django_user_model):
    out = tmp_path / "tokens.csv"
    assert create_users("--count", "2", "--tokens-file", str(out)) == ""
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == ["trader1", "trader2"]
    assert not django_user_model.objects.get(username="trader1").has_usable_password()  # tokens only


def test_create_users_refuses_nonsense():
    with pytest.raises(CommandError):
        create_users("--count", "0")


def test_sign_up_errors_show_beside_their_fields(client):
    response = client.post("/accounts/signup/", {**NEW, "password2": "something-else-42"})
    html = response.content.decode()
    assert 'class="field invalid"' in html
    assert 'id="id_password2_errors"' in html
    assert "The two password fields" in html
