from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from exchange.health import OK, health_report
from exchange.models import Instrument


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"instruments": Instrument.objects.all()})


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == OK else 503)
