"""POST /api/orders/batch end to end in the embedded default: each order validated and answered on its
own, the valid ones matched together in one matcher batch, the submit budget charged per order."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from matching import services
from matching.models import Order
from matching.worker.embedded import EmbeddedBus
from matching.worker.metrics import METRICS

pytestmark = pytest.mark.django_db(transaction=True)

LIFTED = {"submit": "100000/s", "burst": "100000/s", "sustained": "1000000/min"}


@pytest.fixture
def unlimited(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": LIFTED}


def order(**fields) -> dict:
    return {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "100.00", **fields}


def batch(client, orders, **extra):
    return client.post("/api/orders/batch", {"orders": orders}, content_type="application/json", **extra)


def test_each_order_is_answered_on_its_own(alice, bob):
    for price, quantity in (("99.00", "1"), ("100.00", "5")):
        bob.post("/api/submit", order(side="sell", price=price, quantity=quantity),
                 content_type="application/json")
    response = batch(alice, [
        order(price="99.00", quantity="2"),              # takes bob's 1 at 99.00, rests 1
        order(quantity="NaN"),                           # invalid: a field error
        "not an order",                                  # invalid: not an object
        order(price="98.00"),                            # rests
        order(symbol="NOPE"),                            # invalid: unknown symbol
        order(price="100.00", post_only=True),           # rejected by the engine: it would take
    ])
    assert response.status_code == 200, response.content
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert (body["succeeded"], body["failed"]) == (2, 4)
    assert [r["http_status"] for r in results] == [201, 400, 400, 201, 400, 422]
    assert [r["success"] for r in results] == [True, False, False, True, False, False]
    taker, _, _, resting, _, rejected = results
    assert (taker["status"], taker["remaining_quantity"]) == ("partially_filled", "1")
    assert [(t["price"], t["quantity"]) for t in taker["trades"]] == [("99.00", "1")]
    assert (resting["status"], resting["remaining_quantity"]) == ("open", "1")
    assert results[1]["code"] == "invalid_request" and "quantity" in results[1]["fields"]
    assert results[2]["code"] == "invalid_request" and "non_field_errors" in results[2]["fields"]
    assert "symbol" in results[4]["fields"]
    assert rejected["code"] == "post_only_would_take"
    assert rejected["status"] == "rejected" and rejected["order_id"] > 0
    services.command_bus_stop()  # the projection written out
    assert Order.objects.filter(user__username="alice").count() == 3  # the rejected one too


def test_the_valid_orders_reach_the_matcher_as_one_batch(alice, unlimited, reset_metrics):
    services.command_bus()  # started (its risk configuration sent) before counting
    reset_metrics()
    orders = [order(price=f"{90 + n}.00") for n in range(40)]
    orders[7] = order(quantity="-1")
    response = batch(alice, orders)
    assert response.json()["succeeded"] == 39
    order_ids = [r["order_id"] for r in response.json()["results"] if r["success"]]
    assert order_ids == sorted(order_ids)  # applied in request order
    sizes = METRICS.stage("matcher.batch_size").snapshot()
    assert (sizes.count, sizes.max) == (1, 39)
    assert METRICS.stage("api.orders-batch.post").snapshot().count == 1


def test_a_client_order_id_twice_in_a_batch_is_one_order(alice):
    results = batch(alice, [order(client_order_id="dup-1"), order(client_order_id="dup-1", price="101.00"),
                            order(client_order_id="other")]).json()["results"]
    assert results[1]["duplicate"] is True
    assert results[1]["status"] == "duplicate"
    assert results[1]["order_id"] == results[0]["order_id"]
    assert results[2]["order_id"] != results[0]["order_id"]
    again = batch(alice, [order(client_order_id="other")]).json()["results"][0]  # a retried batch
    assert (again["duplicate"], again["order_id"]) == (True, results[2]["order_id"])
    services.command_bus_stop()
    assert Order.objects.filter(client_order_id="dup-1").count() == 1


@pytest.mark.parametrize(("payload", "code"), [
    ({"orders": [order()] * 101}, "too_many_orders"),
    ({"orders": []}, "invalid_request"),
    ({"orders": "all of them"}, "invalid_request"),
    ({}, "invalid_request"),
    ([order()], "invalid_request"),  # a bare list: the orders go under "orders"
])
def test_a_batch_that_cannot_be_read_is_400(alice, payload, code):
    response = alice.post("/api/orders/batch", payload, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == code
    if code == "too_many_orders":
        assert response.json()["limit"] == 100
    assert Order.objects.count() == 0


def test_each_order_takes_one_token_of_the_submit_budget(alice):
    # 10 orders a second per user (API_RATES submit), single or batched alike
    results = batch(alice, [order(price=f"{90 + n}.00") for n in range(12)] + [order(quantity="x")]).json()
    assert [r["http_status"] for r in results["results"]] == [201] * 10 + [429, 429, 400]
    limited = results["results"][10]
    assert limited["code"] == "rate_limited" and limited["retry_after"] >= 1
    assert "order_id" not in limited  # not sent
    refused = batch(alice, [order()])  # no budget left: the request as a whole
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused["Retry-After"]) >= 1
    single = alice.post("/api/submit", order(), content_type="application/json")
    assert single.status_code == 429  # the same counter as POST /api/submit


def test_a_batch_after_single_submits_gets_what_is_left(alice):
    for n in range(7):
        assert alice.post("/api/submit", order(price=f"{90 + n}.00"), content_type="application/json"
                          ).status_code == 201
    statuses = [r["http_status"] for r in batch(alice, [order()] * 5).json()["results"]]
    assert statuses == [201, 201, 201, 429, 429]


def test_login_required_and_tokens_work(embedded, django_user_model):
    anonymous = batch(Client(), [order()])
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    user = django_user_model.objects.create_user("robot", password="pw")
    token = Token.objects.create(user=user).key
    response = batch(Client(), [order()], HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert response.json()["results"][0]["success"] is True


def test_matcher_down_is_503_for_the_batch(alice):
    bus = services.command_bus()
    assert isinstance(bus, EmbeddedBus) and bus.matcher.journal is not None
    bus.matcher.journal.close()  # the next group commit fails: the matcher stops
    first = batch(alice, [order(), order(price="101.00")])
    assert first.status_code == 200  # taken, then failed: each order says so
    assert [r["code"] for r in first.json()["results"]] == ["matcher_unavailable"] * 2
    assert all(r["retry_after"] >= 1 for r in first.json()["results"])
    refused = batch(alice, [order()])  # refused before anything was queued
    assert refused.status_code == 503
    assert refused.json()["code"] == "matcher_unavailable"
