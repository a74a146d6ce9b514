"""The site's pages without a browser: markets (public), the trading screen (logged in), the staff's
system page, log in and out. The browser drives them in exchange/tests/ui/."""

from __future__ import annotations

import pytest

from exchange.models import Instrument

pytestmark = pytest.mark.django_db


def test_markets_page_lists_instruments_for_anyone(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("AAPL", "Alphabet Inc.", "MSFT", "TSLA", "Open", 'href="/trade/AAPL/"',
                 'data-rows="/markets/rows"', "/static/js/markets.js"):
        assert text in html
    assert 'href="/accounts/login/"' in html and 'href="/accounts/signup/"' in html
    assert 'href="/admin/"' not in html  # staff only
    assert 'href="/system/"' not in html


def test_staff_see_admin_and_system_links(admin_client):
    html = admin_client.get("/").content.decode()
    assert 'href="/admin/"' in html and 'href="/system/"' in html


def test_market_rows_show_the_published_figures(client, embedded, django_user_model):
    """The fragment the markets page polls: public, figures from the matcher's published ticker."""
    from matching import services
    from matching.engine import OrderType, Side, STPMode, TimeInForce
    from matching.services import OrderSpec

    seller, buyer = (django_user_model.objects.create_user(name) for name in ("seller", "buyer"))

    def order(user, side, price_ticks, qty_lots=3):
        spec = OrderSpec(symbol="AAPL", side=side, order_type=OrderType.LIMIT, qty_lots=qty_lots,
                         price_ticks=price_ticks, stop_price_ticks=None, tif=TimeInForce.GTC, expire_at=None,
                         post_only=False, stp=STPMode.CANCEL_NEWEST, client_order_id=None)
        return services.order_submit(user_id=user.pk, order=spec)

    order(seller, Side.SELL, 13975)
    order(buyer, Side.BUY, 13975)  # a trade at 139.75
    order(seller, Side.SELL, 14000, 2)  # resting: the ask
    # (a transactional test before this one may have flushed the seeded instruments)
    Instrument.objects.update_or_create(symbol="MSFT", defaults={
        "name": "Microsoft Corp.", "tick_size": "0.01", "lot_size": "1", "status": "halted",
        "halt_reason": "circuit breaker"})
    response = client.get("/markets/rows")
    assert response.status_code == 200
    rows = {row.split('"', 1)[0]: row for row in response.content.decode().split('data-symbol="')[1:]}
    assert '<td class="num" data-field="last">139.75</td>' in rows["AAPL"]
    assert 'data-field="volume">3</td>' in rows["AAPL"]
    assert "— / 140.00" in rows["AAPL"]  # no bid, the ask
    assert "Halted" in rows["MSFT"] and "circuit breaker" in rows["MSFT"]
    assert "Halted" not in rows["AAPL"]


def test_market_rows_never_ask_to_log_in(client, embedded):
    assert client.get("/markets/rows").status_code == 200
    assert client.get("/").status_code == 200


def test_trade_page_sends_logged_out_visitors_to_log_in(client):
    response = client.get("/trade/AAPL/")
    assert response.status_code == 302
    assert response.url == "/accounts/login/?next=/trade/AAPL/"


def test_trade_page_shows_the_instrument_and_its_units(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("trader"))
    response = client.get("/trade/AAPL/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "tick 0.01 · lot 1" in html
    config = response.context["config"]
    assert (config["symbol"], config["tick"], config["lot"]) == ("AAPL", "0.01", "1")
    assert config["api"]["cancel"] == "/api/cancel/" and config["api"]["order"] == "/api/orders/"
    assert 'id="trade-config"' in html and "/static/js/trade.js" in html
    assert client.get("/trade/NOPE/").status_code == 404


def test_trade_page_says_when_the_chart_is_off(client, django_user_model, settings, tmp_path):
    """Without npm's lightweight-charts in static/vendor/ the page works and says the chart is off."""
    (tmp_path / "css").mkdir()
    settings.STATICFILES_DIRS = [tmp_path]
    client.force_login(django_user_model.objects.create_user("trader"))
    html = client.get("/trade/AAPL/").content.decode()
    assert "The chart is off" in html
    assert "lightweight-charts.standalone" not in html


def test_system_page_is_for_staff_only(client, admin_client, django_user_model):
    assert admin_client.get("/system/").status_code == 200
    assert b'data-source="/api/performance/system"' in admin_client.get("/system/").content
    response = client.get("/system/")
    assert response.status_code == 302 and response.url.startswith("/admin/login/")
    client.force_login(django_user_model.objects.create_user("trader"))
    assert client.get("/system/").status_code == 302


def test_login_then_logout(client, django_user_model):
    django_user_model.objects.create_user("trader", password="correct horse")
    assert client.get("/accounts/login/").status_code == 200

    response = client.post("/accounts/login/", {"username": "trader", "password": "correct horse"})
    assert (response.status_code, response.url) == (302, "/")
    html = client.get("/").content.decode()
    assert "trader" in html
    assert 'action="/accounts/logout/"' in html

    response = client.post("/accounts/logout/")
    assert (response.status_code, response.url) == (302, "/")
    assert 'href="/accounts/login/"' in client.get("/").content.decode()


def test_a_failed_login_says_so_in_place(client, django_user_model):
    django_user_model.objects.create_user("trader", password="correct horse")
    response = client.post("/accounts/login/", {"username": "trader", "password": "wrong"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="form-error" role="alert"' in html
    assert "Please enter a correct username and password" in html
    assert 'value="trader"' in html  # kept
