import pytest

from exchange.models import Instrument

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/exchange/instrument/"


def test_staff_reach_instrument_admin(admin_client):
    response = admin_client.get(CHANGELIST, {"status__exact": "open", "q": "apple"})
    assert response.status_code == 200
    assert b"AAPL" in response.content
    assert b"MSFT" not in response.content


@pytest.mark.parametrize("staff", [None, False])
def test_others_are_sent_to_admin_login(client, django_user_model, staff):
    if staff is False:
        client.force_login(django_user_model.objects.create_user("trader"))
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_status_is_read_only_here(admin_client):
    """Halts and resumes are commands to the matcher (actions; risk/tests/test_services.py), and the
    status they set is projected back: never edited in the form."""
    aapl = Instrument.objects.get(symbol="AAPL")
    page = admin_client.get(f"{CHANGELIST}{aapl.pk}/change/")
    assert page.status_code == 200
    assert b'name="name"' in page.content
    assert b'name="status"' not in page.content
    assert b'name="halt_reason"' not in page.content
    actions = admin_client.get(CHANGELIST).content
    assert b"Halt trading in selected instruments" in actions


# ---- issue 12: admin as people read it ---------------------------------------------------------------

@pytest.fixture
def orders(django_user_model):
    """A trade at 139.75 between alice and the market maker, and a resting order of alice's."""
    from exchange.marketmaker.accounts import USERNAME
    from matching.engine import Side
    from matching.models import Order
    from matching.tests.test_projector import Feed

    alice = django_user_model.objects.create_user("alice")
    maker = django_user_model.objects.create_user(USERNAME)
    feed = Feed()
    quote = feed.order(maker, Side.SELL, 5, 13975, client_order_id="mm-quote")
    taken = feed.order(alice, Side.BUY, 2, 13975, client_order_id="alice-take")
    resting = feed.order(alice, Side.BUY, 7, 13950, client_order_id="alice-rest")
    assert quote and taken and resting
    from risk.models import Position  # the risk stage's projection (this bare matcher has none)

    aapl = Instrument.objects.get(symbol="AAPL")
    Position.objects.create(user=alice, instrument=aapl, qty=2, cost="279.50")
    return Order.objects.get(pk=quote.pk), Order.objects.get(pk=taken.pk), Order.objects.get(pk=resting.pk)


def test_instrument_sizes_read_as_people_write_them(admin_client):
    listing = admin_client.get(CHANGELIST).content.decode()
    assert '<td class="field-tick_size">0.01</td>' in listing
    assert "0.01000000" not in listing
    aapl = Instrument.objects.get(symbol="AAPL")
    form = admin_client.get(f"{CHANGELIST}{aapl.pk}/change/").content.decode()
    assert 'name="tick_size" value="0.01"' in form
    assert 'name="lot_size" value="1"' in form


def test_order_list_shows_prices_and_quantities_as_decimals(admin_client, orders):
    resting = orders[2]
    listing = admin_client.get("/admin/matching/order/").content.decode()
    assert ">139.75<" in listing and ">139.50<" in listing
    assert ">13975<" not in listing
    page = admin_client.get(f"/admin/matching/order/{resting.pk}/change/").content.decode()
    assert "139.50" in page and "13950" not in page


def test_order_list_filters_out_the_market_maker(admin_client, orders):
    hidden = admin_client.get("/admin/matching/order/", {"market_maker": "hide"}).content.decode()
    assert "alice-take" in hidden and "alice-rest" in hidden
    assert "mm-quote" not in hidden
    only = admin_client.get("/admin/matching/order/", {"market_maker": "only"}).content.decode()
    assert "mm-quote" in only and "alice-take" not in only


@pytest.mark.parametrize("path", ["/admin/matching/order/", "/admin/matching/trade/",
                                  "/admin/matching/auditevent/", "/admin/risk/position/"])
def test_projected_rows_are_read_only(admin_client, orders, path):
    from django.apps import apps

    model = {"order": "matching.Order", "trade": "matching.Trade", "auditevent": "matching.AuditEvent",
             "position": "risk.Position"}[path.rstrip("/").rsplit("/", 1)[-1]]
    row = apps.get_model(model).objects.order_by("pk").first()
    assert row is not None
    page = admin_client.get(f"{path}{row.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html  # no Save
    assert "deletelink" not in html  # no Delete
    assert admin_client.post(f"{path}{row.pk}/change/", {}).status_code == 403
    assert admin_client.get(f"{path}{row.pk}/delete/").status_code == 403
    assert "delete_selected" not in admin_client.get(path).content.decode()


def test_audit_trail_reads_in_instrument_units(admin_client, orders):
    listing = admin_client.get("/admin/matching/auditevent/", {"kind__exact": "accepted"}).content.decode()
    assert "price=139.50, qty=7" in listing
    assert "13950" not in listing


def test_trades_and_positions_read_in_instrument_units(admin_client, orders):
    trades = admin_client.get("/admin/matching/trade/").content.decode()
    assert ">139.75<" in trades and ">2<" in trades
    positions = admin_client.get("/admin/risk/position/").content.decode()
    assert "field-quantity\">2</td>" in positions
    assert "00000000" not in positions
