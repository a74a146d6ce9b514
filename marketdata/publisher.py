"""The matcher side of the live feeds: one `Publisher` per matcher process (docs/WEBSOCKET.md).

    matcher thread ── publisher.on_replies(batch) ── a deque append (+ one wake-up per idle period)
    publish loop (an asyncio task; depth at most once every `interval`, 20 ms):
        drain the batches ── per symbol: the latest top 10 (conflated; read from the market-data cache's
        published Snapshot), every trade in order (never conflated), the ticker, the changed candles
        ── one `md.update` message per symbol to group md.<symbol>
        ── per owner: their order and fill updates in order (OrderTracker) to group user.<id>
    within the interval after a publication, new trades and private updates go out as they come (a
    trades-only `md.update`); the depth, ticker and candles they changed wait for the interval's end.

The matcher never waits for WebSocket clients: its part is an append. The loop runs where the channel
layer lives: embedded, in the server's event loop (the InMemoryChannelLayer's queues belong to it), started
by the lifespan (or the first WebSocket connection); production, in a thread of `runmatcher` with its own
loop, sending to channels-redis groups that every web process's consumers read.

Each level-2 publication carries `seq` (the last matcher seq that changed the symbol: the REST depth's
`seq`) and `prev_seq` (the seq of this publisher's previous level-2 publication for the symbol), so a
message the channel layer drops (channels-redis past its capacity) shows downstream as a gap.

An `md.update` with trades carries `trade_ns`, its first trade's engine timestamp (wall-clock
nanoseconds): the publisher records how long after it its group_send returned (stage
`matcher.trade_to_feed`, with the matcher's stages), and each web process's relay how long after it the
message was with every connection there (`ws.trade_to_fanout`, hub.py): where a trade's delay to the
subscribers comes from, in GET /api/performance/system and /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from marketdata.book_cache import MarketDataCache, Ticker, TradeTick
from marketdata.feed import (
    Level2,
    OrderTracker,
    Units,
    candle_message,
    dumps,
    render_private,
    ticker_message,
    trade_message,
)
from matching.engine.events import BookDelta, Trade
from matching.worker.matcher import Reply
from matching.worker.metrics import METRICS, Registry

log = logging.getLogger("marketdata.publisher")

INTERVAL = 0.02  # seconds between publications at the most: depth is conflated to this rate
_GROUP_SAFE = re.compile(r"[A-Za-z0-9._-]{1,80}")


def md_group(symbol: str) -> str:
    """The channel-layer group of one symbol's public feeds (group names allow few characters)."""
    if _GROUP_SAFE.fullmatch(symbol):
        return f"md.{symbol}"
    return "md._" + hashlib.sha256(symbol.encode()).hexdigest()[:40]


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def load_units(symbols: Sequence[str] | None = None) -> dict[str, Units]:
    """Instruments by symbol (synchronous: the ORM)."""
    from exchange.models import Instrument

    query = Instrument.objects.all() if symbols is None else Instrument.objects.filter(symbol__in=symbols)
    return {i.symbol: i for i in query}


