"""Market data as the matcher last published it: level-2 depth, last trades and a 24h ticker.

DESIGN "Reading paths": depth, trades and ticker come from state the matcher keeps current, never
from asking the matcher per request nor from SQL. `MarketDataCache` is a matcher listener: on the
matcher thread (the one writer) it folds each batch's BookDelta and Trade events into its own books,
then publishes one immutable `Snapshot` per changed symbol by replacing a dict entry. A reader (any
web thread) takes that reference once, so all it reads about a symbol comes from one batch: no locks,
no torn reads, and a read costs a dict lookup and a slice. Integers only (ticks, lots, engine ns);
the edge converts to Decimal. Time is the engine's (command timestamps), never the wall clock.

Candles (marketdata/candles.py) are folded from the same Trade events and published the same way,
per symbol, beside the snapshot. After a restart, `seed_engine` restores the books; the trade list,
the 24h window and the candles come back through `seed_history` / `seed_trades` (marketdata/rebuild.py
reads them from the projected Trade rows). A trade id at or below the symbol's last one is never
counted twice (trade ids count 1, 2, 3 ... per symbol in engine order).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType
from typing import Any, NamedTuple

from sortedcontainers import SortedList

from marketdata.candles import EMPTY, INTERVALS, KEPT, Candle, CandleSet, Series
from matching.engine.events import BookDelta, Trade
from matching.worker.matcher import Reply

MINUTE_NS = 60 * 10**9
DAY_NS = 24 * 60 * MINUTE_NS
NEVER = 1 << 127  # no bucket to expire
NO_CANDLES: Mapping[str, Series] = MappingProxyType({})

Level = tuple[int, int]  # (price ticks, qty lots)


class TradeTick(NamedTuple):
    trade_id: int
    price: int
    qty: int
    side: str  # the taker's side, "buy" or "sell"
    ts: int  # engine ns


class Ticker(NamedTuple):
    symbol: str
    seq: int
    last: int | None  # last trade price, ever (not only in the window)
    bid: int | None
    ask: int | None
    open: int | None  # first trade price in the window; open/high/low None without trades in it
    high: int | None
    low: int | None
    volume: int  # lots traded in the window
    ts: int  # engine time the window was computed at


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One symbol as of the end of one batch; never changed after publication."""

    symbol: str
    seq: int  # the last matcher seq that changed the book or trades (0: never)
    bids: tuple[Level, ...]  # best first, at most depth_levels
    asks: tuple[Level, ...]
    trades: tuple[TradeTick, ...]  # newest first
    ticker: Ticker

    @classmethod
    def empty(cls, symbol: str) -> Snapshot:
        return cls(symbol, 0, (), (), (), Ticker(symbol, 0, None, None, None, None, None, None, 0, 0))


class History(NamedTuple):
    """A symbol's trade-derived state recovered outside the matcher (the projection), for `seed_history`."""

    trades: Sequence[TradeTick]  # the newest trades, oldest first (the last trades_kept are kept)
    window: Sequence[Candle]  # the 24h window ending at `now`, oldest first, in buckets that divide its own
    candles: Mapping[str, Sequence[Candle]]  # per interval, oldest first (finer ones are merged)
    last_trade_id: int  # the newest trade all of the above cover (0: none)
    now: int  # engine time the window ends at


