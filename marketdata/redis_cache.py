"""The production twin of `MarketDataCache`: the matcher process publishes, web processes read Redis.

In production the matcher runs in its own process (`runmatcher`), so its in-memory snapshots are
out of the web tier's reach. `RedisMarketDataWriter` is its listener: it folds each batch with a
`MarketDataCache` and writes the changed symbols' snapshots in one MULTI/EXEC pipeline, one
MessagePack blob per symbol and kind (`{prefix}:md:{symbol}:depth|trades|ticker`). A blob is the
whole latest state, so writes are idempotent: a failed write is simply retried with a later batch,
and the matcher never waits on a Redis that is down (the writer backs off). `RedisMarketData` reads
them back with the same API; one GET per call, or one MGET for a consistent `snapshot()`.

Candles are a hash per symbol and interval (`{prefix}:md:{symbol}:candles:{interval}`, field = the
bucket start, value = one MessagePack candle), written in the same MULTI/EXEC: a batch rewrites only
the buckets it changed (usually the open one) and deletes those that fell out of the kept history,
by comparing with what the writer last wrote successfully (after a failure, the next write catches up;
after a seed, every key of the symbol is rewritten whole). A reader takes one HVALS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import msgpack
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from marketdata.book_cache import History, MarketDataCache, Snapshot, Ticker, TradeTick
from marketdata.candles import EMPTY, INTERVALS, Candle, Series
from matching.worker.matcher import Reply

log = logging.getLogger(__name__)

FORMAT = 1  # first element of every blob; a reader refuses others
KINDS = ("depth", "trades", "ticker")
CandleSeries = Mapping[str, Series]  # one symbol's candles as published: {interval: Series}


def connect(url: str, timeout: float = 0.5) -> redis.Redis:
    """A client that fails fast: redis-py's default retries hold a caller ~4 s per failed call, and
    the writer runs on the matcher thread, the reader in a request."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))


def md_key(prefix: str, symbol: str, kind: str) -> str:
    return f"{prefix}:md:{symbol}:{kind}"


def candles_key(prefix: str, symbol: str, interval: str) -> str:
    return md_key(prefix, symbol, f"candles:{interval}")


def encode(snap: Snapshot) -> dict[str, bytes]:
    """The three blobs of one snapshot: plain ints, strings and None (MessagePack arrays)."""
    return {
        "depth": msgpack.packb([FORMAT, snap.seq, snap.bids, snap.asks]),
        "trades": msgpack.packb([FORMAT, snap.seq, snap.trades]),
        "ticker": msgpack.packb([FORMAT, *snap.ticker]),
    }


def _unpack(raw: bytes) -> list:
    value = msgpack.unpackb(raw)
    if not isinstance(value, list) or not value or value[0] != FORMAT:
        raise ValueError(f"unknown market data format: {value[:1] if isinstance(value, list) else value!r}")
    return value[1:]


def encode_candle(candle: Candle) -> bytes:
    return msgpack.packb([FORMAT, *candle])


def decode_candle(raw: bytes) -> Candle:
    return Candle(*_unpack(raw))


def series_changes(old: Series, new: Series) -> tuple[list[int], list[Candle]]:
    """`candle_changes` for published series; O(1) while no bucket closed (the closed tuple is shared)."""
    if old.closed is new.closed:
        return [], [new.current] if new.current is not None and new.current != old.current else []
    return candle_changes(old.last(), new.last())


def candle_changes(old: Sequence[Candle], new: Sequence[Candle]) -> tuple[list[int], list[Candle]]:
    """What turns `old` into `new` (both oldest first, `new` continuing `old` in time): the bucket
    starts to delete (fell out of the kept history) and the candles to write (changed or new)."""
    first = new[0].start if new else None
    gone = []
    for candle in old:
        if first is not None and candle.start >= first:
            break
        gone.append(candle.start)
    written = []
    last = old[-1] if old else None
    for candle in reversed(new):
        if last is not None and (candle.start < last.start or candle == last):
            break
        written.append(candle)
    return gone, written


def decode(symbol: str, depth: bytes | None, trades: bytes | None, ticker: bytes | None) -> Snapshot:
    """Back to the in-memory `Snapshot`; a missing blob reads as empty."""
    empty = Snapshot.empty(symbol)
    seq, bids, asks = _unpack(depth) if depth is not None else (0, (), ())
    trades_seq, rows = _unpack(trades) if trades is not None else (0, ())
    return Snapshot(
        symbol,
        max(seq, trades_seq),
        tuple((p, q) for p, q in bids),
        tuple((p, q) for p, q in asks),
        tuple(TradeTick(*row) for row in rows),
        Ticker(*_unpack(ticker)) if ticker is not None else empty.ticker,
    )


