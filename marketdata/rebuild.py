"""After a restart: the trade list, the 24h window and the candles again, from the projected Trade rows.

The matcher's snapshot holds its books but no trade history, so `seed_engine` restores depth and the
last price only. The history is in the projection (`matching.models.Trade`). At start-up:

    replay = TradeReplay(after=cursor)            before recovery; cursor = the projection's last seq
    recovery replays every reply after the cursor to the projector, and to `replay`
    target.seed_engine(engine, seq)
    rebuild_from_trades(target, symbols, replay, now=matcher.last_timestamp)

No trade is counted twice, and none is missed:
- rows with seq <= the cursor come from the database: the cursor commits with its rows, so all of
  them are there; rows above it (the projector may be writing the replay meanwhile) are ignored;
- trades after the cursor come from `replay`: recovery hands every reply after the cursor again;
- the target skips any trade id at or below the symbol's last counted one (ids count per symbol in
  engine order), so a trade that reached it another way is not counted again.
(`seed_engine` at the matcher's seq makes the target ignore the replayed replies themselves.)

The reads are bounded: the last `trades_kept` rows, and per interval the newest `candles_kept`
buckets aggregated by the database (GROUP BY the trade time truncated to the minute, hour or day;
5m and 15m candles are merged from minute groups, streamed newest first until enough are seen). The
24h window is rebuilt from the minute groups of the window ending at `now`. Times in the database are
microseconds: the nanoseconds below them are lost (bucket boundaries are whole microseconds, so no
trade changes bucket). A database error is logged and leaves the history empty (as before this
existed): market data must not keep the matcher from starting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from django.db import DatabaseError
from django.db.models import Count, Max, Min, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from marketdata.book_cache import MINUTE_NS, History, MarketDataCache, TradeTick
from marketdata.candles import Candle
from marketdata.redis_cache import RedisMarketDataWriter
from matching.engine.events import Trade as TradeEvent
from matching.models import Trade
from matching.timestamps import to_ns
from matching.worker.matcher import Reply

log = logging.getLogger(__name__)

HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
# the database truncations candles are rebuilt from, coarsest first: an interval uses the coarsest
# one that divides it
TRUNCATIONS: tuple[tuple[int, Any], ...] = (
    (DAY_NS, TruncDay), (HOUR_NS, TruncHour), (MINUTE_NS, TruncMinute))
CHUNK = 500  # ids per IN (...) when looking up open and close prices


class TradeReplay:
    """The trades of the replies a recovery hands again after the projection's cursor (`after`): they
    may not be in the database yet. Feed it every replayed reply (a runner listener, or from
    `Matcher.open`'s on_reply); `rebuild_from_trades` takes them, after which it ignores what it is
    given (a runner keeps its listeners)."""

    def __init__(self, after: int) -> None:
        self.after = after
        self._trades: dict[str, list[TradeTick]] | None = {}

    def __call__(self, replies: Iterable[Reply]) -> None:
        trades = self._trades
        if trades is None:
            return
        for reply in replies:
            if reply.seq <= self.after:
                continue
            for event in reply.events:
                if type(event) is TradeEvent:
                    trades.setdefault(event.symbol, []).append(TradeTick(
                        event.trade_id, event.price, event.qty, str(event.taker_side), event.timestamp))

    def take(self) -> dict[str, list[TradeTick]]:
        trades, self._trades = self._trades or {}, None
        return trades


def rebuild_from_trades(target: MarketDataCache | RedisMarketDataWriter, symbols: Iterable[str],
                        replay: TradeReplay, *, now: int | None = None) -> dict[str, int]:
    """Seed each symbol's trade list, 24h window and candles: rows up to `replay.after` from the
    database, then the replayed trades after it. Call it after `seed_engine`, on the thread that will
    feed the target, before subscribing it. `now` (engine ns, e.g. the matcher's last timestamp) is
    where the 24h window ends; by default the last trade's time. Returns the last trade id counted
    per symbol (0: none)."""
    cache = target.cache if isinstance(target, RedisMarketDataWriter) else target
    replayed = replay.take()
    last_ids = {}
    for symbol in symbols:
        tail = replayed.get(symbol, [])
        end = max(now or 0, tail[-1].ts if tail else 0)
        try:
            history = read_history(cache, symbol, replay.after, now=end or None)
        except DatabaseError:
            log.exception("%s: market data history not rebuilt (database error); the trade list, the "
                          "24h window and candles start from the replay only", symbol)
            history = None
        if history is not None:
            target.seed_history(symbol, history)
        added = target.seed_trades(symbol, tail) if tail else 0
        last_ids[symbol] = max(history.last_trade_id if history else 0, tail[-1].trade_id if tail else 0)
        if last_ids[symbol]:
            log.info("%s: market data rebuilt through trade %d (%d from the replay)", symbol,
                     last_ids[symbol], added)
    return last_ids


def read_history(cache: MarketDataCache, symbol: str, through_seq: int, *, now: int | None = None
                 ) -> History | None:
    """What `cache` keeps of the symbol's Trade rows with seq <= `through_seq` (None without any)."""
    rows = Trade.objects.filter(symbol=symbol, seq__lte=through_seq)
    newest = list(rows.order_by("-trade_id").values_list(
        "trade_id", "price_ticks", "qty_lots", "taker_side", "executed_at")[:cache.trades_kept])
    if not newest:
        return None
    trades = [TradeTick(trade_id, price, qty, side, to_ns(at))
              for trade_id, price, qty, side, at in reversed(newest)]
    end = max(now or 0, trades[-1].ts)
    span = -(-cache.window_ns // cache.bucket_ns)  # as RollingWindow: the current bucket and those before
    window_from = (end // cache.bucket_ns - span + 1) * cache.bucket_ns
    if cache.bucket_ns % MINUTE_NS:
        log.warning("%s: a window bucket of %d ns is not whole minutes: the 24h window is not rebuilt",
                    symbol, cache.bucket_ns)
        window_from = end + 1

    by_truncation: dict[int, list[str]] = {}
    for name, interval in cache.intervals.items():
        unit = next((unit for unit, _ in TRUNCATIONS if interval % unit == 0), None)
        if unit is None:
            log.warning("%s: %s candles (%d ns) are not whole minutes: not rebuilt", symbol, name, interval)
        else:
            by_truncation.setdefault(unit, []).append(name)
    candles: dict[str, list[Candle]] = {}
    window: list[Candle] = []
    for unit, trunc in TRUNCATIONS:
        names = by_truncation.get(unit, [])
        since = window_from if unit == MINUTE_NS and window_from <= end else None
        if not names and since is None:
            continue
        wanted = [cache.intervals[name] for name in names]
        groups = _groups(rows, trunc, wanted, cache.candles_kept, since)
        for name in names:
            candles[name] = groups
        if since is not None:
            window = [c for c in groups if c.start >= since]
    return History(trades, window, candles, trades[-1].trade_id, end)


def _groups(rows: QuerySet[Trade], trunc: Any, intervals: Sequence[int], kept: int, since: int | None
            ) -> list[Candle]:
    """Candles of the truncation's size (oldest first), as many as the newest `kept` buckets of every
    interval in `intervals` need, and back to engine time `since` (if given)."""
    grouped = (rows.annotate(bucket=trunc("executed_at", tzinfo=UTC)).values("bucket")
               .annotate(first=Min("trade_id"), last=Max("trade_id"), high=Max("price_ticks"),
                         low=Min("price_ticks"), volume=Sum("qty_lots"), trades=Count("id"))
               .order_by("-bucket"))
    needed: list[dict[str, Any]] = []
    seen = dict.fromkeys(intervals, 0)  # distinct buckets met so far, per interval
    previous = dict.fromkeys(intervals, -1)
    for group in grouped.iterator(chunk_size=2000):
        start = to_ns(group["bucket"])
        for interval in intervals:
            bucket = start - start % interval
            if bucket != previous[interval]:
                previous[interval] = bucket
                seen[interval] += 1
        if all(n > kept for n in seen.values()) and (since is None or start < since):
            break  # every interval has its `kept` newest buckets whole, and the window is covered
        group["start"] = start
        needed.append(group)
    prices = _prices(rows, [g["first"] for g in needed] + [g["last"] for g in needed])
    return [Candle(g["start"], prices[g["first"]], g["high"], g["low"], prices[g["last"]], g["volume"],
                   g["trades"]) for g in reversed(needed)]


def _prices(rows: QuerySet[Trade], trade_ids: list[int]) -> dict[int, int]:
    wanted = sorted(set(trade_ids))
    prices: dict[int, int] = {}
    for i in range(0, len(wanted), CHUNK):
        prices.update(rows.filter(trade_id__in=wanted[i:i + CHUNK]).values_list("trade_id", "price_ticks"))
    return prices