class RollingWindow:
    """Open/high/low/volume over the last `window` of engine time, O(1) amortized per trade.

    Trades go into per-bucket aggregates (a minute by default); the window is the current bucket and
    the ones before it, `window / bucket` in all. The max (min) over a sliding window of buckets is
    the head of a queue of buckets whose highs decrease (lows increase): no rescan per trade."""

    __slots__ = ("bucket_ns", "buckets", "highs", "lows", "span", "volume")

    def __init__(self, window_ns: int = DAY_NS, bucket_ns: int = MINUTE_NS) -> None:
        self.bucket_ns = bucket_ns
        self.span = -(-window_ns // bucket_ns)
        self.buckets: deque[list[int]] = deque()  # [index, open, high, low, volume], oldest first
        self.highs: deque[list[int]] = deque()
        self.lows: deque[list[int]] = deque()
        self.volume = 0

    def add(self, ts: int, price: int, qty: int) -> None:
        index, buckets = ts // self.bucket_ns, self.buckets
        self.volume += qty
        if buckets and buckets[-1][0] >= index:  # the current bucket (engine time never goes back)
            bucket = buckets[-1]
            bucket[4] += qty
            higher, lower = price > bucket[2], price < bucket[3]
            if not (higher or lower):
                return
            bucket[2], bucket[3] = max(bucket[2], price), min(bucket[3], price)
        else:
            bucket = [index, price, price, price, qty]
            buckets.append(bucket)
            higher = lower = True
        if higher:  # `bucket` is the newest: it sits at the tail of both queues (popped here too)
            highs = self.highs
            while highs and highs[-1][2] <= price:
                highs.pop()
            highs.append(bucket)
        if lower:
            lows = self.lows
            while lows and lows[-1][3] >= price:
                lows.pop()
            lows.append(bucket)

    def expire(self, now: int) -> bool:
        """Drop buckets that left the window at engine time `now`; whether any did."""
        first, buckets = now // self.bucket_ns - self.span + 1, self.buckets
        dropped = False
        while buckets and buckets[0][0] < first:
            bucket = buckets.popleft()
            self.volume -= bucket[4]
            if self.highs[0] is bucket:
                self.highs.popleft()
            if self.lows[0] is bucket:
                self.lows.popleft()
            dropped = True
        return dropped

    def next_expiry(self) -> int:
        """The engine time at which the oldest bucket leaves the window."""
        return (self.buckets[0][0] + self.span) * self.bucket_ns if self.buckets else NEVER

    def stats(self) -> tuple[int | None, int | None, int | None, int]:
        if not self.buckets:
            return None, None, None, 0
        return self.buckets[0][1], self.highs[0][2], self.lows[0][3], self.volume


class _Book:
    """The writer's full state for one symbol (every level, not only the published top)."""

    __slots__ = ("applying", "asks", "bids", "candles", "last", "last_trade_id", "levels", "seq", "symbol",
                 "trades", "window")

    def __init__(self, symbol: str, trades_kept: int, window: RollingWindow, candles: CandleSet) -> None:
        self.symbol = symbol
        self.levels: dict[str, dict[int, int]] = {"buy": {}, "sell": {}}
        self.bids: SortedList = SortedList()  # prices; bids are read from the top, asks from the bottom
        self.asks: SortedList = SortedList()
        self.seq = 0
        self.applying = 0  # the seq whose events are being folded (several per reply)
        self.trades: deque[TradeTick] = deque(maxlen=trades_kept)
        self.last: int | None = None
        self.window = window
        self.candles = candles
        self.last_trade_id = 0  # trades at or below it are already counted (a seed, a replay)

    def add_trade(self, tick: TradeTick) -> bool:
        """Count one trade in the list, the window and the candles (once: False if already counted)."""
        if tick.trade_id <= self.last_trade_id:
            return False
        self.last_trade_id = tick.trade_id
        self.trades.append(tick)
        self.last = tick.price
        self.window.add(tick.ts, tick.price, tick.qty)
        self.candles.add(tick.ts, tick.price, tick.qty)
        return True

    def set_level(self, side: str, price: int, qty: int) -> None:
        levels, prices = self.levels[side], self.bids if side == "buy" else self.asks
        if qty > 0:
            if price not in levels:
                prices.add(price)
            levels[price] = qty
        elif levels.pop(price, None) is not None:
            prices.remove(price)

    def snapshot(self, n: int, now: int) -> Snapshot:
        bids, asks = self.levels["buy"], self.levels["sell"]
        top_bids = tuple((p, bids[p]) for p in islice(reversed(self.bids), n))
        top_asks = tuple((p, asks[p]) for p in islice(self.asks, n))
        ticker = Ticker(self.symbol, self.seq, self.last, top_bids[0][0] if top_bids else None,
                        top_asks[0][0] if top_asks else None, *self.window.stats(), now)
        return Snapshot(self.symbol, self.seq, top_bids, top_asks, tuple(reversed(self.trades)), ticker)


class MarketDataCache:
    """A matcher listener (`subscribe(cache)`) and the reader API over what it published."""

    def __init__(self, depth_levels: int = 50, trades_kept: int = 200, window_ns: int = DAY_NS,
                 bucket_ns: int = MINUTE_NS, intervals: Mapping[str, int] = INTERVALS,
                 candles_kept: int = KEPT) -> None:
        self.depth_levels, self.trades_kept = depth_levels, trades_kept
        self.window_ns, self.bucket_ns = window_ns, bucket_ns
        self.intervals, self.candles_kept = dict(intervals), candles_kept
        self.now = 0  # the latest engine timestamp seen
        self._books: dict[str, _Book] = {}  # writer only
        self._next_expiry = NEVER  # no window has a bucket to drop before this
        self._snapshots: dict[str, Snapshot] = {}  # published; readers only ever get() from it
        # published candles per symbol: {interval: Series}, a new dict per publication
        self._candles: dict[str, Mapping[str, Series]] = {}

    # ---- the writer (the matcher thread) ----------------------------------------------------

    def __call__(self, replies: Sequence[Reply]) -> set[str]:
        return self.apply(replies)

    def apply(self, replies: Sequence[Reply]) -> set[str]:
        """Fold one batch and publish what changed; returns the symbols republished (a quiet symbol
        too, when its 24h window moved on). Replies at or below a symbol's seq (replayed after a
        restart, or already in a seed) are ignored."""
        changed: set[str] = set()
        traded: set[str] = set()
        now, books = self.now, self._books
        event: Any  # narrowed by `type(event) is`, which mypy does not follow through `kind`
        for reply in replies:
            seq, cmd = reply.seq, reply.command
            if cmd is not None and cmd.timestamp > now:
                now = cmd.timestamp
            for event in reply.events:
                kind = type(event)
                if kind is not BookDelta and kind is not Trade:
                    continue
                book = books.get(event.symbol) or self._book(event.symbol)
                if book.applying != seq:
                    if seq <= book.seq:
                        continue
                    book.seq = book.applying = seq
                    changed.add(event.symbol)
                if kind is BookDelta:
                    book.set_level(event.side, event.price, event.qty)
                elif book.add_trade(tuple.__new__(TradeTick, (  # NamedTuple(...) costs 3x this
                        event.trade_id, event.price, event.qty, str(event.taker_side), event.timestamp))):
                    traded.add(event.symbol)
        self.now = now
        self._publish(changed, traded)
        return changed

    def seed(self, symbol: str, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]], seq: int,
             last_price: int | None = None) -> None:
        """Start a symbol from a recovered book ((price, qty, ...) levels, as `OrderBook.depth` gives):
        the deltas that built it are not replayed after a restart. Call it on the writer's thread."""
        book = self._book(symbol, fresh=True)
        for side, levels in (("buy", bids), ("sell", asks)):
            for level in levels:
                book.set_level(side, level[0], level[1])
        book.seq, book.last = seq, last_price
        self._publish({symbol}, {symbol})

    def seed_engine(self, engine: Any, seq: int) -> set[str]:
        """Seed every book of a recovered `MatchingEngine` at the matcher's `seq`."""
        for symbol, book in engine.books.items():
            depth = book.depth(1 << 62)
            self.seed(symbol, depth["bids"], depth["asks"], seq, book.last_price)
        return set(engine.books)

    def seed_history(self, symbol: str, history: History) -> None:
        """Replace a symbol's trade list, 24h window and candles with recovered ones (after `seed` or
        `seed_engine`, which start them empty; on the writer's thread, before subscribing). Trades up
        to `history.last_trade_id` are then counted: `apply` and `seed_trades` skip them."""
        book = self._book(symbol)
        book.trades.clear()
        book.trades.extend(history.trades)
        book.window = window = RollingWindow(self.window_ns, self.bucket_ns)
        for candle in history.window:  # open and volume first, then the extremes (a qty of 0)
            window.add(candle.start, candle.open, candle.volume)
            window.add(candle.start, candle.high, 0)
            window.add(candle.start, candle.low, 0)
        book.candles = self._candle_set()
        book.candles.seed(history.candles)
        book.last_trade_id = max(book.last_trade_id, history.last_trade_id)
        if book.last is None and history.trades:
            book.last = history.trades[-1].price
        self.now = max(self.now, history.now)
        window.expire(self.now)
        self._publish({symbol}, {symbol})

    def seed_trades(self, symbol: str, trades: Iterable[TradeTick]) -> int:
        """Count trades the matcher will not hand again (oldest first): e.g. those its recovery replayed
        before this cache was subscribed. Ones already counted (by trade id) are skipped; returns how
        many were new. On the writer's thread."""
        book, added = self._book(symbol), 0
        for tick in trades:
            if book.add_trade(tick):
                added += 1
                self.now = max(self.now, tick.ts)
        if added:
            self._publish({symbol}, {symbol})
        return added

    def _candle_set(self) -> CandleSet:
        return CandleSet(self.intervals, self.candles_kept)

    def _book(self, symbol: str, fresh: bool = False) -> _Book:
        book = None if fresh else self._books.get(symbol)
        if book is None:
            window = RollingWindow(self.window_ns, self.bucket_ns)
            book = self._books[symbol] = _Book(symbol, self.trades_kept, window, self._candle_set())
        return book

    def _publish(self, changed: set[str], traded: Iterable[str] = ()) -> None:
        now = self.now
        if now >= self._next_expiry:  # some quiet symbol's 24h window moved on: republish it too
            changed.update(s for s, b in self._books.items() if b.window.expire(now))
            self._next_expiry = min((b.window.next_expiry() for b in self._books.values()), default=NEVER)
        for symbol in changed:
            book = self._books[symbol]
            book.window.expire(now)  # a batch (or seed) may span more than the window
            self._next_expiry = min(self._next_expiry, book.window.next_expiry())
            self._snapshots[symbol] = book.snapshot(self.depth_levels, now)
        for symbol in traded:
            self._candles[symbol] = self._books[symbol].candles.published()

    # ---- readers (any thread) ------------------------------------------------------------------

    def symbols(self) -> list[str]:
        return sorted(self._snapshots)

    def snapshot(self, symbol: str) -> Snapshot:
        """Everything about one symbol from one batch (an empty one for a symbol never seen)."""
        return self._snapshots.get(symbol) or Snapshot.empty(symbol)

    def depth(self, symbol: str, n: int | None = None) -> dict[str, Any]:
        snap = self.snapshot(symbol)
        return {"seq": snap.seq, "bids": list(snap.bids[:n]), "asks": list(snap.asks[:n])}

    def trades(self, symbol: str, n: int | None = None) -> list[TradeTick]:
        return list(self.snapshot(symbol).trades[:n])

    def ticker(self, symbol: str) -> Ticker:
        return self.snapshot(symbol).ticker

    def candle_series(self, symbol: str) -> Mapping[str, Series]:
        """Every interval's candles of one symbol as one publication (empty for a symbol never seen)."""
        return self._candles.get(symbol, NO_CANDLES)

    def candles(self, symbol: str, interval: str, limit: int | None = None) -> list[Candle]:
        """The newest `limit` candles (all kept by default), oldest first; ValueError for an interval
        this cache does not keep."""
        if interval not in self.intervals:
            raise ValueError(f"unknown interval {interval!r}")
        return list(self.candle_series(symbol).get(interval, EMPTY).last(limit))
