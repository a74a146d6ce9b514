"""The order gateway: POST /api/submit from programs answered before Django's request machinery.

Order entry through Django costs the server about 460 µs of event-loop CPU an order, most of it
Django's request and response handling and its middleware (docs/PERFORMANCE.md). Programs that
authenticate with `Authorization: Token <key>` need none of what that machinery is for: no session,
no CSRF (there is no cookie to ride on), no CORS (no `Origin`: not a browser). This raw ASGI handler
answers exactly those requests, and only in the common case:

    POST /api/submit, no query string, `Authorization: Token <key>`, no `Origin` header, a JSON body
    (UTF-8) no larger than DATA_UPLOAD_MAX_MEMORY_SIZE, Accept absent or JSON, an allowed Host,
    a known active user (the token cache), an order `serializers.quick_order` accepts as it stands.

It then does what `order_entry.submit` does with the same functions (throttles counted in the same
cache entries, `order_entry.place`, the API's exception handler for 409/422/429/503) and answers
with the headers Django's middleware would add, run on the answer as the middleware runs them.
Everything else goes to Django unchanged, with the body replayed: every other answer (401, 400, 413,
the browsable API...) stays Django's and DRF's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.http import parse_header_parameters
from rest_framework.exceptions import ParseError

from exchange import asgi_handler
from exchange.api import lookups, order_entry
from matching.worker.metrics import METRICS

PATH = "/api/submit"
STAGE = "api.submit.post"  # metrics_middleware's name for this view and method
answered = 0  # requests the gateway answered itself (the tests read it)

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class OrderGateway:
    """ASGI: the gateway's requests answered here, every other one by `django_app`."""

    def __init__(self, django_app: Callable) -> None:
        self.django_app = django_app

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        key = _token_key(scope)
        if key is None:
            return await self.django_app(scope, receive, send)
        body, complete = await _read_body(scope, receive)
        if body is None:
            return  # the client left
        if not (complete and await _answer(key, body, send)):
            await self.django_app(scope, _replay(body, complete, receive), send)


def _token_key(scope: dict) -> str | None:
    """The token key when the request is one the gateway may answer; None for Django's."""
    if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH
            or scope.get("query_string") or scope.get("root_path") or not _defaults()):
        return None
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in headers:
            return None  # a repeated header: Django decides how to read it
        headers[name] = value
    if b"origin" in headers or b"authorization" not in headers or not _host_allowed(headers.get(b"host")):
        return None
    content_type, params = parse_header_parameters(headers.get(b"content-type", b"").decode("latin-1"))
    if content_type != "application/json" or params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return None
    if not order_entry.json_accepted(headers.get(b"accept", b"").decode("latin-1")):
        return None
    return order_entry.token_key(headers[b"authorization"])


def _defaults() -> bool:
    """The settings the gateway's answers assume: no HTTPS redirect, no HSTS, no refused user agents
    (requests then take the same path through every middleware, whatever the scheme)."""
    return not (settings.SECURE_SSL_REDIRECT or settings.SECURE_HSTS_SECONDS or settings.PREPEND_WWW
                or settings.DISALLOWED_USER_AGENTS or settings.USE_X_FORWARDED_HOST)


def _host_allowed(host: bytes | None) -> bool:
    """HttpRequest.get_host() would not refuse it (a 400 from Django otherwise)."""
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host.decode("latin-1")) if host else ("", "")
    return bool(domain) and validate_host(domain, allowed)


async def _read_body(scope: dict, receive: Receive) -> tuple[bytes | None, bool]:
    """(body, complete); complete is False once it outgrows DATA_UPLOAD_MAX_MEMORY_SIZE (Django then
    reads the rest and refuses it); body None if the client disconnected."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """`receive` with what the gateway read given back first."""
    pending = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()

    return replay


async def _answer(key: str, body: bytes, send: Send) -> bool:
    """Answer the order, or False (nothing sent, nothing counted) for Django to."""
    started = time.perf_counter_ns()
    async with ThreadSensitiveContext():  # a cache miss's query runs in this request's thread, as in Django
        await asgi_handler.send_request_started(asgi_handler.ASGIHandler, {})
        try:
            order, user = await _accepted(key, body)
            if order is None:
                return False
            try:
                await order_entry.throttle(user)
                response = order_entry.json_response(await order_entry.place(user, order, started), 201)
            except Exception as exc:
                response = order_entry.error_response(exc)
            await _send(_as_middleware_answers(response), send)
        finally:
            await asgi_handler.send_request_finished(asgi_handler.ASGIHandler)
    global answered
    answered += 1
    METRICS.stage(STAGE).record(time.perf_counter_ns() - started)
    return True


async def _accepted(key: str, body: bytes) -> tuple[dict[str, Any] | None, Any]:
    """(the order, its user) when the gateway answers it as it stands; (None, None) otherwise."""
    token = await lookups.atoken_get(key)
    if token is None or not token.user.is_active:
        return None, None  # DRF's 401s
    try:
        data = order_entry.parse_json(body)
    except ParseError:
        return None, None
    return await order_entry.quick_validate(data), token.user


def _as_middleware_answers(response: HttpResponse) -> HttpResponse:
    """The response as MIDDLEWARE leaves it: each middleware's own response step, innermost first,
    for this request (the others add nothing to a token-authenticated answer)."""
    request = HttpRequest()
    request.method, request.path = "POST", PATH
    request.path_info = PATH
    response = XFrameOptionsMiddleware(_unused).process_response(request, response)
    response = CommonMiddleware(_unused).process_response(request, response)  # Content-Length
    response = CorsMiddleware(_unused).add_response_headers(request, response)  # Vary: origin
    return SecurityMiddleware(_unused).process_response(request, response)


def _unused(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the gateway calls response steps only")


async def _send(response: HttpResponse, send: Send) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
