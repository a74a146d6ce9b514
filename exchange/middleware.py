"""A request carrying a NUL character anywhere it could reach the database is refused with 400.

NUL is never part of a valid symbol, client order id, query parameter, user name or cookie, and
PostgreSQL refuses it in text (the query fails: a 500). Form and JSON fields are checked by their
serializers and forms (DRF's and Django's CharField refuse NUL); this covers what reaches views
without them: the path, the query string, cookies and basic-auth credentials.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from exchange.api.errors import body
from exchange.error_views import API_PREFIX

NUL = "\x00"


def carries_nul(request: HttpRequest) -> bool:
    if NUL in request.path_info or b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
        return True
    if any(NUL in name or NUL in value for name, value in request.COOKIES.items()):
        return True
    kind, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if kind.lower() == "basic":
        try:
            return b"\x00" in base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False  # not base64: DRF refuses it with its own 401
    return NUL in credentials


Handler = Callable[[HttpRequest], HttpResponse]


def reject_nul_bytes(get_response: Handler) -> Handler:
    def middleware(request: HttpRequest) -> HttpResponse:
        if carries_nul(request):
            if request.path.startswith(API_PREFIX):
                return JsonResponse(body("invalid_request", "NUL characters are not allowed in a request's "
                                         "path, parameters, cookies or credentials"), status=400)
            return HttpResponseBadRequest("NUL characters are not allowed in a request.")
        return get_response(request)

    return middleware
