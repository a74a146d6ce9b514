"""The production twin of `MarketDataCache`: the matcher process publishes, web processes read Redis.

In production the matcher runs in its own process (`runmatcher`), so its in-memory snapshots are
out of the web tier's reach. `RedisMarketDataWriter` is its listener: it folds each batch with a
`MarketDataCache` and writes the changed symbols' snapshots in one MULTI/EXEC pipeline, one
MessagePack blob per symbol and kind (`{prefix}:md:{symbol}:depth|trades|ticker`). A blob is the
whole latest state, so writes are idempotent: a failed write is simply retried with a later batch,
and the matcher never waits on a Redis that is down (the writer backs off). `RedisMarketData` reads
them back with the same API; one GET per call, or one MGET for a consistent `snapshot()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import msgpack
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from marketdata.book_cache import MarketDataCache, Snapshot, Ticker, TradeTick
from matching.worker.matcher import Reply

log = logging.getLogger(__name__)

FORMAT = 1  # first element of every blob; a reader refuses others
KINDS = ("depth", "trades", "ticker")


def connect(url: str, timeout: float = 0.5) -> redis.Redis:
    """A client that fails fast: redis-py's default retries hold a caller ~4 s per failed call, and
    the writer runs on the matcher thread, the reader in a request."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))


def md_key(prefix: str, symbol: str, kind: str) -> str:
    return f"{prefix}:md:{symbol}:{kind}"


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
        self.pending.add(symbol)
        self.flush()

    def seed_engine(self, engine: Any, seq: int) -> None:
        """Seed from the recovered matcher before subscribing (its books, at its seq)."""
        self.pending |= self.cache.seed_engine(engine, seq)
        self.flush()

    def flush(self) -> bool:
        """Write what is pending; False (and kept pending) if Redis failed or we are backing off."""
        if not self.pending:
            return True
        if time.monotonic() < self._retry_at:
            return False
        pipe = self.client.pipeline(transaction=True)  # readers' MGET sees all kinds of one batch
        for symbol in self.pending:
            for kind, blob in encode(self.cache.snapshot(symbol)).items():
                pipe.set(md_key(self.prefix, symbol, kind), blob)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._backoff = min(max(self._backoff * 2, 0.1), self.max_backoff)
            self._retry_at = time.monotonic() + self._backoff
            log.warning("market data not written to Redis (%s); %d symbols retried in %.1fs",
                        exc, len(self.pending), self._backoff)
            return False
        self.pending.clear()
        self._backoff = 0.0
        return True


class RedisMarketData:
    """The web tier's reader: the same API as `MarketDataCache`, values as ints."""

    def __init__(self, client: redis.Redis, prefix: str = "exchange") -> None:
        self.client = client
        self.prefix = prefix

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
