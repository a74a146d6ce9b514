"""Django's ASGI handler without the thread hops that nothing needs.

Django's own handler runs the `request_started` signal and `response.close()` (which sends
`request_finished`) through `sync_to_async` on every request, because their receivers
(`close_old_connections`, `reset_queries`) are synchronous. Each request runs in its own
`ThreadSensitiveContext`, so that alone starts a thread per request and costs about 0.4 ms, measured
(docs/PERFORMANCE.md). Those receivers only touch database connections that the request opened: when
it opened none (an async view that never queried, like order entry) and no other synchronous receiver
is connected, running them in the event loop is exactly what the thread would have done, minus the
thread. Otherwise (a connection to close, a streamed or file response, an unknown receiver) this
handler hops to the request's thread exactly as Django's does.

`handle` is Django 5.2's `ASGIHandler.handle` with those two calls changed; nothing else differs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.cache import caches, close_caches
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, connections, reset_queries
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix


def _no_connection_open() -> bool:
    """No database connection is open in this request's context: `close_old_connections` then
    closes nothing (it skips a connection whose `connection` is None)."""
    return all(conn.connection is None for conn in connections.all(initialized_only=True))


def _no_cache_to_close() -> bool:
    """Every cache this request used closes as a no-op (locmem, Redis; memcached does I/O)."""
    return all(type(cache).close is BaseCache.close for cache in caches.all(initialized_only=True))


# Django's receivers of request_started/request_finished, and when each blocks on nothing.
_RECEIVERS: dict[Callable, Callable[[], bool]] = {
    reset_queries: lambda: True,
    reset_urlconf: lambda: True,
    close_old_connections: _no_connection_open,
    close_caches: _no_cache_to_close,
}


def _inline_safe(signal: Signal, sender: object) -> bool:
    """True when every receiver of `signal` is one of Django's own above and none of them has
    anything to close: running them in the event loop then blocks on nothing."""
    sync_receivers, async_receivers = signal._live_receivers(sender)
    return not async_receivers and all(
        receiver in _RECEIVERS and _RECEIVERS[receiver]() for receiver in sync_receivers)


async def send_request_started(sender: type, scope: dict) -> None:
    if _inline_safe(signals.request_started, sender):
        signals.request_started.send(sender=sender, scope=scope)
    else:
        await signals.request_started.asend(sender=sender, scope=scope)


def _closes_only_the_request(response: HttpResponseBase) -> bool:
    """The response holds no resources of its own (a file, a stream): all it closes is the request,
    whose body Django spooled into memory (a temporary file only past FILE_UPLOAD_MAX_MEMORY_SIZE)."""
    return all(isinstance(getattr(closer, "__self__", None), HttpRequest)
               for closer in response._resource_closers)


async def send_request_finished(sender: type) -> None:
    """What `response.close()` sends, for an answer made without a response object (the order gateway)."""
    if _inline_safe(signals.request_finished, sender):
        signals.request_finished.send(sender=sender)
    else:
        await signals.request_finished.asend(sender=sender)


async def close_response(response: HttpResponseBase) -> None:
    """`response.close()`, which sends `request_finished`: inline when nothing in it can block."""
    if _closes_only_the_request(response) and _inline_safe(signals.request_finished, response._handler_class):
        response.close()
    else:
        await sync_to_async(response.close)()


class ASGIHandler(DjangoASGIHandler):
    async def handle(self, scope, receive, send):
        """Django 5.2's, with `send_request_started` and `close_response` (see the module's docstring)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await send_request_started(self.__class__, scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await sync_to_async(error_response.close)()
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client disconnected meanwhile
                await self.send_response(response, send)
            return response

        # The disconnect listener first: it should not raise errors that would stop us from
        # cancelling process_request.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass  # client disconnects are ignored
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # views may handle cancellation
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await close_response(response)
        body_file.close()


def get_asgi_application() -> ASGIHandler:
    """`django.core.asgi.get_asgi_application`, with this handler."""
    import django

    django.setup(set_prefix=False)
    return ASGIHandler()
