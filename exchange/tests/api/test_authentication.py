"""Tokens are read on every call: a deleted token or a deactivated user is refused at once, even when
the change comes from another process (no signal reaches this one)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00"}


@pytest.fixture
def robot(embedded, django_user_model):
    user = django_user_model.objects.create_user("robot", password="pw")
    return user, Token.objects.create(user=user).key


def post(key: str):
    return Client().post("/api/submit", ORDER, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Token {key}")


def test_a_token_deleted_elsewhere_stops_working_at_once(robot):
    _, key = robot
    assert post(key).status_code == 201
    Token.objects.filter(key=key).update(key="0" * 40)  # another process: no signal here
    refused = post(key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "not_authenticated"


def test_a_user_deactivated_elsewhere_is_refused_at_once(robot, django_user_model):
    user, key = robot
    assert post(key).status_code == 201
    django_user_model.objects.filter(pk=user.pk).update(is_active=False)  # QuerySet.update: no signal
    refused = post(key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "not_authenticated"


def test_ping_answers_who_is_asking(robot):
    _, key = robot
    answer = Client().get("/api/ping", HTTP_AUTHORIZATION=f"Token {key}")
    assert answer.json() == {"pong": True, "username": "robot"}
    assert Client().get("/api/ping").status_code == 401
