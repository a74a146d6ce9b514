import pytest
from django.db import OperationalError

from exchange import health


@pytest.mark.django_db
def test_health_reports_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "components": {"database": "ok"}}


def test_health_is_503_when_the_database_fails(client, monkeypatch):
    class BrokenConnection:
        def cursor(self):
            raise OperationalError("database is down")

    monkeypatch.setattr(health, "connection", BrokenConnection())
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "components": {"database": "error"}}
