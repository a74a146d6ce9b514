"""Small in-process caches for what every order looks up: symbol -> instrument,
user -> self-trade prevention default.

Each entry lives `ttl` seconds. Writes through the ORM in this process invalidate at once (signals,
or an explicit `invalidate` where a write sends none); the TTL bounds how long a change made
elsewhere (another server process, `QuerySet.update` without a signal) can go unseen. A load that
races an invalidation is not stored: `load` notes the cache's generation before reading the database
and keeps the value only if no invalidation happened meanwhile.

No Django here: callers load on a miss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, Final

MISSING: Final = object()
_ALL: list[LocalCache] = []


class LocalCache:
    def __init__(self, name: str, ttl: float, max_entries: int = 100_000) -> None:
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        _ALL.append(self)

    def get(self, key: Hashable) -> Any:
        """The cached value, or MISSING (never cached, invalidated or expired)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return MISSING
        return entry[1]

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        """Keep `value` unless something was invalidated since `generation` was read."""
        if generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude, and only under a flood of distinct keys
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def load(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        """The cached value, or `loader()` (kept unless it raced an invalidation). A loader that
        returns MISSING (nothing found) is not cached."""
        value = self.get(key)
        if value is MISSING:
            generation = self.generation
            value = loader()
            if value is not MISSING:
                self.put(key, value, generation)
        return value

    def invalidate(self, key: Hashable) -> None:
        self.generation += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()


def clear_all() -> None:
    """Empty every cache of this process (tests that rebuild the database)."""
    for cache in _ALL:
        cache.clear()
