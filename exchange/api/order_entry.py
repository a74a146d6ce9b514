"""POST /api/submit as a native async view: the order entry hot path, with no thread hop on a hit.

DRF's views are synchronous: under ASGI each call runs in a thread, one at a time, and pays the
token, instrument and stp lookups in the database (about 7 ms a call, docs/PERFORMANCE.md). This view
answers the common request itself, with the same rules and the same answers as `views.SubmitView`:

    authenticate   Authorization: Token <key> (the in-process token cache), or the session (Django's
                   async session API, then DRF's CSRF check); neither: 401 with WWW-Authenticate
    throttle       SubmitView's throttle classes, counted in the same cache entries (shared through
                   Redis in production; in the event loop when the cache is this process's memory)
    parse          DRF's JSONParser
    validate       `serializers.quick_order` (the instrument from its cache), or OrderRequest itself
                   (in a thread) for anything it does not accept as it stands: errors, expire_at, ...
    submit         `services.order_submit_async`: the embedded bus or Redis, awaited in this loop
    answer         `views.submit_outcome`; errors through the API's exception handler, as DRF does

Everything else goes to `views.SubmitView` unchanged: other methods (OPTIONS, the 405s), bodies that
are not JSON (forms), an Accept other than JSON (the browsable API), `?format=`, Basic and malformed
Authorization headers. The URL keeps SubmitView as its `cls`, so the schema and docs are DRF's.
"""

from __future__ import annotations

import io
import time
from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

from exchange.api import lookups, serializers, views
from exchange.api.authentication import checked
from exchange.api.errors import exception_handler
from matching import services
from matching.engine import STPMode
from risk import selectors as risk_selectors

_drf_view = views.SubmitView.as_view()
_ACCEPTED = frozenset({"*/*", "application/*", "application/json"})
_HEADERS = {"Allow": "POST, OPTIONS", "Vary": "Accept"}  # as DRF's SubmitView answers
_renderer = JSONRenderer()


async def submit(request: HttpRequest) -> HttpResponse:
    """Route: the fast path for what it handles, SubmitView for the rest."""
    token_key = _fast_path_token(request)
    if token_key is None:
        return await sync_to_async(_drf_view)(request)
    started = time.perf_counter_ns()
    try:
        user = await _authenticate(request, token_key)
        request.user = user
        await throttle(user)
        data = parse_json(request.body) if _content_length(request) else {}
        order = await quick_validate(data) or await sync_to_async(_full_validation)(data)
        return json_response(await place(user, order, started), 201)
    except Exception as exc:
        return error_response(exc)


# Set by SubmitView.as_view() too; drf-spectacular and DRF's schema generator read them.
submit.cls = views.SubmitView  # type: ignore[attr-defined]
submit.initkwargs = {}  # type: ignore[attr-defined]
submit.view_class = views.SubmitView  # type: ignore[attr-defined]
submit.view_initkwargs = {}  # type: ignore[attr-defined]
submit.csrf_exempt = True  # type: ignore[attr-defined]  # like every DRF view: CSRF is checked for sessions


def _fast_path_token(request: HttpRequest) -> str | None:
    """The token key ("" for no Authorization header) when this view answers the request itself;
    None when SubmitView should."""
    if request.method != "POST" or request.content_type != "application/json":
        return None
    if request.content_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return None
    if api_settings.URL_FORMAT_OVERRIDE in request.GET:
        return None
    if not json_accepted(request.META.get("HTTP_ACCEPT", "")):
        return None
    header = request.META.get("HTTP_AUTHORIZATION")
    if header is None:
        return ""
    return token_key(header.encode("iso-8859-1", "replace"))  # as DRF's get_authorization_header


