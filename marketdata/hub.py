"""Process-local fan-out of the public feeds: ONE relay channel per web process joins each `md.<symbol>`
group of the channel layer, and hands every publication to the connections of this process that follow
the symbol, by a plain call.

Why not one channel-layer membership per connection (Channels' usual pattern, kept for the private and
session groups): measured with 1,000 subscribers, the in-memory layer scans every channel and group
membership on each send and receive (`_clean_expired`), so one publication cost O(N^2) and the server
fell seconds behind; channels-redis fans a group message out to a per-channel buffer and wakes one
receive per connection. With the relay, a publication is one layer message per process, then N calls
(docs/WEBSOCKET.md, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from matching.worker.metrics import METRICS

log = logging.getLogger("marketdata.hub")

Member = Callable[[dict[str, Any]], None]
_TO_FANOUT = METRICS.stage("ws.trade_to_fanout")  # from a trade's engine time (publisher.py)
REFRESH = 3600.0  # seconds: group memberships are renewed well within channels-redis' group_expiry (1 day)


class Hub:
    """The relay of one event loop (a server process has one)."""

    def __init__(self) -> None:
        self.members: dict[str, set[Member]] = {}
        self.channel: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._guard: asyncio.Lock | None = None
        self._guard_loop: asyncio.AbstractEventLoop | None = None
        self.delivered = 0

    async def join(self, group: str, member: Member) -> None:
        """Returns once this process's relay is in the group: a publication sent after it reaches the
        member (the consumer reads its snapshot next, so anything older is in the snapshot)."""
        async with self._lock():  # one at a time: a second joiner must not return before the group_add
            layer = await self._ensure()
            members = self.members.get(group)
            if members is None:
                assert self.channel is not None
                await layer.group_add(group, self.channel)
                members = self.members[group] = set()
            members.add(member)

    async def leave(self, group: str, member: Member) -> None:
        async with self._lock():
            members = self.members.get(group)
            if members is None:
                return
            members.discard(member)
            if not members and self.channel is not None:
                del self.members[group]
                await get_channel_layer().group_discard(group, self.channel)  # type: ignore[union-attr]

    def _lock(self) -> asyncio.Lock:
        """The lock of the running loop (an asyncio.Lock belongs to the loop it first waited in)."""
        loop = asyncio.get_running_loop()
        if self._guard is None or self._guard_loop is not loop:
            self._guard, self._guard_loop = asyncio.Lock(), loop
        return self._guard

    async def _ensure(self) -> Any:
        layer = get_channel_layer()
        loop = asyncio.get_running_loop()
        assert layer is not None
        if self._loop is not loop:  # a new loop (a test's, a restarted server): nobody of the old one is here
            self._stop()
            self.members.clear()
        if self.channel is None or any(t.done() for t in self._tasks):
            self._stop()
            # Channels' default prefix: channels-redis receives every channel of a process from one key
            # per prefix, under one lock, so a channel of another prefix starves behind the consumers'.
            self.channel = await layer.new_channel()
            self._loop = loop
            for group in self.members:  # a relay that had stopped: its groups, on the new channel
                await layer.group_add(group, self.channel)
            self._tasks = [loop.create_task(self._relay(layer, self.channel), name="marketdata-hub"),
                           loop.create_task(self._refresh(layer, self.channel), name="marketdata-hub-renew")]
        return layer

    def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks, self.channel = [], None

    async def _relay(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except Exception:  # Redis unreachable, say: publications are lost (a gap), the relay stays
                log.exception("receiving market data failed")
                await asyncio.sleep(1.0)
                continue
            for member in list(self.members.get(message.get("group", ""), ())):
                try:
                    member(message)
                except Exception:  # one connection's failure is its own
                    log.exception("delivering market data failed")
            self.delivered += 1
            traded = message.get("trade_ns")
            if traded is not None:  # the trade is now queued for every connection of this process
                _TO_FANOUT.record(time.time_ns() - traded)

    async def _refresh(self, layer: Any, channel: str) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            for group in list(self.members):
                with contextlib.suppress(Exception):  # the next round tries again
                    await layer.group_add(group, channel)


HUB = Hub()
