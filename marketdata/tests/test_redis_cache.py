"""The Redis twin against a real Redis: what a web process reads equals the matcher's in-memory cache.

Each test uses its own key prefix (TEST_REDIS_URL, default db 15) and deletes it afterwards;
without Redis the tests skip loudly.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest

from marketdata.book_cache import MINUTE_NS, MarketDataCache, Snapshot
from marketdata.candles import INTERVALS
from marketdata.redis_cache import RedisMarketData, RedisMarketDataWriter, candles_key, connect, md_key
from marketdata.tests.test_book_cache import SYMBOLS, assert_depth_equals_engine, run
from matching.engine import NewOrder, Side
from matching.tests.conftest import random_commands
from matching.tests.worker.stream_driver import free_port
from matching.worker.matcher import Matcher

PARAMS: dict[str, Any] = {"depth_levels": 4, "trades_kept": 10, "window_ns": 120 * MINUTE_NS,
                          "candles_kept": 6}


@pytest.fixture
def client(redis_client):  # the root conftest's; named so for the tests below
    return redis_client


@pytest.fixture
def prefix(redis_prefix):
    return redis_prefix


def assert_same(reader: RedisMarketData, cache: MarketDataCache) -> None:
    for symbol in SYMBOLS:
        assert reader.snapshot(symbol) == cache.snapshot(symbol)
        assert reader.depth(symbol) == cache.depth(symbol)
        assert reader.depth(symbol, 2) == cache.depth(symbol, 2)
        assert reader.trades(symbol) == cache.trades(symbol)
        assert reader.trades(symbol, 3) == cache.trades(symbol, 3)
        assert reader.ticker(symbol) == cache.ticker(symbol)
        for interval in INTERVALS:
            assert reader.candles(symbol, interval) == cache.candles(symbol, interval), interval
            assert reader.candles(symbol, interval, 2) == cache.candles(symbol, interval, 2)


def test_round_trip_equals_the_in_memory_cache(client, prefix):
    matcher, memory = Matcher(SYMBOLS), MarketDataCache(**PARAMS)
    writer = RedisMarketDataWriter(client, prefix, MarketDataCache(**PARAMS))
    reader = RedisMarketData(client, prefix)
    assert reader.snapshot("AAA") == Snapshot.empty("AAA")  # nothing written yet
    rolled = False
    for replies in run(matcher, random_commands(61, 3000, SYMBOLS), 61, scale=MINUTE_NS):
        memory.apply(replies)
        writer(replies)
        assert not writer.pending
        assert_same(reader, memory)
        assert_depth_equals_engine(reader, matcher, 4)
        rolled |= any(memory.ticker(s).volume < sum(t.qty for t in memory.trades(s)) for s in SYMBOLS)
    assert rolled and all(memory.trades(s) for s in SYMBOLS)
    assert all(len(memory.candles(s, "1m")) == 6 for s in SYMBOLS)  # old buckets were deleted in Redis too
    assert client.hlen(candles_key(prefix, "AAA", "1m")) == 6
    raw = client.get(md_key(prefix, "AAA", "depth"))
    assert isinstance(raw, bytes) and msgpack.unpackb(raw)[1] == memory.depth("AAA")["seq"]

    # a restarted matcher process: a new writer seeded from the recovered engine overwrites the keys
    restarted = Matcher(SYMBOLS)
    restarted.restore(matcher.state())
    seeded = RedisMarketDataWriter(client, prefix, MarketDataCache(**PARAMS))
    seeded.seed_engine(restarted.engine, restarted.seq)
    for symbol in SYMBOLS:
        assert reader.depth(symbol) == {**memory.depth(symbol), "seq": restarted.seq}
        assert reader.trades(symbol) == [] and reader.ticker(symbol).last == memory.ticker(symbol).last
        assert all(reader.candles(symbol, interval) == [] for interval in INTERVALS)  # rewritten whole


def test_a_redis_outage_delays_writes_and_loses_none(client, prefix):
    down = connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    writer = RedisMarketDataWriter(down, prefix, MarketDataCache(**PARAMS), max_backoff=0.0)
    reader = RedisMarketData(client, prefix)
    matcher = Matcher(SYMBOLS)
    started = time.monotonic()
    for replies in run(matcher, random_commands(71, 300, SYMBOLS), 71):
        writer(replies)  # never raises into the matcher thread, nor holds it up
    assert time.monotonic() - started < 2.0
    assert writer.pending == set(SYMBOLS)
    assert reader.snapshot("BBB") == Snapshot.empty("BBB")
    writer.client = client  # Redis is back: the next batch (AAA only) also writes what BBB missed
    writer([matcher.apply(matcher.seq + 1, matcher.last_timestamp + 1,
                          NewOrder(0, 9, "AAA", Side.BUY, 1, 1, timestamp=0))])
    assert not writer.pending
    assert_same(reader, writer.cache)
    assert reader.depth("BBB")["seq"] > 0


def test_an_unknown_format_is_refused(client, prefix):
    client.set(md_key(prefix, "AAA", "depth"), msgpack.packb([99, 1, [], []]))
    with pytest.raises(ValueError, match="format"):
        RedisMarketData(client, prefix).depth("AAA")


def test_candle_changes_write_only_what_changed():
    from marketdata.candles import Candle, Series
    from marketdata.redis_cache import candle_changes, series_changes

    def c(start: int, close: int = 1) -> Candle:
        return Candle(start, 1, 1, 1, close, 1, 1)

    assert candle_changes((), (c(1), c(2))) == ([], [c(2), c(1)])
    assert candle_changes((c(1), c(2)), (c(1), c(2))) == ([], [])
    assert candle_changes((c(1), c(2)), (c(1), c(2, 5))) == ([], [c(2, 5)])
    assert candle_changes((c(1), c(2), c(3)), (c(2), c(3, 5), c(4))) == ([1], [c(4), c(3, 5)])
    assert candle_changes((c(1), c(2)), (c(7), c(8))) == ([1, 2], [c(8), c(7)])
    assert candle_changes((c(1),), ()) == ([1], [])
    closed = (c(1), c(2))
    assert series_changes(Series(closed, c(3)), Series(closed, c(3, 7))) == ([], [c(3, 7)])
    assert series_changes(Series(closed, c(3)), Series(closed, c(3))) == ([], [])
    assert series_changes(Series(closed, c(3)), Series((c(2), c(3)), c(4))) == ([1], [c(4)])


def test_an_unknown_interval_is_refused(client, prefix):
    with pytest.raises(ValueError, match="interval"):
        RedisMarketData(client, prefix).candles("AAA", "2m")