def token_key(header: bytes) -> str | None:
    """The key of an `Authorization: Token <key>` header; None for Basic or a malformed header (DRF
    then says exactly what is wrong)."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != b"token":
        return None
    try:
        return parts[1].decode()
    except UnicodeError:
        return None


def json_accepted(accept: str) -> bool:
    """DRF's content negotiation picks JSON, plainly (no `indent`, no other type to weigh)."""
    for media_range in accept.split(","):
        media_type, *params = media_range.split(";")
        media_type = media_type.strip()
        if media_type and media_type not in _ACCEPTED:
            return False
        if any(not p.strip().startswith("q=") for p in params):
            return False
    return True


async def _authenticate(request: HttpRequest, token_key: str) -> AbstractBaseUser:
    """DRF's order: the token, then the session (with its CSRF check); neither is a 401."""
    if token_key:
        user, _ = checked(await lookups.atoken_get(token_key))
        return user
    if settings.SESSION_COOKIE_NAME in request.COOKIES:
        user = await request.auser()
        if user.is_authenticated and user.is_active:
            if settings.CSRF_USE_SESSIONS:
                await sync_to_async(SessionAuthentication().enforce_csrf)(request)
            else:
                SessionAuthentication().enforce_csrf(request)
            return user
    raise exceptions.NotAuthenticated()


async def throttle(user: AbstractBaseUser) -> None:
    """SubmitView's throttles, as DRF's check_throttles runs them (every one counts the call)."""
    if isinstance(caches["default"], LocMemCache):  # this process's memory: nothing to wait for
        _check_throttles(user)
    else:
        await sync_to_async(_check_throttles)(user)  # Redis: shared by every server process


def _check_throttles(user: AbstractBaseUser) -> None:
    caller = SimpleNamespace(user=user)
    waits = []
    for throttle_class in views.SubmitView.throttle_classes:
        throttle = throttle_class()
        if not throttle.allow_request(caller, None):
            waits.append(throttle.wait())
    if waits:
        raise exceptions.Throttled(max((w for w in waits if w is not None), default=None))


def _content_length(request: HttpRequest) -> int:
    """As DRF reads it: nothing (Content-Length 0) is {}."""
    try:
        return int(request.META.get("CONTENT_LENGTH", request.META.get("HTTP_CONTENT_LENGTH", 0)))
    except (ValueError, TypeError):
        return 0


def parse_json(body: bytes) -> Any:
    """DRF's JSONParser on a UTF-8 body (ParseError if it is not JSON)."""
    return JSONParser().parse(io.BytesIO(body), "application/json", {"encoding": "utf-8"})


async def quick_validate(data: Any) -> dict[str, Any] | None:
    """`serializers.quick_order` with the instrument from its cache; None: OrderRequest decides."""
    symbol = data.get("symbol") if type(data) is dict else None
    if type(symbol) is str and 0 < len(symbol) <= 12:
        instrument = await lookups.ainstrument_get(symbol)
        if instrument is not None:
            return serializers.quick_order(data, instrument)
    return None


async def place(user: AbstractBaseUser, order: dict[str, Any], started: int) -> dict:
    """Submit a validated order and wait for the matcher: SubmitView's 201 body (or its ApiError)."""
    default_stp = STPMode.CANCEL_NEWEST if "stp" in order else await risk_selectors.astp_default(
        user_id=user.pk)
    spec = serializers.order_spec(order, default_stp)
    reply = await services.order_submit_async(user_id=user.pk, order=spec)
    return views.submit_outcome(reply, order["instrument"], started)


def _full_validation(data: Any) -> dict[str, Any]:
    form = serializers.OrderRequest(data=data)
    form.is_valid(raise_exception=True)
    return form.validated_data


def json_response(data: Any, status: int, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(_renderer.render(data), status=status, content_type="application/json",
                        headers={**_HEADERS, **(headers or {})})


def error_response(exc: Exception) -> HttpResponse:
    """DRF's APIView.handle_exception: 401s say how to authenticate, then the API's handler."""
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc.auth_header = "Token"  # the first authentication class's header
    answer = exception_handler(exc, {})
    if answer is None:
        raise exc
    headers = {name: answer[name] for name in ("WWW-Authenticate", "Retry-After") if answer.has_header(name)}
    return json_response(answer.data, answer.status_code, headers)
