"""What an order request may say and how: numbers read exactly from their text, the seed's field names as
aliases, unknown fields and impossible shapes refused with 400 before anything reaches the matcher,
bodies too deeply nested and odd query numbers refused with 400 (never a 500), limits said in words."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from exchange.models import Instrument
from exchange.tests.api.reads import shown
from matching import services
from matching.models import Order
from risk.models import RiskLimit, UserRiskLimit

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00"}
WITH_QUANTITY = '{"symbol": "AAPL", "side": "buy", "price": "100.00", "quantity": NUMBER}'


def post(client, body, path="/api/submit"):
    """POST `body` as JSON text exactly as given (a str), or json.dumps of it."""
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, text, content_type="application/json")


def submit(client, **fields):
    return post(client, {**ORDER, **fields})


def recorded() -> int:
    services.command_bus_stop()  # the projection written out
    return Order.objects.count()


@pytest.fixture
def limits(embedded):
    """AAPL's limits as seeded (order size 1,000, position 10,000), without the price band and the hold
    rule; before the matcher starts, which reads them once."""
    aapl = Instrument.objects.get(symbol="AAPL")
    RiskLimit.objects.update_or_create(instrument=aapl, defaults={
        "max_order_size": Decimal(1000), "max_position": Decimal(10_000), "price_band_pct": None,
        "hold_volume_pct": None, "circuit_move_pct": None})
    return aapl


# ---- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1e1", "1E1", "1e+1", " 1", "1 ", "\u0661", "\u0665", "NaN", "Infinity",
                                  "-Infinity", "+5", "5.", ".5", "1_000", "0x10", "", "1,5", "\uff15"])
def test_a_quantity_that_is_not_a_plain_decimal_is_400(alice, text):
    response = submit(alice, quantity=text)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"
    assert "quantity" in response.json()["fields"]


@pytest.mark.parametrize("text", ["1e2", "100.0e0", "1\u0660\u0660.00", "+100.00"])
def test_a_price_that_is_not_a_plain_decimal_is_400(alice, text):
    response = submit(alice, price=text)
    assert response.status_code == 400, response.content
    assert "price" in response.json()["fields"]


@pytest.mark.parametrize("number", ["1e1", "1E1", "1.0e1", "5e0"])
def test_a_json_number_with_an_exponent_is_400(alice, number):
    response = post(alice, WITH_QUANTITY.replace("NUMBER", number))
    assert response.status_code == 400, response.content
    assert "quantity" in response.json()["fields"]
    assert recorded() == 0


def test_json_numbers_are_read_exactly_from_their_text(alice):
    # as a float this price is 100.01 (a valid tick); as written it is not a multiple of 0.01
    response = post(alice, '{"symbol": "AAPL", "side": "buy", "quantity": 5, '
                           '"price": 100.010000000000000001}')
    assert response.status_code == 400, response.content
    assert "multiple of 0.01" in response.json()["fields"]["price"][0]
    fine = post(alice, '{"symbol": "AAPL", "side": "buy", "quantity": 100, "price": 150.50}')
    assert fine.status_code == 201, fine.content
    assert fine.json()["remaining_quantity"] == "100"
    detail = shown(alice, fine.json()["order_id"])
    assert (detail["price"], detail["quantity"]) == ("150.50", "100")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_that_are_not_json_are_400(alice, constant):
    response = post(alice, WITH_QUANTITY.replace("NUMBER", constant))
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


def test_a_field_given_twice_is_400(alice):
    response = post(alice, '{"symbol": "AAPL", "side": "buy", "price": "100.00", "quantity": "5", '
                           '"quantity": "500"}')
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"
    assert "quantity" in response.json()["message"]


def test_messages_show_the_tick_as_people_write_it(alice):
    response = submit(alice, price="100.001")
    message = response.json()["fields"]["price"][0]
    assert "0.01" in message and "0.0100" not in message, message


def test_the_average_price_has_the_instrument_precision(alice, bob):
    for price in ("100.00", "100.01"):
        submit(bob, side="sell", quantity="1" if price == "100.00" else "2", price=price)
    order_id = submit(alice, quantity="3", price="100.01").json()["order_id"]  # 1 @ 100.00, 2 @ 100.01
    assert shown(alice, order_id)["average_price"] == "100.01"  # 100.00666... at the tick's precision


# ---- field names -------------------------------------------------------------------------------


def test_the_seed_example_is_a_limit_order(alice):
    response = post(alice, {"symbol": "AAPL", "side": "buy", "order_type": "limit", "price": 150.50,
                            "quantity": 100})
    assert response.status_code == 201, response.content
    assert (response.json()["status"], response.json()["remaining_quantity"]) == ("open", "100")


def test_the_seed_order_type_market_is_a_market_order(alice):
    response = post(alice, {"symbol": "AAPL", "side": "buy", "order_type": "market", "quantity": 10})
    assert response.status_code == 201, response.content  # was: a limit order without a price, rejected
    assert (response.json()["status"], response.json()["cancel_reason"]) == ("canceled", "no_liquidity")
    services.command_bus_stop()
    assert Order.objects.get().order_type == "market"


def test_type_and_order_type_must_agree(alice):
    same = submit(alice, type="limit", order_type="limit")
    assert same.status_code == 201, same.content
    response = submit(alice, type="limit", order_type="market")
    assert response.status_code == 400
    assert "order_type" in response.json()["fields"]
    bad = submit(alice, order_type="iceberg")
    assert bad.status_code == 400 and "order_type" in bad.json()["fields"]


@pytest.mark.parametrize("fields", [{"qty": "500"}, {"stop-price": "90"}, {"orderType": "market"},
                                    {"tif": "ioc"}, {"post_only": True, "postonly": False}])
def test_an_unknown_field_is_400_and_named(alice, fields):
    response = submit(alice, **fields)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_request"
    unknown = [name for name in fields if name not in ORDER and name != "post_only"]
    for name in unknown:
        assert body["fields"][name][0].startswith("unknown field"), body
    assert recorded() == 0


def test_a_misspelt_field_gets_a_hint(alice):
    response = submit(alice, quantty="5")
    assert response.json()["fields"]["quantty"] == ["unknown field (did you mean 'quantity'?)"]


# ---- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "field"), [
    ({"price": None}, "price"),                                      # a limit order without a price
    ({"type": "market"}, "price"),                                   # a market order with one
    ({"type": "stop", "price": None}, "stop_price"),                 # a stop order without a stop price
    ({"type": "stop", "stop_price": "99.00"}, "price"),              # a stop order with a price
    ({"type": "stop_limit", "stop_price": "99.00", "price": None}, "price"),
    ({"type": "stop_limit"}, "stop_price"),
    ({"stop_price": "99.00"}, "stop_price"),                         # a limit order with a stop price
    ({"type": "market", "price": None, "stop_price": "99.00"}, "stop_price"),
    ({"time_in_force": "gtd"}, "expire_at"),                         # gtd without expire_at
    ({"expire_at": "2999-01-01T00:00:00Z"}, "expire_at"),            # gtc with one
    ({"time_in_force": "gtd", "expire_at": "2001-01-01T00:00:00Z"}, "expire_at"),  # in the past
    ({"time_in_force": "gtd", "expire_at": "2999-01-01T00:00:00Z"}, "expire_at"),  # past engine time
    ({"type": "market", "price": None, "time_in_force": "day"}, "time_in_force"),
    ({"type": "market", "price": None, "post_only": True}, "post_only"),
    ({"post_only": True, "time_in_force": "ioc"}, "post_only"),
])
def test_a_shape_mistake_is_a_400_field_error_and_nothing_is_recorded(alice, fields, field):
    response = submit(alice, **fields)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"
    assert field in response.json()["fields"], response.json()
    assert recorded() == 0  # never reached the matcher: no rejected order


def test_well_shaped_orders_of_each_type_are_accepted(alice):
    assert submit(alice, type="market", price=None).status_code == 201
    assert submit(alice, type="stop", price=None, stop_price="105.00").json()["status"] == "pending"
    assert submit(alice, type="stop_limit", stop_price="105.00", price="106.00").json()["status"] == "pending"
    assert submit(alice, time_in_force="gtd", expire_at="2200-01-01T00:00:00Z").json()["status"] == "open"
    assert submit(alice, time_in_force="day").json()["status"] == "open"


def test_an_expiry_past_engine_time_never_reaches_the_matcher(alice):
    response = submit(alice, time_in_force="gtd", expire_at="9999-12-31T00:00:00Z")
    assert response.status_code == 400  # was: a journal record that could not be written, the matcher stopped
    assert "expire_at" in response.json()["fields"]
    assert submit(alice).status_code == 201


def test_a_batch_gives_each_order_the_same_errors(alice):
    orders = [{**ORDER, "price": None}, {**ORDER, "type": "market"}, {**ORDER, "qty": "1"},
              {**ORDER, "quantity": "1e1"}, {"symbol": "AAPL", "side": "buy", "order_type": "limit",
                                             "price": 150.50, "quantity": 100}]
    response = post(alice, {"orders": orders}, path="/api/orders/batch")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["http_status"] for r in results] == [400, 400, 400, 400, 201]
    assert ["price" in results[0]["fields"], "price" in results[1]["fields"]] == [True, True]
    assert results[2]["fields"]["qty"][0].startswith("unknown field")
    assert "quantity" in results[3]["fields"]
    assert results[4]["status"] == "open"


# ---- limits in words ---------------------------------------------------------------------------


def test_an_order_too_large_says_the_largest_allowed(alice, limits):
    response = submit(alice, quantity="1001")
    assert response.status_code == 422
    body = response.json()
    assert (body["code"], body["max_quantity"]) == ("order_size", "1000")
    assert "at most 1000" in body["message"]


def test_the_largest_order_is_the_user_override_when_there_is_one(alice, limits, django_user_model):
    UserRiskLimit.objects.create(user=django_user_model.objects.get(username="alice"), instrument=limits,
                                 max_order_size=Decimal(50))
    body = submit(alice, quantity="51").json()
    assert (body["code"], body["max_quantity"]) == ("order_size", "50")
    assert "at most 50" in body["message"]


def test_an_amendment_too_large_says_the_largest_allowed(alice, limits):
    order_id = submit(alice, quantity="10").json()["order_id"]
    shown(alice, order_id)
    response = alice.patch(f"/api/orders/{order_id}", {"quantity": "1001"}, content_type="application/json")
    assert response.status_code == 422
    assert (response.json()["code"], response.json()["max_quantity"]) == ("order_size", "1000")


# ---- bodies and query strings that could crash ------------------------------------------------


DEEP = "[" * 1000 + "]" * 1000
NESTED = '{"symbol": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"  # valid JSON, 41 levels


@pytest.mark.parametrize("path", ["/api/submit", "/api/orders/batch", "/api/token"])
@pytest.mark.parametrize("text", [DEEP, '{"orders": [' + DEEP + "]}", NESTED])
def test_a_deeply_nested_body_is_400(alice, path, text):
    response = post(alice, text, path=path)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "malformed_request"


def test_the_token_endpoint_reads_json_with_the_api_parser(embedded, client, django_user_model):
    django_user_model.objects.create_user("robot", password="pw")
    good = post(client, {"username": "robot", "password": "pw"}, path="/api/token")
    assert good.status_code == 200 and good.json()["token"]
    twice = post(client, '{"username": "robot", "password": "x", "password": "pw"}', path="/api/token")
    assert twice.status_code == 400 and twice.json()["code"] == "malformed_request"


@pytest.mark.parametrize("value", ["\u0661", "\u0662\u0660", "\u00b2", "\uff15", "1" * 5000, " 5", "5 "])
@pytest.mark.parametrize("url", ["/api/book/AAPL?depth={}", "/api/trades/AAPL?limit={}",
                                 "/api/orders?limit={}", "/api/fills?limit={}", "/api/candles/AAPL?limit={}"])
def test_query_numbers_in_other_digits_are_400(alice, url, value):
    from urllib.parse import quote

    response = alice.get(url.format(quote(value)))
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("url", ["/api/book/AAPL?depth=%C2%B2", "/api/trades/AAPL?limit=%D9%A1",
                                 "/api/candles/AAPL?limit=%C2%B2"])
def test_query_numbers_are_400_in_production_mode_too(alice, settings, redis_prefix, url):
    from matching.tests.worker.stream_driver import REDIS_URL

    settings.REDIS_URL, settings.MATCHER_STREAM_PREFIX = REDIS_URL, redis_prefix  # market data from Redis
    settings.EXCHANGE_MODE = "production"
    response = alice.get(url)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"


def test_the_parser_counts_depth_outside_strings_only():
    from exchange.api.parsers import MAX_DEPTH, loads

    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(ValueError, match="nested"):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert loads('{"a": "' + "[{" * 100 + '\\"' + '"}') == {"a": "[{" * 100 + '"'}
    assert loads('{"p": 1.50, "q": 10}') == {"p": "1.50", "q": 10}
