"""The live server itself (exchange/tests/live_server.py), without a browser: it serves the exchange,
its static files and the public pages, and says why when it cannot start."""

from __future__ import annotations

import time
import urllib.request

import pytest

from exchange.tests.live_server import LiveExchange, ServerFailed, call_json, live_exchange


def test_it_serves_health_pages_and_static_files(live: LiveExchange) -> None:
    deadline = time.monotonic() + 30  # the market maker is "degraded" until its first quotes are in
    while True:
        status, health = live.get_json("/health")
        assert status == 200
        assert isinstance(health, dict)
        if health["components"]["marketmaker"]["status"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert health["components"]["marketmaker"]["status"] == "ok", health
    for path in ("/", "/markets/rows", "/static/css/site.css", "/static/js/trade.js", "/static/favicon.ico"):
        with urllib.request.urlopen(live.url(path), timeout=10) as answer:
            assert answer.status == 200, path
    assert live.ws_url == f"ws://127.0.0.1:{live.port}/ws"
    assert "demo" in live.manage("shell", "-c", "from django.contrib.auth.models import User; "
                                  "print(list(User.objects.values_list('username', flat=True)))")


def test_the_started_server_has_frozen_its_startup_heap(live: LiveExchange) -> None:
    """The lifespan's startup ends with exchange.gc_tuning.settle_heap (GC_YOUNG_THRESHOLD, 10000)."""
    status, token = call_json(live.url("/api/token"), "POST", body={"username": "demo", "password": "demo"})
    assert status == 200, token
    status, figures = live.get_json("/api/performance/system", token=token["token"])
    assert status == 200, figures
    assert figures["gc"]["thresholds"][0] == 10000
    assert figures["gc"]["frozen_objects"] > 10_000  # Django, the app, the recovered matcher
    assert len(figures["gc"]["generations"]) == 3


def test_a_server_that_cannot_start_says_why(tmp_path) -> None:
    with pytest.raises(ServerFailed, match="MATCHER_TIMEOUT"), \
            live_exchange(tmp_path, market_maker=False, static=False, extra_env={"MATCHER_TIMEOUT": "soon"}):
        pass  # pragma: no cover - never reached
