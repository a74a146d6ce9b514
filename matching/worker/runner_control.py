"""What the two stream runners (stream_runner.StreamRunner: a matching shard; balance_runner.BalanceRunner:
a balance shard) share about their lifecycle: a stop flag that a signal handler may set, a pause that
the flag cuts short, the listeners called after each batch, and the loop that serves until stopped,
waiting out an unreachable Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import redis

log = logging.getLogger(__name__)

L = TypeVar("L")  # a listener's type (each runner hands its listeners what it has)


class RunnerControl(Generic[L]):
    def __init__(self) -> None:
        self._stop_requested = False  # a plain flag: stop() runs in signal handlers, so it takes no lock
        self._listeners: list[L] = []

    def subscribe(self, listener: L) -> None:
        """Call `listener` after each batch (replayed ones too, after a restart: dedupe by seq)."""
        self._listeners.append(listener)

    def stop(self) -> None:
        """Ask `run` to finish its current batch, snapshot and return (safe from a signal handler)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def _pause(self, seconds: float) -> None:
        """Sleep, waking early when asked to stop."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))

    def _serve(self, step: Callable[[], object], name: str) -> None:
        """Call `step` until `stop()`; while Redis is unreachable, retry after a pause that doubles up to
        2 s. Any other exception ends the loop (the caller takes no snapshot then)."""
        delay = 0.1
        while not self._stop_requested:
            try:
                step()
                delay = 0.1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("%s: Redis unreachable (%s); retrying in %.1fs", name, exc, delay)
                self._pause(delay)
                delay = min(delay * 2, 2.0)
