"""Candles: bucket boundaries, OHLCV against an independent computation (pure series and the cache
driven by a real matcher), bounded history, every interval, published tuples never changing."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from marketdata.book_cache import MarketDataCache, TradeTick
from marketdata.candles import INTERVALS, KEPT, Candle, CandleSeries, CandleSet, bucket_start
from marketdata.tests.test_book_cache import SYMBOLS, run
from matching.engine import Trade
from matching.tests.conftest import random_commands
from matching.timestamps import to_ns

S = 10**9
MIN = 60 * S


def brute_force(trades: list[tuple[int, int, int]], interval: int, kept: int) -> list[Candle]:
    """Group (ts, price, qty) trades by floor(ts / interval) * interval; the newest `kept` groups."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for ts, price, qty in trades:
        groups.setdefault(ts // interval * interval, []).append((price, qty))
    candles = [Candle(start, rows[0][0], max(p for p, _ in rows), min(p for p, _ in rows), rows[-1][0],
                      sum(q for _, q in rows), len(rows)) for start, rows in sorted(groups.items())]
    return candles[-kept:]


def test_intervals_and_their_sizes():
    assert list(INTERVALS) == ["1m", "5m", "15m", "1h", "1d"]
    assert [INTERVALS[k] // S for k in INTERVALS] == [60, 300, 900, 3600, 86400]
    assert KEPT == 500


@pytest.mark.parametrize("name", list(INTERVALS))
def test_bucket_boundaries(name):
    interval = INTERVALS[name]
    start = to_ns(datetime(2024, 3, 10, 0, 0, tzinfo=UTC)) + 7 * interval
    assert start % interval == 0
    series = CandleSeries(interval)
    for ts, price in [(start - 1, 10), (start, 20), (start + 1, 5), (start + interval - 1, 30),
                      (start + interval, 40)]:
        series.add(ts, price, 1)
    assert series.published().last() == (
        Candle(start - interval, 10, 10, 10, 10, 1, 1),
        Candle(start, 20, 30, 5, 30, 3, 3),
        Candle(start + interval, 40, 40, 40, 40, 1, 1),
    )
    assert bucket_start(start + interval - 1, interval) == start


def test_a_day_starts_at_midnight_utc_and_an_hour_on_the_hour():
    ts = to_ns(datetime(2024, 7, 1, 17, 42, 13, 123456, tzinfo=UTC)) + 789
    day, hour = CandleSeries(INTERVALS["1d"]), CandleSeries(INTERVALS["1h"])
    quarter = CandleSeries(INTERVALS["15m"])
    starts = []
    for series in (day, hour, quarter):
        series.add(ts, 1, 1)
        current = series.published().current
        assert current is not None
        starts.append(current.start)
    assert starts == [to_ns(datetime(2024, 7, 1, tzinfo=UTC)), to_ns(datetime(2024, 7, 1, 17, tzinfo=UTC)),
                      to_ns(datetime(2024, 7, 1, 17, 30, tzinfo=UTC))]


@pytest.mark.parametrize("kept", [1, 2, 7, KEPT])
def test_series_equals_brute_force_and_stays_bounded(kept):
    rnd = random.Random(kept)
    candles = CandleSet(kept=kept)
    trades: list[tuple[int, int, int]] = []
    ts = to_ns(datetime(2024, 1, 1, tzinfo=UTC)) - 3 * S
    for n in range(6000):
        ts += rnd.choice([0, 0, 1, S, 20 * S, MIN - 1, 4 * MIN, 50 * MIN, 23 * 3600 * S])
        price, qty = rnd.randint(1, 50), rnd.randint(1, 9)
        candles.add(ts, price, qty)
        trades.append((ts, price, qty))
        if n % 500 == 0 or n >= 5990:
            published = candles.published()
            for name, interval in INTERVALS.items():
                assert list(published[name].last()) == brute_force(trades, interval, kept), (name, n)
    published = candles.published()
    assert all(len(published[name].last()) == kept for name in INTERVALS)  # every interval filled
    assert sum(c.trades for c in published["1d"].last()) < len(trades)  # older days were dropped


def test_published_candles_never_change():
    series = CandleSeries(MIN, kept=3)
    series.add(0, 5, 1)
    first = series.published()
    series.add(1, 9, 2)
    second = series.published()
    for n in range(2, 10):
        series.add(n * MIN, n, 1)
    assert first.last() == (Candle(0, 5, 5, 5, 5, 1, 1),)
    assert second.last() == (Candle(0, 5, 9, 5, 9, 3, 2),)
    assert [c.start for c in series.published().last()] == [7 * MIN, 8 * MIN, 9 * MIN]


def test_the_newest_n():
    series = CandleSeries(MIN, kept=5)
    assert series.published().last() == () and series.published().last(3) == ()
    for n in range(8):
        series.add(n * MIN, n, 1)
    published = series.published()
    assert [c.open for c in published.last()] == [3, 4, 5, 6, 7]
    assert [[c.open for c in published.last(k)] for k in (0, 1, 2, 5, 9)] == [
        [], [7], [6, 7], [3, 4, 5, 6, 7], [3, 4, 5, 6, 7]]


def test_seeded_candles_merge_finer_ones_and_continue():
    """A restart's rebuild hands minute candles to every interval; trades after them continue the series."""
    rnd = random.Random(5)
    trades, ts = [], 0
    for _ in range(3000):
        ts += rnd.choice([1, S, 40 * S, 7 * MIN, 3 * 3600 * S])
        trades.append((ts, rnd.randint(1, 50), rnd.randint(1, 9)))
    split = 2000
    minutes = brute_force(trades[:split], MIN, 10**9)
    seeded = CandleSet(kept=11)
    seeded.seed(dict.fromkeys(INTERVALS, minutes))
    for trade in trades[split:]:
        seeded.add(*trade)
    whole = CandleSet(kept=11)
    for trade in trades:
        whole.add(*trade)
    assert seeded.published() == whole.published()


@pytest.mark.parametrize("scale", [S, 7 * MIN + 13 * S])  # many trades a minute; ~40 days in all
def test_cache_candles_equal_brute_force_over_the_trade_events(scale):
    from matching.worker.matcher import Matcher

    matcher, cache = Matcher(SYMBOLS), MarketDataCache(candles_kept=20)
    seen: dict[str, list[tuple[int, int, int]]] = {s: [] for s in SYMBOLS}
    for replies in run(matcher, random_commands(81, 3000, SYMBOLS), 81, scale=scale):
        taken = {s: cache.candle_series(s) for s in SYMBOLS}  # a reader's references
        copies = {s: dict(series) for s, series in taken.items()}
        cache.apply(replies)
        for event in (e for r in replies for e in r.events):
            if isinstance(event, Trade):
                seen[event.symbol].append((event.timestamp, event.price, event.qty))
        for symbol in SYMBOLS:
            for name, interval in INTERVALS.items():
                want = brute_force(seen[symbol], interval, 20)
                assert cache.candles(symbol, name) == want, (symbol, name)
                assert cache.candles(symbol, name, 3) == want[-3:]
            assert taken[symbol] == copies[symbol]  # what a reader took before the batch never changes
    assert all(len(cache.candles(s, "1m")) == 20 for s in SYMBOLS)
    days = len(brute_force(seen["AAA"], INTERVALS["1d"], 10**9))
    assert days > 20 if scale > S else days >= 1
    assert cache.candles("NOPE", "1h") == []
    with pytest.raises(ValueError, match="interval"):
        cache.candles("AAA", "2m")


def test_seed_trades_counts_each_trade_id_once():
    cache = MarketDataCache()
    ticks = [TradeTick(n, 100 + n, 1, "buy", n * MIN) for n in range(1, 6)]
    assert cache.seed_trades("AAA", ticks[:3]) == 3
    assert cache.seed_trades("AAA", ticks) == 2  # 1..3 already counted
    assert cache.ticker("AAA").volume == 5 and cache.ticker("AAA").last == 105
    assert [c.trades for c in cache.candles("AAA", "1m")] == [1] * 5
    assert [t.trade_id for t in cache.trades("AAA")] == [5, 4, 3, 2, 1]
