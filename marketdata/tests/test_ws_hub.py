"""The process's relay (marketdata/hub.py): a join returns only once the relay is in the group.

Channels' in-memory layer, its group_add slowed to stand for channels-redis' round trip to Redis (the
race was seen there: with 1,000 subscribers connecting at once, the joins after the first returned before
the first one's group_add had reached Redis; those consumers read snapshots older than publications
their relay never got, and saw a gap at the next update)."""

from __future__ import annotations

import asyncio
import time

from channels.layers import InMemoryChannelLayer, get_channel_layer

from marketdata.hub import Hub
from marketdata.tests.ws import run
from matching.worker.metrics import METRICS


class SlowJoinLayer(InMemoryChannelLayer):
    async def group_add(self, group: str, channel: str) -> None:
        await asyncio.sleep(0.05)
        await super().group_add(group, channel)


def test_a_second_join_waits_for_the_relay_to_be_in_the_group(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.SlowJoinLayer"}}
    got: list[int] = []

    async def scenario() -> None:
        layer = get_channel_layer()
        assert isinstance(layer, SlowJoinLayer)
        hub = Hub()
        first = asyncio.create_task(hub.join("md.AAPL", lambda message: None))
        await asyncio.sleep(0.01)  # the first joiner is inside its group_add
        await hub.join("md.AAPL", lambda message: got.append(message["n"]))
        await layer.group_send("md.AAPL", {"type": "md.update", "group": "md.AAPL", "n": 1})
        await first
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        await hub.leave("md.AAPL", lambda message: None)
        hub._stop()

    run(scenario)
    assert got == [1]


def test_the_last_leave_takes_the_relay_out_of_the_group(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.SlowJoinLayer"}}

    async def scenario() -> None:
        layer = get_channel_layer()
        assert isinstance(layer, SlowJoinLayer)
        hub = Hub()

        def member(message: dict) -> None:
            raise AssertionError("left")

        await hub.join("md.AAPL", member)
        assert hub.channel in layer.groups["md.AAPL"]
        await hub.leave("md.AAPL", member)
        assert "md.AAPL" not in hub.members and hub.channel not in layer.groups.get("md.AAPL", {})
        hub._stop()

    run(scenario)


def test_the_relay_records_how_long_after_its_trade_a_publication_reached_every_connection(settings):
    """A publication with `trade_ns` (its first trade's engine time), handed to every member, is one
    value of the stage ws.trade_to_fanout: now minus that time. Depth alone records nothing."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    stage = METRICS.stage("ws.trade_to_fanout")
    got: list[dict] = []

    async def scenario() -> None:
        layer = get_channel_layer()
        assert layer is not None
        hub = Hub()
        await hub.join("md.AAPL", got.append)
        await layer.group_send("md.AAPL", {"type": "md.update", "group": "md.AAPL", "trade_ns": None})
        await layer.group_send("md.AAPL", {"type": "md.update", "group": "md.AAPL",
                                           "trade_ns": time.time_ns() - 3_000_000_000})
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        await hub.leave("md.AAPL", got.append)
        hub._stop()

    stage.reset()
    run(scenario)
    assert len(got) == 2
    figures = stage.summary()
    assert figures["count"] == 1 and 3_000_000 <= figures["max"] < 60_000_000  # µs: three seconds and a bit
