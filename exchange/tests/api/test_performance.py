"""GET /api/performance/system: the figures after real orders through the embedded matcher, the async
middleware path, and production mode, where each shard's figures come from its heartbeat."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from matching import services
from matching.engine import NewOrder, Side
from matching.tests.worker.stream_driver import REDIS_URL, delete_prefix, new_prefix, redis_or_skip
from matching.worker.codec import encode_command
from matching.worker.matcher import Matcher
from matching.worker.metrics import METRICS, Registry
from matching.worker.stream_runner import StreamRunner

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/performance/system"
MATCHER_STAGES = ("matcher.queue_wait", "matcher.process", "matcher.journal_write", "matcher.journal_fsync",
                  "matcher.listeners")


def submit(client, **fields):
    # stp named: the account's default is not read (that read can meet the projector's writes on SQLite)
    order = {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "100.00", "stp": "cancel_newest",
             **fields}
    response = client.post("/api/submit", order, content_type="application/json")
    assert response.status_code == 201, response.content
    return response


def ascending(summary: dict) -> bool:
    return summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["p999"] <= summary["max"]


def test_figures_after_real_orders(alice, bob, reset_metrics):
    configured = services.command_bus().health()["seq"]  # started, its risk configuration sent
    reset_metrics()
    for n in range(4):
        submit(alice, price=f"{100 + n}.00")
        submit(bob, side="sell", price=f"{100 + n}.00")  # each one fills the buy just placed
    response = alice.get(URL)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["mode"] == "embedded"
    assert body["uptime_seconds"] > 0
    assert body["throughput"]["total"] == 8
    assert body["throughput"]["last_60s"] > 0

    [shard] = body["shards"]
    assert (shard["shard"], shard["status"], shard["queue_depth"]) == (0, "ok", 0)
    assert shard["seq"] == configured + 8
    assert shard["age_seconds"] is None
    assert shard["throughput"]["total"] == 8
    assert (shard["batch_size"]["count"], shard["batch_size"]["max"]) == (8, 1.0)  # one caller at a time
    assert shard["batch_size"]["unit"] == "commands"
    stages = shard["stages"]
    assert stages["matcher.queue_wait"]["count"] == 8
    for name in MATCHER_STAGES:
        assert stages[name]["count"] == 8, name
        assert stages[name]["unit"] == "us"
        assert ascending(stages[name]), name

    own = body["stages"]
    assert not any(name.startswith("matcher.") for name in own)
    assert own["api.submit.post"]["count"] == 8
    # acknowledged through submit or submit_async, as the order entry view calls the bus
    [ack] = [own[name] for name in ("bus.ack_sync", "bus.ack_async") if name in own]
    assert ack["count"] == 8
    for summary in own.values():
        assert ascending(summary)
    # a request's server time contains its acknowledgement, which contains the matcher's work
    assert own["api.submit.post"]["max"] >= ack["p50"]
    assert ack["max"] >= stages["matcher.process"]["p50"]
    assert alice.get(URL).json()["stages"]["api.performance-system.get"]["count"] == 1  # the first read


def test_nothing_from_a_matcher_that_has_not_started(embedded, admin_client):
    METRICS.reset()
    body = admin_client.get(URL).json()
    assert body["shards"] == []  # reading the figures does not start the matcher
    assert body["throughput"] == {"last_1s": 0.0, "last_10s": 0.0, "last_60s": 0.0, "total": 0}


def test_login_required(embedded, client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


def test_the_middleware_times_async_requests_too(embedded):
    METRICS.reset()
    response = async_to_sync(AsyncClient().get)(URL)  # through Django's ASGI handler
    assert response.status_code == 401
    assert METRICS.stage("api.performance-system.get").snapshot().count == 1


def test_production_mode_reads_each_shard_s_heartbeat(settings, admin_client):
    client = redis_or_skip()
    prefix = new_prefix()
    settings.EXCHANGE_MODE, settings.REDIS_URL = "production", REDIS_URL
    settings.MATCHER_SHARDS = {0: ["AAPL"], 1: ["MSFT"]}
    settings.MATCHER_STREAM_PREFIX = prefix
    services.command_bus_stop()  # this process's bus is built from the settings above
    registry = Registry()
    runner = StreamRunner(Matcher(["AAPL"]), client, 0, prefix=prefix, block_ms=50, metrics=registry)
    try:
        runner.recover()
        for n in range(3):
            client.xadd(runner.stream, {"c": encode_command(NewOrder(0, 1, "AAPL", Side.BUY, 1, 100 + n))})
        while runner.step(block_ms=None):
            pass
        runner.heartbeat()
        METRICS.reset()
        body = admin_client.get(URL).json()
    finally:
        services.command_bus_stop()
        delete_prefix(client, prefix)
        client.close()
    assert body["mode"] == "redis"
    up, down = body["shards"]
    assert (up["shard"], up["status"], up["seq"], up["queue_depth"]) == (0, "ok", 3, 0)
    assert up["age_seconds"] >= 0
    assert up["throughput"]["total"] == 3
    assert up["batch_size"]["count"] >= 1
    assert {"matcher.apply", "matcher.replies", "matcher.listeners"} <= set(up["stages"])
    assert (down["shard"], down["status"], down["seq"], down["stages"]) == (1, "down", None, {})
    assert body["throughput"]["total"] == 3  # the shards' rates added up


def test_prometheus_text_for_staff_only(alice, bob, admin_client):
    submit(alice, price="100.00")
    submit(bob, side="sell", price="100.00")
    response = admin_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    lines = text.splitlines()
    assert "# TYPE exchange_stage_seconds summary" in lines
    assert "# TYPE exchange_commands_total counter" in lines
    assert any(line.startswith('exchange_stage_seconds{stage="api.submit.post",quantile="0.99"} ')
               for line in lines)
    assert any(line.startswith('exchange_stage_seconds_count{shard="0",stage="matcher.queue_wait"} ')
               for line in lines)
    assert 'exchange_matcher_up{shard="0"} 1' in lines
    assert "# TYPE exchange_gc_collections_total counter" in lines
    assert any(line.startswith('exchange_gc_collections_total{generation="2"} ') for line in lines)
    assert any(line.startswith("exchange_gc_frozen_objects ") for line in lines)
    families = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(families) == len(set(families))  # each family's samples together, once
    for line in lines:
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])  # every sample has a number
    assert alice.get("/metrics").status_code == 403  # not staff
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.content.decode().startswith("# not_authenticated")
