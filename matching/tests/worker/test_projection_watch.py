"""The projection watch: shards announce how far their projection has written; web processes wait on it."""

from __future__ import annotations

import threading

import pytest

from matching.tests.worker.stream_driver import REDIS_URL
from matching.worker.projection_watch import ProjectionAnnouncer, ProjectionWatch, projected_key


@pytest.fixture
def watch(redis_client, redis_prefix):
    redis_client.set(projected_key(redis_prefix, 1), 7)  # announced before the watch started
    started = ProjectionWatch(REDIS_URL, redis_prefix, [0, 1]).start()
    assert started.connected(timeout=10)
    assert started.wait(1, 7, timeout=0) is True  # read from the key once subscribed
    yield started
    started.stop()


def test_waits_end_when_the_shard_announces_the_seq(watch, redis_client, redis_prefix):
    announce = ProjectionAnnouncer(redis_client, redis_prefix, 0)
    answers: list[bool | None] = []
    waiter = threading.Thread(target=lambda: answers.append(watch.wait(0, 5, timeout=10)))
    waiter.start()
    announce(3)  # not yet
    announce(5)
    waiter.join(10)
    assert answers == [True]
    assert redis_client.get(projected_key(redis_prefix, 0)) == b"5"  # for watches that start later
    assert watch.wait(0, 6, timeout=0.05) is False  # not announced: the wait times out
    assert watch.wait(1, 8, timeout=0.05) is False  # shards are apart
    announce(4)  # an older announcement never moves a shard back
    assert watch.seqs[0] == 5


def test_without_redis_the_watch_says_it_does_not_know():
    closed = ProjectionWatch("redis://127.0.0.1:1/0", "nowhere", [0]).start()
    try:
        assert not closed.connected(timeout=0.2)
        assert closed.wait(0, 1, timeout=0.2) is None  # the caller asks the database instead
    finally:
        closed.stop()


def test_an_announcement_redis_refuses_is_logged_not_raised(caplog):
    import redis

    ProjectionAnnouncer(redis.Redis.from_url("redis://127.0.0.1:1/0"), "nowhere", 0)(3)
    assert "not announced" in caplog.text
