"""The restart rebuild: a cache seeded from the recovered engine, then from the Trade rows up to the
projection's cursor plus the trades replayed after it, equals a cache that never stopped: trade list,
24h ticker and candles, with nothing counted twice."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError

from marketdata import rebuild
from marketdata.book_cache import MINUTE_NS, MarketDataCache
from marketdata.candles import INTERVALS
from marketdata.rebuild import TradeReplay, rebuild_from_trades
from marketdata.tests.test_book_cache import SYMBOLS, run
from matching.engine import AdvanceTime, Trade
from matching.models import Trade as TradeRow
from matching.tests.conftest import random_commands
from matching.timestamps import to_datetime
from matching.worker.matcher import Matcher, Reply

pytestmark = pytest.mark.django_db

SCALE = 7 * MINUTE_NS + 13 * 10**9  # ~21 engine minutes a command on average: ~44 days in 3000
PARAMS: dict[str, Any] = {"trades_kept": 15, "candles_kept": 40}


def history(seed: int, n: int, scale: int = SCALE, quiet_ns: int = 0) -> tuple[Matcher, list[Reply]]:
    matcher, replies = Matcher(SYMBOLS), []
    for batch in run(matcher, random_commands(seed, n, SYMBOLS), seed, scale=scale):
        replies += batch
    if quiet_ns:  # time passes with no trade after the last one
        replies.append(matcher.apply(matcher.seq + 1, matcher.last_timestamp + quiet_ns, AdvanceTime(0)))
    return matcher, replies


def project(replies: list[Reply], user, through: int) -> int:
    """The Trade rows the projector writes for replies up to seq `through` (the rows only)."""
    rows = [TradeRow(symbol=e.symbol, trade_id=e.trade_id, price_ticks=e.price, qty_lots=e.qty,
                     taker_order_id=e.taker_order_id, maker_order_id=e.maker_order_id, taker_user=user,
                     maker_user=user, taker_side=e.taker_side.value, seq=r.seq,
                     executed_at=to_datetime(e.timestamp))
            for r in replies if r.seq <= through for e in r.events if isinstance(e, Trade)]
    TradeRow.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def restarted(matcher: Matcher, replies: list[Reply], cursor: int, **params) -> MarketDataCache:
    """A new process: the recovered engine seeded, recovery's replay tapped, the history rebuilt."""
    recovered = Matcher(SYMBOLS)
    recovered.restore(matcher.state())
    replay = TradeReplay(after=cursor)
    replay(replies)  # recovery hands every reply after the cursor again (and may hand earlier ones)
    cache = MarketDataCache(**params)
    cache.seed_engine(recovered.engine, recovered.seq)
    rebuild_from_trades(cache, SYMBOLS, replay, now=recovered.last_timestamp)
    replay(replies)  # taken: a runner keeps calling its listeners, which changes nothing now
    return cache


def assert_same_history(cache: MarketDataCache, live: MarketDataCache) -> None:
    for symbol in SYMBOLS:
        got, want = cache.snapshot(symbol), live.snapshot(symbol)
        assert got.trades == want.trades, symbol
        assert got.ticker[2:] == want.ticker[2:], symbol  # last, bid, ask, open, high, low, volume, ts
        assert (got.bids, got.asks) == (want.bids, want.asks)
        assert cache.candle_series(symbol) == live.candle_series(symbol), symbol


@pytest.mark.parametrize(
    ("cursor_at", "written_at", "quiet_ns"),
    [
        (1.0, 1.0, 0),  # a clean stop: everything projected, nothing replayed
        (0.6, 0.6, 0),  # a crash: the projection behind, the rest replayed
        (0.6, 0.8, 0),  # ...and the projector already writing the replay while we read
        (0.0, 0.3, 0),  # nothing projected when it stopped
        (0.9, 0.9, 30 * 60 * MINUTE_NS),  # 30 quiet hours after the last trade: the 24h window is empty
    ],
)
def test_rebuild_equals_a_cache_that_never_stopped(django_user_model, cursor_at, written_at, quiet_ns):
    matcher, replies = history(91, 3000, quiet_ns=quiet_ns)
    live = MarketDataCache(**PARAMS)
    live.apply(replies)
    user = django_user_model.objects.create_user("rows")
    cursor, written = int(matcher.seq * cursor_at), int(matcher.seq * written_at)
    project(replies, user, written)
    cache = restarted(matcher, replies, cursor, **PARAMS)
    assert_same_history(cache, live)
    for symbol in SYMBOLS:
        assert len(cache.trades(symbol)) == 15 and len(cache.candles(symbol, "1m")) == 40
        assert len(cache.candles(symbol, "1d")) > 30  # ~44 days of trades
    if quiet_ns:
        assert all(live.ticker(s).volume == 0 for s in SYMBOLS)
    else:
        assert all(live.ticker(s).volume > 0 for s in SYMBOLS)
    # and it goes on as the uninterrupted one does
    more = [matcher.apply(matcher.seq + 1, matcher.last_timestamp + 10**9 * n, cmd)
            for n, cmd in enumerate(random_commands(92, 300, SYMBOLS, ids_start=10**6), 1)]
    live.apply(more)
    cache.apply(more)
    assert_same_history(cache, live)


