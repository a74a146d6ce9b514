"""The site's pages: markets, the trading screen, the staff's system figures, sign-up, /health.

Server-rendered; the pages' own JavaScript (static/js/) reads the REST API and the WebSocket feeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from exchange.health import OK, health_report
from exchange.models import Instrument
from matching import services

CHART_SCRIPT = "vendor/lightweight-charts/lightweight-charts.standalone.production.js"
CHART_LICENSE = "vendor/lightweight-charts/LICENSE"


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The markets: every instrument; its figures come from `market_rows` (loaded and refreshed by
    static/js/markets.js, and live over the WebSocket), so this page never waits for the matcher."""
    return render(request, "markets.html", {"instruments": Instrument.objects.order_by("symbol")})


@dataclass(frozen=True)
class MarketRow:
    instrument: Instrument
    last: Decimal | None
    change: Decimal | None
    change_pct: Decimal | None
    high: Decimal | None
    low: Decimal | None
    volume: Decimal
    bid: Decimal | None
    ask: Decimal | None


def market_row(instrument: Instrument) -> MarketRow:
    """One instrument's figures as the matcher last published them (the 24h window's open, high, low,
    volume; change against its open)."""
    ticker = services.market_data().ticker(instrument.symbol)

    def price(ticks: int | None) -> Decimal | None:
        return None if ticks is None else instrument.ticks_to_price(ticks)

    last, opened = price(ticker.last), price(ticker.open)
    change = None if last is None or opened is None else last - opened
    change_pct = None if change is None or not opened else (change * 100 / opened).quantize(Decimal("0.01"))
    return MarketRow(instrument=instrument, last=last, change=change, change_pct=change_pct,
                     high=price(ticker.high), low=price(ticker.low),
                     volume=instrument.lots_to_qty(ticker.volume), bid=price(ticker.bid),
                     ask=price(ticker.ask))


@never_cache
@require_safe
def market_rows(request: HttpRequest) -> HttpResponse:
    """The markets table's rows (an HTML fragment): the markets page polls it while its WebSocket is
    down. Public, like the page: logged-out visitors see the markets too."""
    rows = [market_row(instrument) for instrument in Instrument.objects.order_by("symbol")]
    return render(request, "partials/market_rows.html", {"rows": rows})


@login_required
@require_safe
def trade(request: HttpRequest, symbol: str) -> HttpResponse:
    """The trading screen of one instrument (logged-out visitors go to the login page first)."""
    instrument = get_object_or_404(Instrument, symbol=symbol)
    chart = finders.find(CHART_SCRIPT) is not None  # npm installed it (scripts/_venv.sh ensure_ui_assets)
    config: dict[str, Any] = {
        "symbol": instrument.symbol,
        "tick": str(instrument.tick_size.normalize()),
        "lot": str(instrument.lot_size.normalize()),
        "status": instrument.status,
        "username": request.user.get_username(),
        "chart": chart,
        "ws_path": "/ws",
        "api": {"book": reverse("api-book", args=[instrument.symbol]),
                "trades": reverse("api-trades", args=[instrument.symbol]),
                "ticker": reverse("api-ticker", args=[instrument.symbol]),
                "candles": reverse("api-candles", args=[instrument.symbol]),
                "orders": reverse("api-orders"), "fills": reverse("api-fills"),
                "account": reverse("api-account"), "submit": reverse("api-submit"),
                "instruments": reverse("api-instruments"),
                "cancel": reverse("api-cancel", args=[0]).removesuffix("0"),
                "order": reverse("api-order", args=[0]).removesuffix("0")},
    }
    return render(request, "trade.html", {
        "instrument": instrument, "config": config, "chart": chart,
        "chart_script": CHART_SCRIPT, "chart_license": CHART_LICENSE,
        "instruments": Instrument.objects.order_by("symbol"),
    })


@staff_member_required
@require_safe
def system(request: HttpRequest) -> HttpResponse:
    """Staff only: the live system figures (GET /api/performance/system) as charts."""
    return render(request, "system.html", {"source": reverse("api-performance-system")})


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on pages that name no icon (admin, the browsable API)."""
    return redirect(static("favicon.ico"))


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == OK else 503)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """A new account (username and password), logged in at once; it opens with the starting cash."""
    if request.user.is_authenticated:
        return redirect("home")
    form: UserCreationForm[User] = UserCreationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})
