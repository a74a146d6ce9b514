"""The relay (marketdata/hub.py) on a real channels-redis layer, beside consumers waiting on the same
layer: it gets every publication; and an idle receive survives redis-py 8's 5 s socket timeout."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from exchange.env import redis_channel_layer
from marketdata.hub import Hub
from marketdata.tests.ws import run
from matching.tests.worker.stream_driver import REDIS_URL


@pytest.fixture
def redis_layer(settings, redis_client, redis_prefix):
    layer = redis_channel_layer(REDIS_URL)  # as production's settings configure it
    layer["CONFIG"]["prefix"] = f"{redis_prefix}-asgi"  # type: ignore[index]
    settings.CHANNEL_LAYERS = {"default": layer}
    return get_channel_layer()


def test_the_relay_gets_every_publication_while_consumers_wait_on_the_layer(redis_layer):
    got: list[int] = []

    async def scenario() -> None:
        hub = Hub()
        await hub.join("md.AAPL", lambda message: got.append(message["n"]))
        channels = [await redis_layer.new_channel() for _ in range(3)]
        consumers = [asyncio.create_task(redis_layer.receive(channel)) for channel in channels]
        await asyncio.sleep(0.2)  # a consumer holds the process's receive lock, blocked in BZPOPMIN
        for n in range(5):
            await redis_layer.group_send("md.AAPL", {"type": "md.update", "group": "md.AAPL", "n": n})
        for _ in range(200):
            if len(got) == 5:
                break
            await asyncio.sleep(0.01)
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    run(scenario)
    assert got == [0, 1, 2, 3, 4]


def test_an_idle_receive_outlives_the_socket_timeout(redis_layer):
    """channels-redis blocks 5 s in BZPOPMIN on a connection redis-py 8 times out at 5 s: unbounded, an
    idle consumer's receive raised redis' TimeoutError after about 5 s and ended the connection."""

    async def scenario() -> None:
        channel = await redis_layer.new_channel()
        with pytest.raises(TimeoutError) as waited:
            await asyncio.wait_for(redis_layer.receive(channel), 7)
        assert type(waited.value) is TimeoutError  # our deadline, not redis.exceptions.TimeoutError

    run(scenario)
