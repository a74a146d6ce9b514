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


def test_halt_and_resume_actions(admin_client):
    aapl = Instrument.objects.get(symbol="AAPL")
    admin_client.post(CHANGELIST, {"action": "halt", "_selected_action": [aapl.pk]})
    aapl.refresh_from_db()
    assert aapl.status == Instrument.Status.HALTED
    assert Instrument.objects.filter(status=Instrument.Status.HALTED).count() == 1

    admin_client.post(CHANGELIST, {"action": "resume", "_selected_action": [aapl.pk]})
    aapl.refresh_from_db()
    assert aapl.status == Instrument.Status.OPEN
