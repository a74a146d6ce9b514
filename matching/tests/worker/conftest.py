"""Fixtures shared by the Redis transport's tests: a StreamRunner serving in a thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from matching.worker.matcher import Matcher
from matching.worker.metrics import Registry
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import StreamRunner

SYMBOLS = ("AAPL", "MSFT")


class RunnerThread:
    """A StreamRunner serving in a background thread, as `runmatcher` does in its process: recovered,
    its first heartbeat published, then reading its stream until `stop()`."""

    def __init__(self, client: Any, prefix: str, directory: Path | None = None, *, shard: int = 0,
                 snapshot_every: int = 10_000, symbols: tuple[str, ...] = SYMBOLS, **options: Any) -> None:
        snapshots = SnapshotStore(directory) if directory is not None else None
        self.runner = StreamRunner(Matcher(symbols, shard=shard), client, shard, snapshots, snapshot_every,
                                   prefix=prefix, block_ms=50, metrics=Registry(), **options)
        self.replayed = self.runner.recover()
        self.runner.heartbeat()
        self.thread = threading.Thread(target=self.runner.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def serve(redis_client, redis_prefix):
    """serve(directory=None, **options) -> RunnerThread on this test's prefix; stopped afterwards."""
    started: list[RunnerThread] = []

    def start(directory: Path | None = None, **options: Any) -> RunnerThread:
        runner = RunnerThread(redis_client, redis_prefix, directory, **options)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner.thread.is_alive():
            runner.stop()
