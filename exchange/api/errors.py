"""One error shape for the whole API: {"code": machine-readable, "message": for people, ...}.

DRF's own exceptions, Django's 404 and the matcher's `Unavailable` all come out this way; anything
else is left to Django (a 500 is a bug, never a way to report bad input).
"""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from matching.worker.bus import Unavailable

_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


class ApiError(exceptions.APIException):
    """A refusal with its own code, e.g. ApiError(422, "post_only_would_take", "...")."""

    def __init__(self, status_code: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message, code)
        self.status_code = status_code
        self.code = code
        self.extra = extra


def body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, Unavailable):
        retry = max(1, math.ceil(exc.retry_after))
        return Response(body("matcher_unavailable", f"{exc}; retry later"),
                        status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(retry)})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, RequestDataTooBig):
        return Response(body("request_too_large", "the request body is too large"),
                        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, ApiError):
        return Response(body(exc.code, str(exc.detail), **exc.extra), exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        return Response(body("invalid_request", "the request is not valid: see fields", fields=exc.detail),
                        status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.APIException):
        headers = {}
        auth_header = getattr(exc, "auth_header", None)  # set by DRF on 401s: how to authenticate
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)  # Throttled's (not in DRF's stubs)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(math.ceil(wait))
        code = _CODES.get(type(exc), str(exc.default_code))
        return Response(body(code, str(exc.detail)), exc.status_code, headers=headers)
    return None
