"""OHLCV candles from trades: integers only (price ticks, lots, engine ns), buckets in UTC.

A trade at engine time `ts` belongs to the bucket starting at `ts - ts % interval_ns` (epoch-aligned,
so 1d buckets start at 00:00 UTC). A bucket exists only once it has a trade: quiet intervals leave no
candle (no zero-volume fillers). Each interval keeps its newest `kept` buckets.

The writer (the matcher thread, through `MarketDataCache`) adds trades in engine-time order; readers
on other threads only ever see what `published()` returned: a `Series` that is never changed
afterwards, so one reference is one consistent series (see book_cache.py). Closed buckets are frozen
`Candle`s in a tuple rebuilt only when a bucket closes; the open one is a short list until published.
Publishing is O(1) (the closed tuple is shared, not copied): readers join the two for the slice they want.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple

SECOND_NS: Final = 10**9
INTERVALS: Final[Mapping[str, int]] = {
    "1m": 60 * SECOND_NS,
    "5m": 5 * 60 * SECOND_NS,
    "15m": 15 * 60 * SECOND_NS,
    "1h": 60 * 60 * SECOND_NS,
    "1d": 24 * 60 * 60 * SECOND_NS,
}
KEPT: Final = 500  # buckets kept per interval (the API's largest `limit`)


class Candle(NamedTuple):
    start: int  # engine ns, a multiple of the interval
    open: int  # ticks
    high: int
    low: int
    close: int
    volume: int  # lots
    trades: int  # how many trades


class Series(NamedTuple):
    """One interval's candles as published: the closed ones (oldest first) and the newest, the only one
    a later trade can still change."""

    closed: tuple[Candle, ...]
    current: Candle | None

    def last(self, limit: int | None = None) -> tuple[Candle, ...]:
        """The newest `limit` candles (all by default), oldest first."""
        closed, current = self.closed, self.current
        if limit is not None and limit <= 0:
            return ()
        if current is None:
            return closed if limit is None else closed[-limit:]
        if limit is None:
            return (*closed, current)
        return (*closed[max(0, len(closed) - limit + 1):], current)


EMPTY: Final = Series((), None)


def bucket_start(ts: int, interval_ns: int) -> int:
    return ts - ts % interval_ns


class CandleSeries:
    """One interval's candles for one symbol: the newest `kept` buckets that had trades."""

    __slots__ = ("closed", "current", "interval_ns", "kept")

    def __init__(self, interval_ns: int, kept: int = KEPT) -> None:
        if interval_ns <= 0 or kept <= 0:
            raise ValueError("interval and kept must be positive")
        self.interval_ns, self.kept = interval_ns, kept
        self.closed: tuple[Candle, ...] = ()  # oldest first, at most kept - 1
        self.current: list[int] | None = None  # [start, open, high, low, close, volume, trades]

    def add(self, ts: int, price: int, qty: int) -> None:
        current = self.current
        start = ts - ts % self.interval_ns
        if current is not None and current[0] >= start:  # engine time never goes back: the open bucket
            if price > current[2]:
                current[2] = price
            elif price < current[3]:
                current[3] = price
            current[4] = price
            current[5] += qty
            current[6] += 1
            return
        if current is not None:
            self._close(Candle(*current))
        self.current = [start, price, price, price, price, qty, 1]

    def add_candle(self, candle: Candle) -> None:
        """Merge a pre-aggregated candle of a finer (dividing) interval, e.g. 1m ones into 15m; in time
        order, after any trades already added to it (a restart's rebuild from the database)."""
        current = self.current
        start = bucket_start(candle.start, self.interval_ns)
        if current is not None and current[0] >= start:
            current[2], current[3] = max(current[2], candle.high), min(current[3], candle.low)
            current[4] = candle.close
            current[5] += candle.volume
            current[6] += candle.trades
            return
        if current is not None:
            self._close(Candle(*current))
        self.current = [start, *candle[1:]]

    def _close(self, candle: Candle) -> None:
        keep = self.kept - 1  # closed candles beside the open one
        self.closed = (*self.closed, candle)[-keep:] if keep else ()

    def published(self) -> Series:
        """All kept candles, safe to hand to other threads (nothing in it is changed afterwards)."""
        current = self.current
        return Series(self.closed, None if current is None else Candle(*current))


class CandleSet:
    """A symbol's series for every interval, fed the same trades."""

    __slots__ = ("series",)

    def __init__(self, intervals: Mapping[str, int] = INTERVALS, kept: int = KEPT) -> None:
        self.series = {name: CandleSeries(ns, kept) for name, ns in intervals.items()}

    def add(self, ts: int, price: int, qty: int) -> None:
        for series in self.series.values():
            series.add(ts, price, qty)

    def seed(self, candles: Mapping[str, Iterable[Candle]]) -> None:
        """Start the named intervals from candles aggregated elsewhere (oldest first); replaces them."""
        for name, rows in candles.items():
            series = self.series[name]
            series.closed, series.current = (), None
            for candle in rows:
                series.add_candle(candle)

    def published(self) -> dict[str, Series]:
        return {name: series.published() for name, series in self.series.items()}

