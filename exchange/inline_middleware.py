"""Django's middleware, unchanged in behaviour, without a thread hop per step on async requests.

Under ASGI, Django runs every `process_request`, `process_view` and `process_response` of a
`MiddlewareMixin` middleware through `sync_to_async`: with the default stack that is about a dozen
thread hops per request (1.2 ms a request measured on the 2-core VM, more than the whole order entry
path; docs/PERFORMANCE.md). Most of these steps only read headers and set attributes. Each class here
is Django's own with a test that says when a step can block (a session to save, messages to store,
CSRF in the session, a form body to parse); such a step still hops exactly as before, the others run
in the event loop. On sync requests (WSGI, the test client) nothing changes at all.

`WhiteNoiseMiddleware` gets the same treatment: WhiteNoise is sync-only, so Django adapted the whole
stack below it twice per request; now only static files (under its prefixes) go through a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security
from whitenoise import middleware as whitenoise

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


class InlineMixin:
    """`MiddlewareMixin.__acall__` that calls a step directly when `inline_request`/`inline_response`
    say it cannot block, and through `sync_to_async` (as Django does) otherwise."""

    process_request: Callable[[HttpRequest], HttpResponseBase | None]
    process_response: Callable[[HttpRequest, HttpResponseBase], HttpResponseBase]
    get_response: Callable[..., Any]

    def inline_request(self, request: HttpRequest) -> bool:
        return True

    def inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return True

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            if self.inline_request(request):
                response = self.process_request(request)
            else:
                response = await sync_to_async(self.process_request, thread_sensitive=True)(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.inline_response(request, response):
                response = self.process_response(request, response)
            else:
                response = await sync_to_async(self.process_response, thread_sensitive=True)(request,
                                                                                          response)
        return response


class SecurityMiddleware(InlineMixin, security.SecurityMiddleware):
    """Headers and the HTTPS redirect: never blocks."""


class CommonMiddleware(InlineMixin, common.CommonMiddleware):
    """User agents, www and slash redirects (URL resolving), Content-Length: never blocks."""


class XFrameOptionsMiddleware(InlineMixin, clickjacking.XFrameOptionsMiddleware):
    """One header: never blocks."""


class AuthenticationMiddleware(InlineMixin, auth.AuthenticationMiddleware):
    """Sets lazy `request.user` and `request.auser`; the session is read only when one is used."""


class SessionMiddleware(InlineMixin, sessions.SessionMiddleware):
    """Creating the (lazy) session store never blocks; saving a modified session does."""

    def inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        return session is None or not (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(InlineMixin, messages.MessageMiddleware):
    """Storing messages may write the session; a request that used or added none stores nothing."""

    def inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is None or not (storage.used or storage.added_new)


class CsrfViewMiddleware(InlineMixin, csrf.CsrfViewMiddleware):
    """The cookie is read and set without blocking unless CSRF_USE_SESSIONS keeps it in the session;
    checking a token may parse a form body, so only exempt views, safe methods and the test client's
    opt-out are decided in the event loop."""

    def __init__(self, get_response: Callable[..., Any]) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(self):  # async mode: Django then awaits process_view as it is
            sync_view = self.process_view

            async def process_view(request: HttpRequest, callback: Callable, callback_args: tuple,
                                   callback_kwargs: dict) -> HttpResponseBase | None:
                if not settings.CSRF_USE_SESSIONS and (
                        getattr(request, "csrf_processing_done", False)
                        or getattr(callback, "csrf_exempt", False)
                        or request.method in _SAFE_METHODS
                        or getattr(request, "_dont_enforce_csrf_checks", False)):
                    return sync_view(request, callback, callback_args, callback_kwargs)
                return await sync_to_async(sync_view, thread_sensitive=True)(
                    request, callback, callback_args, callback_kwargs)

            self.process_view = process_view

    def inline_request(self, request: HttpRequest) -> bool:
        return not settings.CSRF_USE_SESSIONS

    def inline_response(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return not settings.CSRF_USE_SESSIONS


class WhiteNoiseMiddleware(whitenoise.WhiteNoiseMiddleware):
    """WhiteNoise's middleware, async-capable: a request outside its URL prefixes goes straight on."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any] | None = None, settings: Any = settings) -> None:
        super().__init__(get_response, settings)
        self._prefixes = tuple({self.static_prefix, *(prefix for _, prefix in self.directories)})
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path_info.startswith(self._prefixes):
            return await self.get_response(request)
        static_file = await sync_to_async(self._find, thread_sensitive=True)(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self.serve, thread_sensitive=True)(static_file, request)

    def _find(self, path: str) -> Any:
        return self.find_file(path) if self.autorefresh else self.files.get(path)
