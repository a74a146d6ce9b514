"""Production: a `runmatcher` process restarted (SIGTERM, then kill -9) publishes the same trade list,
24h ticker and candles to Redis as before, rebuilt from its PostgreSQL projection and its stream's replay.

Uses the production-mode deployment of matching/tests/worker/test_production_mode.py (a scratch
PostgreSQL database, Redis, `manage.py runmatcher`); without PostgreSQL or Redis it skips loudly.
"""

from __future__ import annotations

import random
import time

import psycopg

from marketdata.candles import INTERVALS
from marketdata.redis_cache import RedisMarketData
from matching.engine import NewOrder, Side
from matching.tests.worker.stream_driver import REDIS_URL, redis_or_skip
from matching.tests.worker.test_production_mode import (  # noqa: F401 (deployment: the fixture)
    SHARD_OF,
    deployment,
    stop,
)
from matching.worker.redis_bus import RedisBus


def published(reader: RedisMarketData, symbol: str) -> dict:
    return {
        # the projection keeps microseconds (the stream's engine time has nanoseconds)
        "trades": [t._replace(ts=t.ts // 1000) for t in reader.trades(symbol)],
        "ticker": reader.ticker(symbol)[2:9],  # last, bid, ask, open, high, low, volume (not its time)
        **{interval: reader.candles(symbol, interval) for interval in INTERVALS},
    }


def trade(bus: RedisBus, users: list[int], rng: random.Random, n: int) -> int:
    """n random orders; the seq of the last (the shard's log also holds its risk configuration)."""
    seq = 0
    for _ in range(n):
        symbol, side = rng.choice(("AAPL", "GOOGL")), rng.choice((Side.BUY, Side.SELL))
        order = NewOrder(0, rng.choice(users), symbol, side, rng.randint(1, 5), 100 + rng.randint(-3, 3))
        seq = bus.submit(order, timeout=5).seq
    return seq


def test_market_data_survives_restarts_of_a_shard(deployment):  # noqa: F811 (the imported fixture)
    dep, rng = deployment, random.Random(7)
    client = redis_or_skip()
    reader = RedisMarketData(client, dep.prefix)
    bus = RedisBus(REDIS_URL, SHARD_OF, timeout=5, prefix=dep.prefix)
    try:
        shard = dep.start(0)
        shard.wait_recovered()
        last = trade(bus, dep.users, rng, 100)  # snapshots every 40 commands: trades on both sides of them
        stop(shard)
        before = {s: published(reader, s) for s in ("AAPL", "GOOGL")}
        assert all(len(before[s]["trades"]) > 10 and before[s]["ticker"][6] > 0 for s in before)

        shard = dep.start(0)
        assert shard.wait_recovered() == last
        assert {s: published(reader, s) for s in before} == before

        # the projection stalled (its cursor row locked), more trades, kill -9: the restart takes the
        # rows up to the cursor and the stream's replay after it, each trade once
        stall = psycopg.connect(dep.database_url)
        stall.execute("SELECT last_seq FROM matching_projectioncursor WHERE name = 'shard-0' FOR UPDATE")
        later = trade(bus, dep.users, rng, 30)
        time.sleep(0.2)  # the batch's market data is written after its replies
        before = {s: published(reader, s) for s in before}
        shard.kill9()
        stall.close()
        with dep.db() as db:
            assert db.execute("SELECT last_seq FROM matching_projectioncursor").fetchall() == [(last,)]
        shard = dep.start(0)
        assert shard.wait_recovered() == later == last + 30
        assert f"projection cursor {last}, 30 replayed" in shard.recovered_line()
        assert {s: published(reader, s) for s in before} == before
        stop(shard)
        with dep.db() as db:
            trades = db.execute("SELECT symbol, count(*), max(trade_id) FROM matching_trade GROUP BY symbol")
            assert {symbol: (n, last) for symbol, n, last in trades} == {
                s: (before[s]["trades"][0].trade_id,) * 2 for s in before}
    finally:
        bus.close()
        client.close()
