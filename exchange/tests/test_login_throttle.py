"""Failed logins have a budget on every login path (exchange/api/authentication.py): per username and per
client address, LOGIN_FAILURES (10 in 5 minutes here); past it every attempt, right password or wrong,
is refused with 429 and Retry-After (a message on the login pages) and no password is hashed."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from exchange.api import rate_limits
from exchange.env import read_env
from matching.tests.worker.stream_driver import REDIS_URL

pytestmark = pytest.mark.django_db

LIMIT = 10


class CountingHasher(MD5PasswordHasher):
    """A fast hasher that counts the passwords it hashes (the tests' stand-in for PBKDF2)."""

    hashed = 0

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.hashed += 1
        return super().encode(password, salt)


@pytest.fixture(autouse=True)
def budgets(settings):
    settings.PASSWORD_HASHERS = ["exchange.tests.test_login_throttle.CountingHasher"]
    settings.LOGIN_FAILURES = f"{LIMIT}/5min"
    settings.REDIS_URL = None  # this process's budgets, fresh
    yield
    rate_limits.reset()


@pytest.fixture
def trader(django_user_model):
    return django_user_model.objects.create_user("trader", password="right-pw-42")


def token(username: str, password: str, **extra: Any):
    return Client().post("/api/token", {"username": username, "password": password}, **extra)


def basic(username: str, password: str, **extra: Any):
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return Client().get("/api/instruments", HTTP_AUTHORIZATION=f"Basic {credentials}", **extra)


def page(username: str, password: str, path: str = "/accounts/login/", **extra: Any):
    client = Client()
    return client, client.post(path, {"username": username, "password": password}, **extra)


def assert_api_429(response) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["code"] == "rate_limited"
    assert "failed logins" in response.json()["message"]
    assert 250 < int(response["Retry-After"]) <= 300


def test_the_token_endpoint(trader):
    assert token("trader", "right-pw-42").status_code == 200
    assert [token("trader", "wrong").status_code for _ in range(LIMIT)] == [400] * LIMIT
    hashed = CountingHasher.hashed
    assert_api_429(token("trader", "wrong"))
    assert_api_429(token("trader", "right-pw-42"))  # the right password too, while it lasts
    assert CountingHasher.hashed == hashed  # and no password hashed


def test_basic_auth(trader):
    assert basic("trader", "right-pw-42").status_code == 200
    assert [basic("trader", "wrong").status_code for _ in range(LIMIT)] == [401] * LIMIT
    hashed = CountingHasher.hashed
    assert_api_429(basic("trader", "wrong"))
    assert_api_429(basic("trader", "right-pw-42"))
    assert CountingHasher.hashed == hashed


def test_the_login_page(trader):
    for _ in range(LIMIT):
        _, response = page("trader", "wrong")
        assert response.status_code == 200  # the form again, with Django's message
    hashed = CountingHasher.hashed
    client, response = page("trader", "right-pw-42")
    assert response.status_code == 429
    assert 250 < int(response["Retry-After"]) <= 300
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session  # not logged in
    assert CountingHasher.hashed == hashed


def test_the_admin_login(django_user_model):
    django_user_model.objects.create_user("boss", password="right-pw-42", is_staff=True)
    for _ in range(LIMIT):
        page("boss", "wrong", path="/admin/login/")
    hashed = CountingHasher.hashed
    client, response = page("boss", "right-pw-42", path="/admin/login/")
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert CountingHasher.hashed == hashed


def test_per_address_whatever_the_username(trader, django_user_model):
    for n in range(LIMIT):  # one guess at each of ten names, from one address
        assert token(f"someone{n}", "guess", REMOTE_ADDR="203.0.113.7").status_code == 400
    assert_api_429(token("trader", "right-pw-42", REMOTE_ADDR="203.0.113.7"))
    assert token("trader", "right-pw-42", REMOTE_ADDR="198.51.100.1").status_code == 200  # elsewhere


def test_per_username_whatever_the_address(trader, django_user_model):
    django_user_model.objects.create_user("other", password="other-pw-42")
    for n in range(LIMIT):  # ten addresses, one guess each
        assert token("trader", "guess", REMOTE_ADDR=f"203.0.113.{n}").status_code == 400
    assert_api_429(token("trader", "right-pw-42", REMOTE_ADDR="198.51.100.1"))
    assert token("other", "other-pw-42", REMOTE_ADDR="198.51.100.1").status_code == 200  # others are not


def test_only_failures_count(trader):
    assert all(token("trader", "right-pw-42").status_code == 200 for _ in range(3 * LIMIT))
    assert [token("trader", "wrong").status_code for _ in range(LIMIT - 1)] == [400] * (LIMIT - 1)
    assert token("trader", "right-pw-42").status_code == 200  # a success resets nothing...
    assert token("trader", "wrong").status_code == 400  # ...and gives back only its own attempt
    assert_api_429(token("trader", "right-pw-42"))


def test_all_paths_share_the_count(trader):
    attempts: list[Callable[[str, str], object]] = [token, basic, lambda u, p: page(u, p)[1]]
    for n in range(LIMIT):
        attempts[n % 3]("trader", "wrong")
    assert_api_429(token("trader", "right-pw-42"))
    assert_api_429(basic("trader", "right-pw-42"))
    assert page("trader", "right-pw-42")[1].status_code == 429


def test_counted_in_redis_in_production(trader, settings, redis_client, redis_prefix):
    settings.EXCHANGE_MODE, settings.REDIS_CACHE_URL = "production", REDIS_URL
    settings.MATCHER_STREAM_PREFIX = redis_prefix
    assert [token("trader", "wrong").status_code for _ in range(LIMIT)] == [400] * LIMIT
    assert_api_429(token("trader", "right-pw-42"))
    assert redis_client.keys(f"{redis_prefix}:ratelimit:login:user:*")


def test_redis_down_refuses_logins_with_503(trader, settings):
    settings.EXCHANGE_MODE, settings.REDIS_CACHE_URL = "production", "redis://127.0.0.1:1/0"
    for response in (token("trader", "right-pw-42"), basic("trader", "right-pw-42")):
        assert response.status_code == 503
        assert response.json()["code"] == "matcher_unavailable"
        assert int(response["Retry-After"]) >= 1
    client, response = page("trader", "right-pw-42")
    assert response.status_code == 503 and int(response["Retry-After"]) >= 1
    assert "unavailable" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_budget_is_configurable():
    base = django_settings.BASE_DIR
    assert read_env({}, base_dir=base).login_failures == "10/5min"
    assert read_env({"LOGIN_FAILURES": "20/h"}, base_dir=base).login_failures == "20/h"
    assert rate_limits.parse_rate(read_env({}, base_dir=base).login_failures) == rate_limits.Rate(10, 300)
    for bad in ("10", "0/5min", "10/0min", "10/week", "x/s", "10/5ms"):
        with pytest.raises(ImproperlyConfigured, match="LOGIN_FAILURES"):
            read_env({"LOGIN_FAILURES": bad}, base_dir=base)
