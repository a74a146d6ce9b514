"""The order API end to end in the embedded default: Django test client -> view -> matcher thread ->
journal -> engine -> reply, and the projection read back; bad input is a 4xx with a code, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from matching import services
from matching.models import Order
from matching.worker.embedded import EmbeddedBus

pytestmark = pytest.mark.django_db(transaction=True)


def submit(client, **fields):
    order = {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00", **fields}
    return client.post("/api/submit", order, content_type="application/json")


def test_a_resting_order_then_a_fill(alice, bob):
    rest = submit(alice)
    assert rest.status_code == 201, rest.json()
    assert rest.json()["status"] == "open"
    assert rest.json()["remaining_quantity"] == "5"
    take = submit(bob, side="sell", quantity="3", price="99.50")
    body = take.json()
    assert body["status"] == "filled"
    assert body["trades"] == [{"trade_id": "AAPL-1", "price": "100.00", "quantity": "3",
                               "timestamp": body["trades"][0]["timestamp"]}]
    assert body["latency_us"] >= 0


def test_market_order_into_an_empty_book_is_canceled(alice):
    body = submit(alice, type="market", price=None).json()
    assert body["status"] == "canceled"
    assert body["cancel_reason"] == "no_liquidity"


def test_a_protected_market_order_trades_within_its_protection_only(alice, bob):
    assert submit(bob, side="sell", quantity="2", price="100.00").status_code == 201
    assert submit(bob, side="sell", quantity="3", price="101.00").status_code == 201
    body = submit(alice, type="market", price=None, quantity="5", protection_price="100.50").json()
    assert [(t["price"], t["quantity"]) for t in body["trades"]] == [("100.00", "2")]  # not at 101.00
    assert (body["status"], body["cancel_reason"]) == ("canceled", "no_liquidity")  # the other 3
    book = alice.get("/api/book/AAPL").json()
    assert [level["price"] for level in book["asks"]] == ["101.00"]


def test_retry_with_the_same_client_order_id(alice):
    first = submit(alice, client_order_id="abc-1").json()
    again = submit(alice, client_order_id="abc-1").json()
    assert again["duplicate"] is True
    assert again["order_id"] == first["order_id"]


def test_cancel_my_order_and_not_someone_elses(alice, bob):
    order_id = submit(alice).json()["order_id"]
    assert bob.delete(f"/api/cancel/{order_id}").status_code == 404
    response = alice.delete(f"/api/cancel/{order_id}")
    assert response.status_code == 200, response.json()
    assert response.json() == {"success": True, "order_id": order_id, "status": "canceled",
                               "canceled_quantity": "5"}
    again = alice.delete(f"/api/cancel/{order_id}")
    assert again.status_code == 409
    assert again.json()["code"] == "order_not_open"
    services.command_bus_stop()
    assert Order.objects.get(order_id=order_id).status == "canceled"


def test_engine_rejection_is_422_with_its_reason(alice, bob):
    submit(bob, side="sell", price="100.00")
    response = submit(alice, post_only=True, price="100.00")
    assert response.status_code == 422
    assert response.json()["code"] == "post_only_would_take"
    assert response.json()["status"] == "rejected"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"quantity": "NaN"}, "quantity"),
        ({"quantity": "Infinity"}, "quantity"),
        ({"quantity": "1e999"}, "quantity"),
        ({"quantity": "-5"}, "quantity"),
        ({"quantity": "0"}, "quantity"),
        ({"quantity": "1.5"}, "quantity"),  # lot size 1
        ({"quantity": 10**30}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": [5]}, "quantity"),
        ({"price": "100.001"}, "price"),  # tick 0.01
        ({"price": "0"}, "price"),
        ({"price": "-1"}, "price"),
        ({"price": "x" * 50}, "price"),
        ({"symbol": "NOPE"}, "symbol"),
        ({"side": "long"}, "side"),
        ({"type": "iceberg"}, "type"),
        ({"time_in_force": "forever"}, "time_in_force"),
        ({"client_order_id": "spaces are not allowed"}, "client_order_id"),
        ({"protection_price": "101.00"}, "protection_price"),  # a limit order takes none
        ({"type": "market", "price": None, "protection_price": "100.001"}, "protection_price"),
        ({"type": "market", "price": None, "protection_price": "0"}, "protection_price"),
    ],
)
def test_bad_input_is_400_with_the_field(alice, fields, field):
    response = submit(alice, **fields)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"
    assert field in response.json()["fields"]


def test_malformed_json_is_400(alice):
    response = alice.post("/api/submit", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


def test_login_required(embedded, client):
    response = submit(client)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"


def test_matcher_down_is_503_with_retry_after(alice):
    bus = services.command_bus()
    assert isinstance(bus, EmbeddedBus) and bus.matcher.journal is not None
    bus.matcher.journal.close()  # the next group commit fails: the matcher stops
    submit(alice)
    response = submit(alice)
    assert response.status_code == 503
    assert response.json()["code"] == "matcher_unavailable"
    assert int(response["Retry-After"]) >= 1


def test_browser_session_needs_the_csrf_token(embedded, django_user_model):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(django_user_model.objects.create_user("carol"))
    response = submit(browser)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "CSRF" in response.json()["message"]


def test_book_and_trades_as_published(alice, bob):
    configured = services.command_bus().health()["seq"]  # the risk configuration went first
    submit(alice, price="100.00", quantity="5")
    submit(alice, price="99.99", quantity="2")
    submit(bob, side="sell", price="100.50", quantity="7")
    submit(bob, side="sell", price="100.00", quantity="1")
    book = alice.get("/api/book/AAPL?depth=5").json()
    assert book["bids"] == [{"price": "100.00", "quantity": "4"}, {"price": "99.99", "quantity": "2"}]
    assert book["asks"] == [{"price": "100.50", "quantity": "7"}]
    assert book["seq"] == configured + 4
    trades = alice.get("/api/trades/AAPL").json()
    assert [(t["price"], t["quantity"], t["taker_side"]) for t in trades] == [("100.00", "1", "sell")]


@pytest.mark.parametrize("query", ["depth=0", "depth=51", "depth=x", "depth=-1", "depth=1e3"])
def test_bad_depth_is_400(alice, query):
    response = alice.get(f"/api/book/AAPL?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_unknown_symbol_book_is_404(alice):
    response = alice.get("/api/book/NOPE")
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_symbol"


def test_my_orders_by_list_id_and_client_id(alice, bob):
    mine = submit(alice, client_order_id="x-1", quantity="4").json()["order_id"]
    submit(bob, side="sell", quantity="1", price="99.00")  # fills 1 of mine at 100.00
    theirs = submit(bob, side="sell", quantity="2", price="105.00").json()["order_id"]
    services.command_bus_stop()  # write the projection out
    listed = alice.get("/api/orders").json()
    assert [o["order_id"] for o in listed] == [mine]
    detail = alice.get(f"/api/orders/{mine}").json()
    assert detail["status"] == "partially_filled"
    assert (detail["quantity"], detail["filled_quantity"], detail["remaining_quantity"]) == ("4", "1", "3")
    assert detail["average_price"] == "100.00"  # the tick's precision
    assert alice.get("/api/orders/client/AAPL/x-1").json()["order_id"] == mine
    assert alice.get("/api/orders/client/MSFT/x-1").status_code == 404
    assert alice.get(f"/api/orders/{theirs}").status_code == 404
    assert [o["order_id"] for o in bob.get("/api/orders?status=open").json()] == [theirs]
    assert alice.get("/api/orders?status=bogus").status_code == 400


def test_instruments_and_ticker(alice, bob):
    instruments = alice.get("/api/instruments").json()
    aapl = next(i for i in instruments if i["symbol"] == "AAPL")
    assert (aapl["tick_size"], aapl["lot_size"], aapl["status"]) == ("0.01", "1", "open")
    submit(alice, price="100.00", quantity="5")
    submit(bob, side="sell", price="100.00", quantity="2")
    submit(bob, side="sell", price="101.00", quantity="1")
    ticker = alice.get("/api/ticker/AAPL").json()
    assert ticker["last"] == "100.00"
    assert (ticker["best_bid"], ticker["best_ask"]) == ("100.00", "101.00")
    assert (ticker["high_24h"], ticker["low_24h"], ticker["volume_24h"]) == ("100.00", "100.00", "2")


def test_programs_use_a_token(embedded, django_user_model):
    django_user_model.objects.create_user("robot", password="s3cret-pw")
    program = Client()
    token = program.post("/api/token", {"username": "robot", "password": "s3cret-pw"}).json()["token"]
    order = {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "1.00"}
    response = program.post("/api/submit", order, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 201, response.content
    refused = program.post("/api/submit", order, content_type="application/json",
                           HTTP_AUTHORIZATION="Token nope")
    assert refused.status_code == 401
    assert refused.json()["code"] == "not_authenticated"


def test_order_entry_is_rate_limited_per_user(alice, bob):
    answers = [submit(alice, price=f"{90 + n}.00").status_code for n in range(11)]
    assert answers[:10] == [201] * 10  # ten a second...
    limited = submit(alice)
    assert limited.status_code == 429  # ...and no more
    assert limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1
    assert submit(bob).status_code == 201  # counted per user


def test_an_oversized_body_is_413_not_500(alice):
    huge = '{"symbol": "' + "A" * 3_000_000 + '"}'  # past Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    response = alice.post("/api/submit", huge, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def amend(client, order_id, **fields):
    return client.patch(f"/api/orders/{order_id}", fields, content_type="application/json")


def test_amend_my_order(alice, bob):
    order_id = submit(alice, quantity="10", price="100.00").json()["order_id"]
    services.command_bus_stop()  # write the projection out (amend looks the order up there)
    smaller = amend(alice, order_id, quantity="6")
    assert smaller.status_code == 200, smaller.json()
    assert smaller.json()["kept_priority"] is True
    assert smaller.json()["remaining_quantity"] == "6"
    repriced = amend(alice, order_id, price="101.00").json()
    assert (repriced["kept_priority"], repriced["price"]) == (False, "101.00")
    assert amend(bob, order_id, quantity="1").status_code == 404
    empty = amend(alice, order_id)
    assert empty.status_code == 400
    off_tick = amend(alice, order_id, price="1.001")
    assert off_tick.status_code == 400
    submit(bob, side="sell", quantity="6", price="101.00")  # fills it completely
    gone = amend(alice, order_id, quantity="3")
    assert gone.status_code == 409
    assert gone.json()["code"] == "order_not_open"


def test_my_fills_with_side_and_role(alice, bob):
    maker = submit(alice, quantity="5", price="100.00").json()["order_id"]
    taker = submit(bob, side="sell", quantity="2", price="99.00").json()["order_id"]
    services.command_bus_stop()
    mine = alice.get("/api/fills").json()
    theirs = bob.get("/api/fills?symbol=AAPL").json()
    assert [(f["order_id"], f["side"], f["liquidity"], f["price"], f["quantity"]) for f in mine] == [
        (maker, "buy", "maker", "100.00", "2")]
    assert [(f["order_id"], f["side"], f["liquidity"]) for f in theirs] == [(taker, "sell", "taker")]
    assert bob.get("/api/fills?symbol=MSFT").json() == []


@pytest.mark.parametrize(
    ("origin", "allowed"), [("https://desk.example", True), ("https://evil.example", False)]
)
def test_cors_only_for_configured_origins(alice, settings, origin, allowed):
    settings.CORS_ALLOWED_ORIGINS = ["https://desk.example"]
    response = alice.get("/api/instruments", HTTP_ORIGIN=origin)
    assert response.status_code == 200
    assert (response.get("Access-Control-Allow-Origin") == origin) is allowed


def test_cancel_needs_no_projection_of_the_order(alice, settings):
    """Routed by its order id, a cancel reaches the shard that made the order, whatever the projection
    has written: here it never writes (its writer stopped, answers not waiting for it)."""
    settings.PROJECTION_WAIT_TIMEOUT = 0
    services.command_bus()
    projector = services.embedded_projector()
    assert projector is not None
    projector.stop(flush=False)  # the projection lags for good from here on
    order_id = submit(alice, price="99.00").json()["order_id"]
    assert not Order.objects.filter(order_id=order_id).exists()
    response = alice.delete(f"/api/cancel/{order_id}")
    assert response.status_code == 200, response.json()
    assert response.json()["canceled_quantity"] == "5"
    assert alice.delete(f"/api/cancel/{order_id}").status_code == 404  # not live, and not projected


def test_cancel_all_my_open_orders(alice, bob):
    mine = [submit(alice, price=f"{90 + n}.00").json()["order_id"] for n in range(3)]
    submit(alice, symbol="AAPL", side="sell", price="120.00")
    theirs = submit(bob, price="80.00").json()["order_id"]
    services.command_bus_stop()
    response = alice.delete("/api/orders/open?symbol=AAPL")
    assert response.status_code == 200
    assert sorted(response.json()["canceled"]) == sorted([*mine, mine[-1] + 1])
    services.command_bus_stop()  # the projection written: nothing of mine is open any more
    assert alice.delete("/api/orders/open").json() == {"success": True, "canceled": [], "not_open": []}
    services.command_bus_stop()
    assert Order.objects.get(order_id=theirs).status == "open"


def test_candles_from_crossing_orders(alice, bob):
    from datetime import datetime

    submit(alice, price="100.00", quantity="5")
    submit(bob, side="sell", price="99.00", quantity="2")  # 2 @ 100.00
    submit(bob, side="sell", price="101.00", quantity="10")
    submit(alice, price="101.50", quantity="3")  # 3 @ 101.00
    submit(bob, side="sell", price="99.50", quantity="1")  # 1 @ 100.00
    trades = alice.get("/api/trades/AAPL").json()[::-1]  # oldest first
    assert [(t["price"], t["quantity"]) for t in trades] == [("100.00", "2"), ("101.00", "3"),
                                                              ("100.00", "1")]

    def expected(floor) -> list[dict]:  # grouped independently, from the trades endpoint's timestamps
        groups: dict[datetime, list[dict]] = {}
        for t in trades:
            groups.setdefault(floor(datetime.fromisoformat(t["timestamp"])), []).append(t)
        return [{"start": start.isoformat(), "open": rows[0]["price"], "close": rows[-1]["price"],
                 "high": max(rows, key=lambda t: float(t["price"]))["price"],
                 "low": min(rows, key=lambda t: float(t["price"]))["price"],
                 "volume": str(sum(int(t["quantity"]) for t in rows)), "trades": len(rows)}
                for start, rows in groups.items()]

    minutes = alice.get("/api/candles/AAPL").json()  # interval=1m by default
    assert minutes == expected(lambda at: at.replace(second=0, microsecond=0))
    days = alice.get("/api/candles/AAPL?interval=1d&limit=500").json()
    assert days == expected(lambda at: at.replace(hour=0, minute=0, second=0, microsecond=0))
    if len(days) == 1:  # unless the trades straddled midnight UTC
        day = days[0]
        assert (day["open"], day["high"], day["low"], day["close"], day["volume"], day["trades"]) == (
            "100.00", "101.00", "100.00", "100.00", "6", 3)
    assert alice.get("/api/candles/AAPL?interval=15m&limit=1").json() == expected(
        lambda at: at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0))[-1:]


@pytest.mark.parametrize("query", ["interval=2m", "interval=", "interval=1M", "limit=0", "limit=501",
                                   "limit=x", "interval=1h&limit=-1"])
def test_bad_candle_query_is_400(alice, query):
    response = alice.get(f"/api/candles/AAPL?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_unknown_symbol_candles_are_404(alice):
    response = alice.get("/api/candles/NOPE?interval=1h")
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_symbol"
    assert alice.get("/api/candles/AAPL?interval=1h").json() == []  # known, no trades yet


def test_orders_of_several_statuses(alice):
    resting = submit(alice, price="90.00").json()["order_id"]
    canceled = submit(alice, price="91.00").json()["order_id"]
    assert alice.delete(f"/api/cancel/{canceled}").status_code == 200
    live = alice.get("/api/orders?status=open,partially_filled,pending,held").json()
    assert [o["order_id"] for o in live] == [resting]
    both = alice.get("/api/orders?status=open,canceled").json()
    assert sorted(o["order_id"] for o in both) == sorted([resting, canceled])
    refused = alice.get("/api/orders?status=open,nope")
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_request"
