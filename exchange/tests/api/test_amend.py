"""PATCH /api/orders/{id}: the answer has the submit answer's shape and is true when it is sent (status,
the trades the amendment made, what remains), and a read right after it (or after a cancel) sees it."""

from __future__ import annotations

import pytest

from exchange.tests.api.reads import shown

pytestmark = pytest.mark.django_db(transaction=True)

SUBMIT_KEYS = {"success", "order_id", "status", "cancel_reason", "trades", "remaining_quantity", "latency_us"}


def submit(client, **fields) -> dict:
    order = {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00", **fields}
    response = client.post("/api/submit", order, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def amend(client, order_id: int, **fields):
    return client.patch(f"/api/orders/{order_id}", fields, content_type="application/json")


def test_an_amendment_that_crosses_answers_what_it_filled(alice, bob):
    submit(bob, side="sell", quantity="150", price="101.00")
    order_id = submit(alice, quantity="1000", price="100.00")["order_id"]
    shown(alice, order_id)
    response = amend(alice, order_id, price="101.00")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= SUBMIT_KEYS  # the submit answer's shape ...
    assert (body["status"], body["remaining_quantity"]) == ("partially_filled", "850")  # was "1000"
    assert [(t["price"], t["quantity"]) for t in body["trades"]] == [("101.00", "150")]  # was a count: 1
    assert body["trades"][0]["trade_id"].startswith("AAPL-")
    assert (body["price"], body["quantity"], body["kept_priority"]) == ("101.00", "1000", False)
    assert body["latency_us"] >= 0
    after = alice.get(f"/api/orders/{order_id}").json()  # right after: no waiting
    assert (after["price"], after["status"]) == ("101.00", "partially_filled")
    assert (after["filled_quantity"], after["remaining_quantity"]) == ("150", "850")


def test_an_amendment_that_fills_completely_says_filled(alice, bob):
    submit(bob, side="sell", quantity="8", price="101.00")
    order_id = submit(alice, quantity="8", price="100.00")["order_id"]
    shown(alice, order_id)
    body = amend(alice, order_id, price="101.00").json()
    assert (body["status"], body["remaining_quantity"]) == ("filled", "0")  # was "8"
    assert [t["quantity"] for t in body["trades"]] == ["8"]
    after = alice.get(f"/api/orders/{order_id}").json()
    assert (after["status"], after["price"], after["remaining_quantity"]) == ("filled", "101.00", "0")


def test_an_amendment_of_a_partly_filled_order_says_so(alice, bob):
    order_id = submit(alice, quantity="10", price="100.00")["order_id"]
    submit(bob, side="sell", quantity="3", price="100.00")  # 7 left
    shown(alice, order_id)
    body = amend(alice, order_id, quantity="8").json()  # the new total: 5 left
    assert (body["status"], body["remaining_quantity"], body["trades"]) == ("partially_filled", "5", [])
    assert (body["kept_priority"], body["quantity"], body["price"]) == (True, "8", "100.00")
    after = alice.get(f"/api/orders/{order_id}").json()
    assert (after["quantity"], after["remaining_quantity"], after["status"]) == ("8", "5", "partially_filled")


def test_a_repriced_order_that_rests_is_open_and_read_so_at_once(alice):
    order_id = submit(alice, quantity="10", price="100.00")["order_id"]
    shown(alice, order_id)
    body = amend(alice, order_id, price="99.50").json()
    assert (body["status"], body["remaining_quantity"], body["trades"]) == ("open", "10", [])
    assert (body["price"], body["stop_price"], body["kept_priority"]) == ("99.50", None, False)
    assert alice.get(f"/api/orders/{order_id}").json()["price"] == "99.50"  # was still 100.00


def test_an_amended_stop_stays_pending(alice):
    order_id = submit(alice, type="stop", price=None, stop_price="105.00")["order_id"]
    shown(alice, order_id)
    body = amend(alice, order_id, stop_price="106.00").json()
    assert (body["status"], body["stop_price"], body["price"]) == ("pending", "106.00", None)
    after = alice.get(f"/api/orders/{order_id}").json()
    assert (after["status"], after["stop_price"]) == ("pending", "106.00")


def test_amend_reads_numbers_exactly_and_refuses_unknown_fields(alice):
    order_id = submit(alice, quantity="10", price="100.00")["order_id"]
    shown(alice, order_id)
    response = alice.patch(f"/api/orders/{order_id}", '{"price": 100.25}', content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["price"] == "100.25"
    for text, field in (('{"price": 1e2}', "price"), ('{"quantity": "1e1"}', "quantity"),
                        ('{"qty": "5"}', "qty"), ('{"price": "99.00", "prize": "98.00"}', "prize")):
        refused = alice.patch(f"/api/orders/{order_id}", text, content_type="application/json")
        assert refused.status_code == 400, (text, refused.content)
        assert field in refused.json()["fields"], refused.json()
    assert alice.get(f"/api/orders/{order_id}").json()["price"] == "100.25"


def test_a_cancel_is_read_at_once(alice):
    order_id = submit(alice)["order_id"]
    shown(alice, order_id)
    assert alice.delete(f"/api/cancel/{order_id}").status_code == 200
    assert alice.get(f"/api/orders/{order_id}").json()["status"] == "canceled"


def test_cancel_all_is_read_at_once(alice):
    ids = [submit(alice, price=f"{90 + n}.00")["order_id"] for n in range(3)]
    shown(alice, ids[-1])
    response = alice.delete("/api/orders/open")
    assert sorted(response.json()["canceled"]) == sorted(ids)
    assert alice.get("/api/orders?status=open").json() == []


def test_a_read_right_after_submit_sees_the_order_and_the_fill(alice, bob):
    """Read-your-writes: the answer to a submit is also what the next read shows (order, fills, account)."""
    rest = bob.post("/api/submit", {"symbol": "AAPL", "side": "sell", "quantity": "7", "price": "100.00"},
                    content_type="application/json")
    assert rest.status_code == 201
    taken = alice.post("/api/submit", {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00"},
                       content_type="application/json").json()
    assert taken["status"] == "filled"
    assert alice.get(f"/api/orders/{taken['order_id']}").json()["status"] == "filled"
    assert [p["quantity"] for p in alice.get("/api/account").json()["positions"]] == ["5"]
    assert bob.get(f"/api/orders/{rest.json()['order_id']}").json()["remaining_quantity"] == "2"
    assert bob.delete(f"/api/cancel/{rest.json()['order_id']}").status_code == 200  # no 404 right after
