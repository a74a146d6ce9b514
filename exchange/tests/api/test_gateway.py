"""The order gateway (exchange/api/gateway.py): what it answers itself must be exactly what Django's
stack answers, status, body and headers; the rest goes to Django with its body. Each request runs
through `exchange.asgi.application`, the server's; the same request with `?format=json` goes to Django
(DRF's SubmitView)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from rest_framework.authtoken.models import Token

from exchange.api import gateway
from matching.worker.metrics import METRICS

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "5", "price": "100.00"}
HEADERS = ("Content-Type", "Content-Length", "Allow", "Vary", "WWW-Authenticate", "Retry-After",
           "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "X-Frame-Options",
           "Access-Control-Allow-Origin", "Set-Cookie")


@pytest.fixture
def robot(embedded, django_user_model):
    user = django_user_model.objects.create_user("robot", password="pw")
    return user, Token.objects.create(user=user).key


def asgi(body: bytes, headers: dict[str, str], query: str = "", chunk: int = 0) -> tuple[int, dict, dict]:
    """One POST /api/submit through exchange.asgi.application: (status, headers, JSON body)."""
    from exchange.asgi import application

    async def run() -> list[dict]:
        sent: list[dict] = []
        parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
        pending = [{"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
                   for n, part in enumerate(parts)][::-1]

        async def receive() -> dict:
            if pending:
                return pending.pop()
            await asyncio.sleep(3600)  # nothing more; Django cancels this after its response
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/submit", "raw_path": b"/api/submit",
                 "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 5000),
                 "server": ("127.0.0.1", 8000),
                 "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()),
                             *((k.lower().encode(), v.encode()) for k, v in headers.items())]}
        await application(scope, receive, send)
        return sent

    start, *chunks = async_to_sync(run)()
    sent_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    content = b"".join(c.get("body", b"") for c in chunks)
    assert int(sent_headers["content-length"]) == len(content)
    is_json = sent_headers["content-type"] == "application/json"
    chosen = {h: sent_headers.get(h.lower()) for h in HEADERS}
    return start["status"], chosen, json.loads(content) if is_json else {}


def comparable(answer: tuple) -> tuple:
    status, headers, body = answer
    body = {k: v for k, v in body.items() if k not in ("order_id", "latency_us", "trades")}
    return status, {k: v for k, v in headers.items() if k != "Content-Length"}, body


def token_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}", "Content-Type": "application/json"}


def both_ways(body: bytes, headers: dict[str, str]) -> tuple[tuple, tuple, bool]:
    """(the answer through the gateway's route, Django's answer, whether the gateway answered)."""
    before = gateway.answered
    first = asgi(body, headers)
    taken = gateway.answered == before + 1
    django = asgi(body, headers, query="format=json")
    assert gateway.answered == before + taken
    return comparable(first), comparable(django), taken


CASES = [  # (name, order fields or a raw body, the headers' change, the gateway answers, status)
    ("a valid order", {}, {}, True, 201),
    ("a risk reject", {"quantity": "100000"}, {}, True, 422),
    ("a post-only order that takes", {"side": "sell", "price": "99.00", "post_only": True}, {}, True, 422),
    ("bad JSON", b"{not json", {}, False, 400),
    ("an empty body", b"", {}, False, 400),
    ("an invalid price", {"price": "100.001"}, {}, False, 400),
    ("an unknown symbol", {"symbol": "NOPE"}, {}, False, 400),
    ("an order quick_order leaves to OrderRequest", {"quantity": 5.0}, {}, False, 201),
    ("no token", {}, {"Authorization": None}, False, 401),
    ("an unknown token", {}, {"Authorization": "Token nope"}, False, 401),
    ("Basic credentials", {}, {"Authorization": "Basic cm9ib3Q6cHc="}, False, 201),
    ("an Origin", {}, {"Origin": "https://app.example"}, False, 201),
    ("an Accept of HTML", {}, {"Accept": "text/html"}, False, 201),
    ("Accept JSON", {}, {"Accept": "application/json"}, True, 201),
    ("a charset", {}, {"Content-Type": "application/json; charset=utf-8"}, True, 201),
    ("another charset", {}, {"Content-Type": "application/json; charset=latin-1"}, False, 201),
]


@pytest.mark.parametrize(("name", "order", "change", "answered", "status"), CASES, ids=[c[0] for c in CASES])
def test_the_same_answer_as_django(robot, settings, name, order, change, answered, status):
    _, key = robot
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    if order is not None and not isinstance(order, bytes):
        assert asgi(json.dumps({**ORDER, "side": "buy", "price": "99.00"}).encode(), token_headers(key),
                    query="format=json")[0] == 201  # a bid for the post-only sell to take
    body = order if isinstance(order, bytes) else json.dumps({**ORDER, **order}).encode()
    headers = {k: v for k, v in {**token_headers(key), **change}.items() if v is not None}
    gateway_answer, django_answer, taken = both_ways(body, headers)
    assert (taken, gateway_answer[0]) == (answered, status), gateway_answer
    if taken:  # (what it hands over is Django's answer by construction: the order entry view's)
        assert gateway_answer == django_answer


def test_an_inactive_user_and_a_duplicate(robot):
    user, key = robot
    order = json.dumps({**ORDER, "client_order_id": "dup-1"}).encode()
    assert asgi(order, token_headers(key))[0] == 201
    first, again, taken = both_ways(order, token_headers(key))
    assert taken and first == again
    assert (first[0], first[2]["status"], first[2]["duplicate"]) == (201, "duplicate", True)
    user.is_active = False
    user.save()
    refused, django, taken = both_ways(json.dumps(ORDER).encode(), token_headers(key))
    assert not taken and refused == django
    assert (refused[0], refused[2]["message"]) == (401, "User inactive or deleted.")


def test_the_rate_limit_is_counted_once_on_either_path(robot):
    _, key = robot
    for n in range(10):  # the submit budget: 10 a second
        assert asgi(json.dumps({**ORDER, "price": f"{90 + n}.00"}).encode(), token_headers(key),
                    query="format=json" if n % 2 else "")[0] == 201
    before = gateway.answered
    limited, django, taken = both_ways(json.dumps(ORDER).encode(), token_headers(key))
    assert taken and gateway.answered == before + 1
    assert limited == django
    assert limited[0] == 429 and int(limited[1]["Retry-After"]) >= 1
    bad, django_bad, taken = both_ways(b"{not json", token_headers(key))  # throttled before parsing, as DRF
    assert not taken and bad == django_bad and bad[0] == 429


def test_a_body_in_pieces_and_a_body_too_large(robot, settings):
    _, key = robot
    before = gateway.answered
    status, _, body = asgi(json.dumps(ORDER).encode(), token_headers(key), chunk=7)
    assert (status, body["status"], gateway.answered) == (201, "open", before + 1)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 40
    big = json.dumps({**ORDER, "client_order_id": "x" * 40}).encode()
    assert asgi(big, token_headers(key), chunk=16)[:3:2] == (413, {"code": "request_too_large",
                                                                  "message": "the request body is too large"})
    assert gateway.answered == before + 1


def test_the_gateway_records_the_view_metric(robot, reset_metrics):
    _, key = robot
    reset_metrics()
    before = gateway.answered
    assert asgi(json.dumps(ORDER).encode(), token_headers(key))[0] == 201
    assert gateway.answered == before + 1
    assert METRICS.stage("api.submit.post").snapshot().count == 1


def test_other_requests_are_djangos(robot):
    from exchange.tests.api.test_order_entry import asgi_request

    _, key = robot
    before = gateway.answered
    assert asgi_request("GET", "/api/submit", headers={"Authorization": f"Token {key}"})[0] == 405
    assert asgi_request("POST", "/api/submit/", json.dumps(ORDER).encode(), token_headers(key))[0] == 404
    assert asgi_request("GET", "/api/orders", headers={"Authorization": f"Token {key}"})[0] == 200
    assert gateway.answered == before
