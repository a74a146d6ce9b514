"""POST /api/submit's async path (exchange/api/order_entry.py) and what makes it fast: the in-process
caches (each change applies to the very next order), the async middleware, the ASGI handler. The
answers must be the ones DRF's SubmitView gives: the comparisons below run the same request both ways
(`?format=json` sends it to SubmitView)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from exchange.api import order_entry, serializers
from exchange.models import Instrument
from matching import services
from matching.models import Order

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00"}


@pytest.fixture
def robot(embedded, django_user_model):
    user = django_user_model.objects.create_user("robot", password="pw")
    return user, Token.objects.create(user=user).key


def post(key: str, order: dict | None = None, path: str = "/api/submit", **extra: str):
    return Client().post(path, {**ORDER, **(order or {})}, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Token {key}", **extra)


@pytest.fixture
def drf_spy(monkeypatch):
    """Counts the requests order_entry hands to SubmitView."""
    calls = []
    real = order_entry._drf_view

    def spy(request):
        calls.append(request.method)
        return real(request)

    monkeypatch.setattr(order_entry, "_drf_view", spy)
    return calls


# ---- the caches: every change applies to the next order -------------------------------------------

def test_a_deleted_token_stops_working_at_once(robot):
    _, key = robot
    assert post(key).status_code == 201  # the token is cached now
    Token.objects.filter(key=key).delete()
    refused = post(key)
    assert refused.status_code == 401
    assert refused.json() == {"code": "not_authenticated", "message": "Invalid token."}
    assert refused["WWW-Authenticate"] == "Token"
    other = Client().get("/api/orders", HTTP_AUTHORIZATION=f"Token {key}")  # DRF's views share the cache
    assert other.status_code == 401


def test_a_deactivated_user_is_refused_at_once(robot):
    user, key = robot
    assert post(key).status_code == 201
    assert Client().get("/api/orders", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    user.is_active = False
    user.save()
    refused = post(key)
    assert (refused.status_code, refused.json()["message"]) == (401, "User inactive or deleted.")
    assert Client().get("/api/orders", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


def test_a_new_tick_size_applies_to_the_next_order(robot):
    _, key = robot
    assert post(key, {"price": "100.005"}).status_code == 400  # tick 0.01, and AAPL is cached now
    aapl = Instrument.objects.get(symbol="AAPL")
    aapl.tick_size = Decimal("0.005")
    aapl.save()
    placed = post(key, {"price": "100.005"})
    assert placed.status_code == 201, placed.content
    aapl.tick_size = Decimal("0.01")
    aapl.save()
    again = post(key, {"price": "100.005"})
    assert again.status_code == 400
    assert "price" in again.json()["fields"]


def test_a_new_stp_default_applies_to_the_next_order(embedded, django_user_model):
    browser = Client()
    browser.force_login(django_user_model.objects.create_user("carol"))
    before = browser.post("/api/submit", ORDER, content_type="application/json").json()["order_id"]
    assert browser.patch("/api/account", {"stp_default": "cancel_both"},
                         content_type="application/json").status_code == 200
    after = browser.post("/api/submit", ORDER, content_type="application/json").json()["order_id"]
    services.command_bus_stop()  # write the projection out
    assert Order.objects.get(order_id=before).stp == "cancel_newest"
    assert Order.objects.get(order_id=after).stp == "cancel_both"


# ---- the async path is the one taken, by both test clients ------------------------------------------

def test_the_async_client_and_the_test_client_take_the_async_path(robot, drf_spy):
    _, key = robot
    headers = {"Authorization": f"Token {key}"}
    placed = async_to_sync(AsyncClient().post)("/api/submit", ORDER, content_type="application/json",
                                               headers=headers)
    assert placed.status_code == 201, placed.content
    body = placed.json()
    assert (body["success"], body["status"], body["remaining_quantity"]) == (True, "open", "5")
    assert set(body) == {"success", "order_id", "status", "cancel_reason", "trades", "remaining_quantity",
                         "latency_us"}
    assert post(key, {"side": "sell", "price": "101.00"}).json()["status"] == "open"
    assert drf_spy == []


def test_the_async_client_with_a_session(embedded, django_user_model, drf_spy):
    user = django_user_model.objects.create_user("dave")

    async def run() -> tuple[int, int]:
        browser = AsyncClient()
        await browser.aforce_login(user)
        ok = await browser.post("/api/submit", ORDER, content_type="application/json")
        strict = AsyncClient(enforce_csrf_checks=True)
        await strict.aforce_login(user)
        refused = await strict.post("/api/submit", ORDER, content_type="application/json")
        assert "CSRF" in refused.json()["message"]
        anonymous = await AsyncClient().post("/api/submit", ORDER, content_type="application/json")
        assert anonymous["WWW-Authenticate"] == "Token"
        return ok.status_code, refused.status_code, anonymous.status_code

    assert async_to_sync(run)() == (201, 403, 401)
    assert drf_spy == []


@pytest.mark.parametrize(("how", "extra"), [
    ("a form body", {}),
    ("the browsable API", {"HTTP_ACCEPT": "text/html"}),
    ("?format=json", {}),
])
def test_what_the_async_path_hands_to_submit_view(robot, drf_spy, how, extra):
    _, key = robot
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    if how == "a form body":
        response = client.post("/api/submit", ORDER)
    else:
        path = "/api/submit?format=json" if how == "?format=json" else "/api/submit"
        response = client.post(path, ORDER, content_type="application/json", **extra)
    assert response.status_code == 201, response.content
    assert drf_spy == ["POST"]
    assert client.options("/api/submit").status_code == 200  # OPTIONS and GET stay DRF's
    assert client.get("/api/submit").status_code == 405


def test_basic_auth_goes_to_submit_view(robot, drf_spy):
    import base64

    credentials = base64.b64encode(b"robot:pw").decode()
    response = Client().post("/api/submit", ORDER, content_type="application/json",
                             HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 201, response.content
    assert drf_spy == ["POST"]


# ---- the same answers as SubmitView -------------------------------------------------------------------

SAME_ANSWER_CASES = [
    {"quantity": "NaN"}, {"quantity": "1e999"}, {"quantity": 10**30}, {"quantity": True}, {"quantity": [5]},
    {"quantity": " 5 "}, {"quantity": 5.0}, {"price": "100.001"}, {"price": None}, {"symbol": "NOPE"},
    {"symbol": " AAPL"}, {"side": "long"}, {"side": None}, {"type": "market", "price": None},
    {"type": "stop", "stop_price": "99.00"}, {"time_in_force": "ioc"}, {"time_in_force": "day"},
    {"post_only": "true"}, {"post_only": 1}, {"stp": "none"}, {"stp": None}, {"client_order_id": "a b"},
    {"client_order_id": "x\n"}, {"expire_at": "2031-01-01T00:00:00Z", "time_in_force": "gtd"},
    {"expire_at": "soon"}, {"extra": "ignored"},
]


def answer(response) -> tuple:
    body = response.json()
    for volatile in ("order_id", "latency_us", "trades"):
        body.pop(volatile, None)
    headers = {name: response.get(name) for name in ("Content-Type", "Allow", "Vary", "WWW-Authenticate",
                                                       "Retry-After", "X-Frame-Options")}
    return response.status_code, body, headers


@pytest.mark.parametrize("fields", SAME_ANSWER_CASES)
def test_the_same_answer_as_submit_view(robot, fields):
    _, key = robot
    fast, drf = post(key, fields), post(key, fields, path="/api/submit?format=json")
    if fast.status_code == 201:  # (the second of two with one client_order_id is a duplicate)
        assert drf.status_code == 201
        if "client_order_id" not in fields:
            assert answer(fast)[1] == answer(drf)[1]
    else:
        assert answer(fast) == answer(drf)


@pytest.mark.parametrize(("body", "headers"), [
    ("{not json", {}),
    ("", {}),
    ("[1, 2]", {}),
    ('{"quantity": NaN}', {}),
    (json.dumps(ORDER), {"HTTP_AUTHORIZATION": "Token"}),
    (json.dumps(ORDER), {"HTTP_AUTHORIZATION": "Token a b"}),
    (json.dumps(ORDER), {"HTTP_AUTHORIZATION": "Token nope"}),
])
def test_the_same_errors_as_submit_view(robot, body, headers):
    _, key = robot
    headers = {"HTTP_AUTHORIZATION": f"Token {key}", **headers}
    fast = Client().post("/api/submit", body, content_type="application/json", **headers)
    drf = Client().post("/api/submit?format=json", body, content_type="application/json", **headers)
    assert answer(fast) == answer(drf)
    assert fast.status_code in (400, 401)


def test_the_same_rate_limit_counted_on_both_paths(robot):
    _, key = robot
    paths = ["/api/submit", "/api/submit?format=json"] * 5  # alternately the async path and SubmitView
    answers = [post(key, {"price": f"{90 + n}.00"}, path=path).status_code for n, path in enumerate(paths)]
    assert answers == [201] * 10
    limited, limited_drf = post(key), post(key, path="/api/submit?format=json")
    assert answer(limited) == answer(limited_drf)
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1


# ---- the quick validator agrees with OrderRequest -----------------------------------------------------

def decimal_texts() -> st.SearchStrategy:
    return st.one_of(st.sampled_from(["1", "5", "0", "-1", "1.5", "100.00", "100.001", "99.99", " 7 ", "1e3",
                                      "NaN", "inf", "", "x", "0.01", "1" * 41]),
                     st.integers(min_value=-5, max_value=10**20), st.floats(allow_nan=True), st.none(),
                     st.booleans())


FIELDS = {
    "symbol": st.sampled_from(["AAPL", "AAPL ", "aapl", "NOPE", "", 5]),
    "side": st.sampled_from(["buy", "sell", "BUY", "", None, 1]),
    "type": st.sampled_from(["limit", "market", "stop", "stop_limit", "iceberg", None]),
    "quantity": decimal_texts(),
    "price": decimal_texts(),
    "stop_price": decimal_texts(),
    "time_in_force": st.sampled_from(["gtc", "ioc", "fok", "day", "gtd", "forever", None]),
    "expire_at": st.sampled_from([None, "2031-01-01T00:00:00Z", "later"]),
    "post_only": st.sampled_from([True, False, "true", 0, None]),
    "stp": st.sampled_from(["none", "cancel_newest", "cancel_oldest", "cancel_both", "decrement", "x", None]),
    "client_order_id": st.sampled_from(["abc-1", "a:b.c_d", "", "a b", "x" * 65, "x\n", None, 7]),
}
READ_BY_THE_VIEW = ("side", "type", "qty_lots", "price_ticks", "stop_price_ticks", "time_in_force",
                    "expire_at", "post_only", "stp", "client_order_id")


@pytest.mark.django_db
@given(data=st.fixed_dictionaries({"symbol": FIELDS["symbol"]},
                                  optional={k: v for k, v in FIELDS.items() if k != "symbol"}))
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_quick_order_agrees_with_order_request(data):
    aapl, _ = Instrument.objects.get_or_create(symbol="AAPL", defaults={"name": "Apple", "tick_size": "0.01",
                                                                         "lot_size": "1"})
    quick = serializers.quick_order(data, aapl)
    if quick is None:
        return  # OrderRequest decides
    form = serializers.OrderRequest(data=data)
    assert form.is_valid(), (data, form.errors)
    full = form.validated_data
    for name in READ_BY_THE_VIEW:
        assert (name in quick) == (name in full) or name == "expire_at", (name, data)
        assert quick.get(name) == full.get(name), (name, data)
    assert quick["instrument"].symbol == full["instrument"].symbol


# ---- the ASGI handler and the middleware, async -------------------------------------------------------

def asgi_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple:
    """One request through exchange.asgi's application (the server's handler): (status, headers, body)."""
    from exchange.asgi import application

    async def run() -> list[dict]:
        sent: list[dict] = []
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            if pending:
                return pending.pop()
            await asyncio.sleep(3600)  # nothing more; the handler cancels this after the response
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                 "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()),
                             *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())]}
        await application(scope, receive, send)
        return sent

    start, *chunks = async_to_sync(run)()
    return start["status"], dict(start["headers"]), b"".join(c.get("body", b"") for c in chunks)


def test_order_entry_through_the_asgi_handler_without_a_thread(robot, monkeypatch):
    import asgiref.sync

    _, key = robot
    headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
    assert asgi_request("POST", "/api/submit", json.dumps(ORDER).encode(), headers)[0] == 201  # caches filled
    hops = []
    real = asgiref.sync.SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", type(self.func).__name__))
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(asgiref.sync.SyncToAsync, "__call__", counted)
    status, response_headers, body = asgi_request("POST", "/api/submit", json.dumps(ORDER).encode(), headers)
    assert status == 201, body
    assert json.loads(body)["status"] == "open"
    assert hops == []  # no middleware step, no signal, no lookup left the event loop
    assert response_headers[b"X-Frame-Options"] == b"DENY"  # the middleware ran all the same
    assert response_headers[b"X-Content-Type-Options"] == b"nosniff"
    assert response_headers[b"Content-Length"] == str(len(body)).encode()


def test_pages_and_a_session_login_through_the_async_middleware(embedded, django_user_model):
    django_user_model.objects.create_user("erin", password="s3cret-pw")

    async def run() -> tuple:
        browser = AsyncClient()
        home = await browser.get("/")
        login = await browser.post("/accounts/login/", {"username": "erin", "password": "s3cret-pw"})
        account = await browser.get("/api/account")  # the session saved at login (a thread hop) works
        return home, login, account

    home, login, account = async_to_sync(run)()
    assert home.status_code == 200
    assert home["X-Frame-Options"] == "DENY"
    assert login.status_code == 302
    assert account.status_code == 200
    assert account.json()["username"] == "erin"
    assert asgi_request("GET", "/static/nope.css")[0] == 404  # static files still go through WhiteNoise

