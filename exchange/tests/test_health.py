import pytest
from django.db import OperationalError

from exchange import health


@pytest.mark.django_db
def test_health_reports_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "components": {
        "database": "ok",
        "matcher": {"status": "ok", "mode": "embedded",
                    "detail": "not started yet: it starts with the first order"},
    }}


def test_health_is_503_when_the_database_fails(client, monkeypatch):
    class BrokenConnection:
        def cursor(self):
            raise OperationalError("database is down")

    monkeypatch.setattr(health, "connection", BrokenConnection())
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert response.json()["components"]["database"] == "error"


@pytest.mark.django_db
def test_production_health_lists_every_shard_before_the_first_order(client, settings, redis_client,
                                                                    redis_prefix):
    """No order sent yet and no runner started: each configured shard is listed, down, and /health is 503."""
    from matching import services
    from matching.tests.worker.stream_driver import REDIS_URL

    settings.EXCHANGE_MODE, settings.REDIS_URL = "production", REDIS_URL
    settings.MATCHER_SHARDS = {0: ["AAPL", "GOOGL"], 1: ["MSFT", "TSLA"]}
    settings.MATCHER_STREAM_PREFIX = redis_prefix
    services.command_bus_stop()
    try:
        response = client.get("/health")
        shards = response.json()["components"]["matcher"]["shards"]
        assert shards == {"0": {"status": "down"}, "1": {"status": "down"}}
        assert response.status_code == 503
    finally:
        services.command_bus_stop()
