"""Server time of every /api/ request, per view and method: the `api.<url name>.<method>` stages of
`matching.worker.metrics.METRICS` (e.g. `api.submit.post`), shown by GET /api/performance/system.

Outermost in MIDDLEWARE, so it times everything the server does for the request (authentication,
throttling, the view, the other middleware), not the network. Sync or async, as the stack below it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from matching.worker.metrics import METRICS

PREFIX = "/api/"
METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})


def stage_name(request: HttpRequest) -> str:
    """api.<url name without its api- prefix>.<method>; a bounded set of names whatever the request."""
    match = request.resolver_match
    name = (match.url_name if match is not None else None) or "unresolved"
    method = (request.method or "").lower()
    return f"api.{name.removeprefix('api-')}.{method if method in METHODS else 'other'}"


@sync_and_async_middleware
def api_metrics(get_response: Callable) -> Callable:
    if iscoroutinefunction(get_response):
        async def middleware(request: HttpRequest) -> HttpResponseBase:
            if not request.path_info.startswith(PREFIX):
                return await get_response(request)
            started = time.perf_counter_ns()
            try:
                return await get_response(request)
            finally:
                METRICS.stage(stage_name(request)).record(time.perf_counter_ns() - started)

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        if not request.path_info.startswith(PREFIX):
            return get_response(request)
        started = time.perf_counter_ns()
        try:
            return get_response(request)
        finally:
            METRICS.stage(stage_name(request)).record(time.perf_counter_ns() - started)

    return sync_middleware