def test_rebuild_with_the_default_bounds(django_user_model):
    """Every 1d, 1h, 15m, 5m candle kept (500 a series): the minute stream has to go far back."""
    matcher, replies = history(93, 6000, scale=MINUTE_NS + 10**9)
    live = MarketDataCache()
    live.apply(replies)
    project(replies, django_user_model.objects.create_user("rows"), matcher.seq)
    cache = restarted(matcher, replies, matcher.seq)
    assert_same_history(cache, live)
    kept = {name: len(cache.candles("AAA", name)) for name in INTERVALS}
    assert kept["1m"] == kept["5m"] == kept["15m"] == 500 and 10 < kept["1d"] < kept["1h"] < 500


def test_rows_beyond_the_cursor_and_replayed_trades_count_once(django_user_model):
    matcher, replies = history(94, 800)
    project(replies, django_user_model.objects.create_user("rows"), matcher.seq)  # all written...
    live = MarketDataCache(**PARAMS)
    live.apply(replies)
    cache = restarted(matcher, replies, matcher.seq // 2, **PARAMS)  # ...but the cursor read before half
    cache.seed_trades("AAA", live.trades("AAA")[::-1])  # handed once more: already counted
    assert_same_history(cache, live)


def test_symbols_without_trades_stay_empty(django_user_model):
    cache = MarketDataCache()
    assert rebuild_from_trades(cache, ["AAA"], TradeReplay(after=0)) == {"AAA": 0}
    assert cache.trades("AAA") == [] and cache.candles("AAA", "1m") == []
    assert cache.ticker("AAA").volume == 0


def test_a_database_error_leaves_the_replay_only(django_user_model, monkeypatch, caplog):
    matcher, replies = history(95, 600)
    project(replies, django_user_model.objects.create_user("rows"), matcher.seq)
    cursor = matcher.seq // 2

    def broken(*args, **kwargs):
        raise DatabaseError("the database is down")

    monkeypatch.setattr(rebuild, "read_history", broken)
    cache = restarted(matcher, replies, cursor, **PARAMS)
    after = [e for r in replies if r.seq > cursor for e in r.events if isinstance(e, Trade)]
    for symbol in SYMBOLS:
        mine = [e for e in after if e.symbol == symbol]
        assert [t.trade_id for t in cache.trades(symbol)] == [e.trade_id for e in mine][::-1][:15]
        assert sum(c.trades for c in cache.candles(symbol, "1d")) == len(mine)
    assert "not rebuilt" in caplog.text



def test_rebuild_through_redis(django_user_model):
    """Production: the runner's writer is rebuilt the same way and a web process reads it back."""
    from marketdata.redis_cache import RedisMarketData, RedisMarketDataWriter
    from matching.tests.worker.stream_driver import delete_prefix, new_prefix, redis_or_skip

    client = redis_or_skip()
    prefix = new_prefix()
    try:
        matcher, replies = history(96, 1500)
        live = MarketDataCache(**PARAMS)
        live.apply(replies)
        cursor = matcher.seq * 2 // 3
        project(replies, django_user_model.objects.create_user("rows"), cursor)
        stale = RedisMarketDataWriter(client, prefix, MarketDataCache(**PARAMS))
        stale.apply(replies[: len(replies) // 3])  # what the previous process left in Redis
        recovered = Matcher(SYMBOLS)
        recovered.restore(matcher.state())
        replay = TradeReplay(after=cursor)
        replay(replies)
        writer = RedisMarketDataWriter(client, prefix, MarketDataCache(**PARAMS))
        writer.seed_engine(recovered.engine, recovered.seq)
        rebuild_from_trades(writer, SYMBOLS, replay, now=recovered.last_timestamp)
        assert not writer.pending
        reader = RedisMarketData(client, prefix)
        for symbol in SYMBOLS:
            assert reader.trades(symbol) == live.trades(symbol)
            assert reader.ticker(symbol)[2:] == live.ticker(symbol)[2:]
            for interval in INTERVALS:
                assert reader.candles(symbol, interval) == live.candles(symbol, interval), interval
    finally:
        delete_prefix(client, prefix)
        client.close()
