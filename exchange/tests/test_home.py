import pytest

pytestmark = pytest.mark.django_db


def test_home_lists_instruments_with_links(client):
    html = client.get("/").content.decode()
    for text in ("AAPL", "Alphabet Inc.", "MSFT", "TSLA", "<td class=\"num\">0.01</td>", "Open"):
        assert text in html
    assert 'href="/admin/"' in html
    assert 'href="/accounts/login/"' in html
    assert 'href="/api/book/AAPL"' in html
    assert 'href="/api/docs"' in html


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
