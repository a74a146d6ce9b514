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
