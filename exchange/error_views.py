"""Django's error pages (urls.handler400/403/404/500) in the API's one shape under /api/.

DRF answers the errors its views raise; these cover what fails before a view runs (a malformed
multipart body read by the CSRF middleware, a refused request, an unknown path, a server error).
Pages outside /api/ keep Django's own templates.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from exchange.api.errors import body

API_PREFIX = "/api/"


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(body("malformed_request", "the request could not be read (its body or headers "
                                 "are malformed)"), status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(body("forbidden", "you may not do this"), status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(body("not_found", f"no API endpoint at {request.path}"), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(body("server_error", "the server failed; this is a bug, and it was logged"),
                            status=500)
    return defaults.server_error(request)