class RedisMarketDataWriter:
    """Matcher listener: fold the batch, then one pipeline writing every symbol it changed.
    Give it a fail-fast client (`connect`): it runs on the matcher thread."""

    def __init__(self, client: redis.Redis, prefix: str = "exchange", cache: MarketDataCache | None = None,
                 *, max_backoff: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.cache = cache if cache is not None else MarketDataCache()
        self.max_backoff = max_backoff
        self.pending: set[str] = set()  # changed but not yet written
        # the candle publication last written per symbol (absent: rewrite its keys whole)
        self._candles_written: dict[str, CandleSeries] = {}
        self._backoff = 0.0
        self._retry_at = 0.0  # time.monotonic(); a policy for retries only, never market data

    def __call__(self, replies: Sequence[Reply]) -> None:
        self.apply(replies)

    def apply(self, replies: Sequence[Reply]) -> None:
        self.pending |= self.cache.apply(replies)
        self.flush()

    def seed(self, symbol: str, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]], seq: int,
             last_price: int | None = None) -> None:
        self.cache.seed(symbol, bids, asks, seq, last_price)
        self._candles_written.pop(symbol, None)
        self.pending.add(symbol)
        self.flush()

    def seed_engine(self, engine: Any, seq: int) -> None:
        """Seed from the recovered matcher before subscribing (its books, at its seq)."""
        symbols = self.cache.seed_engine(engine, seq)
        for symbol in symbols:
            self._candles_written.pop(symbol, None)
        self.pending |= symbols
        self.flush()

    def seed_history(self, symbol: str, history: History) -> None:
        """`MarketDataCache.seed_history`, then written (the symbol's candle keys whole)."""
        self.cache.seed_history(symbol, history)
        self._candles_written.pop(symbol, None)
        self.pending.add(symbol)
        self.flush()

    def seed_trades(self, symbol: str, trades: Iterable[TradeTick]) -> int:
        """`MarketDataCache.seed_trades`, then written."""
        added = self.cache.seed_trades(symbol, trades)
        if added:
            self.pending.add(symbol)
            self.flush()
        return added

    def flush(self) -> bool:
        """Write what is pending; False (and kept pending) if Redis failed or we are backing off."""
        if not self.pending:
            return True
        if time.monotonic() < self._retry_at:
            return False
        pipe = self.client.pipeline(transaction=True)  # readers' MGET sees all kinds of one batch
        candles: dict[str, CandleSeries] = {}
        for symbol in self.pending:
            for kind, blob in encode(self.cache.snapshot(symbol)).items():
                pipe.set(md_key(self.prefix, symbol, kind), blob)
            series = self.cache.candle_series(symbol)
            if series is not self._candles_written.get(symbol):
                self._write_candles(pipe, symbol, self._candles_written.get(symbol), series)
                candles[symbol] = series
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._backoff = min(max(self._backoff * 2, 0.1), self.max_backoff)
            self._retry_at = time.monotonic() + self._backoff
            log.warning("market data not written to Redis (%s); %d symbols retried in %.1fs",
                        exc, len(self.pending), self._backoff)
            return False
        self.pending.clear()
        self._candles_written.update(candles)
        self._backoff = 0.0
        return True

    def _write_candles(self, pipe: Any, symbol: str, old: CandleSeries | None, new: CandleSeries) -> None:
        for interval in self.cache.intervals:
            key, series = candles_key(self.prefix, symbol, interval), new.get(interval, EMPTY)
            gone: list[int]
            written: Sequence[Candle]
            if old is None:  # what Redis holds is unknown (a seed, a new process): rewrite it whole
                pipe.delete(key)
                gone, written = [], series.last()
            else:
                gone, written = series_changes(old.get(interval, EMPTY), series)
            if gone:
                pipe.hdel(key, *gone)
            if written:
                pipe.hset(key, mapping={c.start: encode_candle(c) for c in written})


class RedisMarketData:
    """The web tier's reader: the same API as `MarketDataCache`, values as ints."""

    def __init__(self, client: redis.Redis, prefix: str = "exchange",
                 intervals: Iterable[str] = INTERVALS) -> None:
        self.client = client
        self.prefix = prefix
        self.intervals = frozenset(intervals)

    def _get(self, symbol: str, kind: str) -> bytes | None:
        return cast(bytes | None, self.client.get(md_key(self.prefix, symbol, kind)))

    def snapshot(self, symbol: str) -> Snapshot:
        raw = cast(list[bytes | None], self.client.mget([md_key(self.prefix, symbol, k) for k in KINDS]))
        return decode(symbol, *raw)

    def depth(self, symbol: str, n: int | None = None) -> dict[str, Any]:
        snap = decode(symbol, self._get(symbol, "depth"), None, None)
        return {"seq": snap.seq, "bids": list(snap.bids[:n]), "asks": list(snap.asks[:n])}

    def trades(self, symbol: str, n: int | None = None) -> list[TradeTick]:
        return list(decode(symbol, None, self._get(symbol, "trades"), None).trades[:n])

    def ticker(self, symbol: str) -> Ticker:
        return decode(symbol, None, None, self._get(symbol, "ticker")).ticker

    def candles(self, symbol: str, interval: str, limit: int | None = None) -> list[Candle]:
        """The newest `limit` candles (all kept by default), oldest first, from one HVALS."""
        if interval not in self.intervals:
            raise ValueError(f"unknown interval {interval!r}")
        raw = cast(list[bytes], self.client.hvals(candles_key(self.prefix, symbol, interval)))
        rows = sorted(map(decode_candle, raw))
        return rows if limit is None else rows[-limit:] if limit > 0 else []
