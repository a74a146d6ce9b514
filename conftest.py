"""Fixtures shared across the apps' tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def embedded(settings, tmp_path, transactional_db):
    """The embedded default (matcher thread, journal in tmp_path, projector), stopped afterwards.

    Transactional: the matcher's projector writes from its own thread."""
    from django.core.cache import cache

    from exchange.models import Instrument
    from matching import services

    # a transactional test before this one may have flushed the seeded instruments
    Instrument.objects.get_or_create(symbol="AAPL", defaults={"name": "Apple Inc.", "tick_size": "0.01",
                                                              "lot_size": "1"})
    settings.EXCHANGE_MODE, settings.REDIS_URL = "embedded", None
    settings.MATCHER_DATA_DIR = tmp_path
    settings.MATCHER_FSYNC = False
    cache.clear()  # rate-limit counters of earlier tests
    yield
    services.command_bus_stop()


@pytest.fixture(autouse=True, scope="session")
def _static_root(tmp_path_factory):
    """An empty STATIC_ROOT of the tests' own: the tests serve static files through their finders, but
    WhiteNoise warns on every request when STATIC_ROOT is missing (collectstatic never ran), and must
    not scan the repository's `staticfiles/` while `run.sh` may be rewriting it."""
    from django.conf import settings

    settings.STATIC_ROOT = tmp_path_factory.mktemp("staticfiles")


@pytest.fixture(autouse=True)
def _fresh_local_caches():
    """The API's in-process caches (exchange.local_cache) start empty in every test: a rolled-back
    test may have cached rows that no longer exist."""
    from exchange import local_cache

    local_cache.clear_all()



@pytest.fixture
def redis_client():
    """The machine's Redis (127.0.0.1:6379), or the test skips loudly."""
    from matching.tests.worker.stream_driver import redis_or_skip

    client = redis_or_skip()
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client):
    """A key prefix of this test's own in that Redis, its keys deleted afterwards."""
    from matching.tests.worker.stream_driver import delete_prefix, new_prefix

    prefix = new_prefix()
    yield prefix
    delete_prefix(redis_client, prefix)