class Publisher:
    """A matcher listener (`on_replies`) and the loop that publishes to the channel layer."""

    def __init__(self, cache: MarketDataCache, engine: Any = None, *, interval: float = INTERVAL,
                 units: dict[str, Units] | None = None, metrics: Registry = METRICS) -> None:
        self.cache = cache
        self._to_feed = metrics.stage("matcher.trade_to_feed")
        self.interval = interval
        self.tracker = OrderTracker()
        if engine is not None:  # before the matcher thread runs: its live orders, for later updates
            self.tracker.seed_engine(engine)
        self.units: dict[str, Units] = dict(units or {})
        self._inbox: deque[Sequence[Reply]] = deque()
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._last_l2: dict[str, Level2] = {}
        self._last_ticker: dict[str, Ticker] = {}
        # symbols changed since their last depth publication -> the first trade time not yet in candles
        self._unsettled: dict[str, int | None] = {}
        self.published = 0  # group messages sent (for tests and the benchmark)
        self.failures = 0

    # ---- the matcher thread -------------------------------------------------------------------------

    def on_replies(self, replies: Sequence[Reply]) -> None:
        """A bus listener: keep the batch for the loop; wake it if it is idle. Never blocks."""
        self._inbox.append(replies)
        loop = self._loop
        if not self._scheduled and loop is not None:
            self._scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop closed (the server stopping)
                loop.call_soon_threadsafe(self._wake)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the publish loop runs in (None before it starts)."""
        return self._loop

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    # ---- running it ---------------------------------------------------------------------------------

    def start_in_loop(self) -> None:
        """Run the publish loop as a task of the running event loop (embedded: the server's), unless it
        already runs there."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._stopping = False
        self._event = asyncio.Event()
        self._loop = loop
        self._task = loop.create_task(self._run(), name="marketdata-publisher")
        self._event.set()  # whatever arrived before the loop

    async def aclose(self) -> None:
        """Publish what is queued, then stop the task (the server shutting down)."""
        self._stopping = True
        task, self._task, self._loop = self._task, None, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def start_thread(self) -> None:
        """Production (`runmatcher`): the loop in a daemon thread of its own."""
        ready = threading.Event()

        async def main() -> None:
            self.start_in_loop()
            ready.set()
            assert self._task is not None
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="marketdata-publisher",
                                        daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop_soon(self) -> None:
        """From any thread: end the loop after one last publication (a replaced embedded publisher)."""
        loop = self._loop
        self._stopping = True
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop is closed already
                loop.call_soon_threadsafe(self._wake)

    def stop_thread(self, timeout: float = 5.0) -> None:
        self.stop_soon()  # a last publication, then the task ends
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def _run(self) -> None:
        assert self._event is not None
        layer = get_channel_layer()
        if layer is None:
            log.error("no channel layer configured: live feeds are off")
            return
        while True:
            await self._event.wait()
            self._event.clear()
            self._scheduled = False
            try:
                await self.publish(layer)
            except Exception:  # a failing layer must not end the feeds: the next change publishes again
                self.failures += 1
                log.exception("publishing market data failed")
            if self._stopping:
                return
            await self._between_publications(layer)

    async def _between_publications(self, layer: Any) -> None:
        """The rate bound on depth: for `interval` after a publication, changes wait and conflate, but
        what is never conflated (trades, a user's own order updates) goes out as it comes."""
        assert self._event is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.interval
        while (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except TimeoutError:
                break
            self._event.clear()
            self._scheduled = False
            if self._stopping:  # the last publication, whole, at once (then _run returns)
                self._event.set()
                return
            try:
                await self.publish(layer, depth=False)
            except Exception:
                self.failures += 1
                log.exception("publishing market data failed")
        if self._unsettled:  # their depth, ticker and candles are due
            self._event.set()

    # ---- one publication ----------------------------------------------------------------------------

    def pending(self) -> int:
        """Batches received and not yet published."""
        return len(self._inbox)

    async def publish(self, layer: Any, *, depth: bool = True) -> int:
        """Publish everything received since the last call (`depth=False`: all but the conflated
        states); returns the group messages sent."""
        messages = await self.collect(depth=depth)
        for group, message in messages:
            await layer.group_send(group, message)
            traded = message.get("trade_ns")
            if traded is not None:
                self._to_feed.record(time.time_ns() - traded)
        self.published += len(messages)
        return len(messages)

    async def collect(self, *, depth: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """What to publish for everything received since the last call: (group, message) in order.
        `depth=False`: the trades and private updates only; the symbols' depth, ticker and candles wait
        for the next call with `depth=True` (the rate bound)."""
        batches = []
        while self._inbox:
            batches.append(self._inbox.popleft())
        if not batches and not (depth and self._unsettled):
            return []
        dirty: dict[str, None] = {}  # symbols whose book or trades changed, in first-seen order
        trades: dict[str, list[tuple[TradeTick, int]]] = defaultdict(list)
        private: dict[int, list[dict[str, Any]]] = defaultdict(list)
        fold = self.tracker.fold
        event: Any
        for replies in batches:
            for reply in replies:
                events = reply.events
                if not events:
                    continue
                for event in events:
                    kind = type(event)
                    if kind is BookDelta:
                        dirty[event.symbol] = None
                    elif kind is Trade:
                        dirty[event.symbol] = None
                        trades[event.symbol].append((tuple.__new__(TradeTick, (
                            event.trade_id, event.price, event.qty, str(event.taker_side), event.timestamp)),
                            reply.seq))
                for owner, update in fold(events, reply.seq):
                    private[owner].append(update)
        unsettled = self._unsettled
        for symbol in dirty:
            ticks = trades.get(symbol)
            first = ticks[0][0].ts if ticks else None
            if symbol not in unsettled or unsettled[symbol] is None:
                unsettled[symbol] = first
        out: list[tuple[str, dict[str, Any]]] = []
        for symbol in (list(unsettled) if depth else dirty):
            units = await self._units(symbol)
            if units is None:
                unsettled.pop(symbol, None)
                continue
            if depth:
                message = self._symbol_update(units, trades.get(symbol, ()), unsettled.pop(symbol))
            else:
                message = self._trades_update(units, trades.get(symbol, ()))
            if message is not None:
                out.append((md_group(symbol), message))
        for owner, updates in private.items():
            texts = []
            for update in updates:
                units = await self._units(update["symbol"])
                if units is not None:
                    texts.append(dumps(render_private(units, update)))
            if texts:
                out.append((user_group(owner), {"type": "user.updates", "messages": tuple(texts)}))
        return out

    @staticmethod
    def _update(units: Units, trades: Sequence[tuple[TradeTick, int]]) -> dict[str, Any]:
        """A symbol's group message with its trades rendered and nothing else yet; values are tuples of
        str and int: the in-memory layer deep-copies a message per subscriber."""
        symbol = units.symbol
        return {"type": "md.update", "group": md_group(symbol), "symbol": symbol, "level2": None,
                "ticker": None, "trades": tuple((seq, dumps(trade_message(units, tick, seq)))
                                                for tick, seq in trades), "candles": (),
                "trade_ns": trades[0][0].ts if trades else None}

    def _trades_update(self, units: Units, trades: Sequence[tuple[TradeTick, int]]) -> dict[str, Any] | None:
        """A group message with a symbol's new trades alone (its depth follows at the rate bound)."""
        return self._update(units, trades) if trades else None

    def _symbol_update(self, units: Units, trades: Sequence[tuple[TradeTick, int]],
                       candles_from: int | None) -> dict[str, Any] | None:
        """One group message with what changed about a symbol, pre-rendered once for every consumer:
        `trades` not yet published, the depth and ticker now, the candles of trades since `candles_from`
        (a trade time; None: no trade since the last publication)."""
        symbol = units.symbol
        snap = self.cache.snapshot(symbol)
        message = self._update(units, trades)
        last = self._last_l2.get(symbol)
        if last is None or snap.seq > last.seq:
            l2 = Level2.of(units, snap, 0 if last is None else last.seq)
            if last is None or l2.bids != last.bids or l2.asks != last.asks:  # else the top 10 is unchanged
                self._last_l2[symbol] = l2
                message["level2"] = l2.update()
        ticker = snap.ticker
        before = self._last_ticker.get(symbol)
        if before is None or before[2:-1] != ticker[2:-1]:  # last .. volume changed (not only seq or time)
            self._last_ticker[symbol] = ticker
            message["ticker"] = (ticker.seq, dumps(ticker_message(units, ticker)))
        if candles_from is not None:
            first = candles_from
            for interval, series in self.cache.candle_series(symbol).items():
                size = self.cache.intervals[interval]
                start = first - first % size
                message["candles"] += tuple((interval, c.start, dumps(candle_message(units, interval, c)))
                                            for c in series.last(4) if c.start >= start)
        if message["level2"] is None and message["ticker"] is None and not trades and not message["candles"]:
            return None
        return message

    async def _units(self, symbol: str) -> Units | None:
        units = self.units.get(symbol)
        if units is None:
            found = await sync_to_async(load_units, thread_sensitive=False)([symbol])
            units = found.get(symbol)
            if units is None:
                return None
            self.units[symbol] = units
        return units


# ---- the embedded publisher (one per process, beside the embedded matcher) ---------------------------

_embedded: Publisher | None = None


def install(publisher: Publisher) -> Publisher:
    """Register the embedded matcher's publisher (matching.services makes it with the matcher; the
    lifespan or the first WebSocket connection starts its loop). A new one replaces the last."""
    global _embedded
    old, _embedded = _embedded, publisher
    if old is not None and old.loop is not None and old is not publisher:
        old.stop_soon()
    return publisher


def installed() -> Publisher | None:
    return _embedded


def ensure_running() -> None:
    """In the running event loop: start the embedded publisher's loop there if it is not running yet
    (the lifespan at server start; the first WebSocket connection where there is no lifespan)."""
    publisher = _embedded
    if publisher is not None:
        publisher.start_in_loop()


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop the embedded publisher (and so the in-memory channel layer) runs in, if any."""
    publisher = _embedded
    return None if publisher is None else publisher.loop
