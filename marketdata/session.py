"""One WebSocket connection's state, without Channels: what a client sent (parsed and checked), what it
is subscribed to, and its bounded outbound queue. The consumer (consumers.py) only moves messages between
this and the socket, the channel layer and the services.

The outbound queue (`Outbox`) keeps, in order, texts that must all arrive (answers, trades, private
updates) and one slot per conflatable stream (a symbol's level 2, its ticker, a candle): a slot already
queued is overwritten in place by a newer state, so a client that falls behind gets the latest depth, not
every intermediate one. Only the texts count against the bound; past it the client is a slow consumer
and is dropped (trades are never conflated, and buffering without limit would let one client exhaust
the server's memory).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange.api.parsers import loads
from marketdata.candles import INTERVALS
from marketdata.feed import FEEDS, PRIVATE_FEEDS, dumps, with_prev_seq

MAX_MESSAGE_CHARS = 65_536  # a client message longer than this is refused (error, connection kept)
OUTBOX_LIMIT = 2_000  # texts queued for one client before it is dropped as a slow consumer
MAX_SYMBOLS = 100  # symbols one connection may follow at once
ORDER_ACTIONS = frozenset({"order.submit", "order.cancel", "order.amend"})
ACTIONS = frozenset({"subscribe", "unsubscribe", "ping", "auth"}) | ORDER_ACTIONS


class ProtocolError(Exception):
    """A client message refused: answered with {"type": "error", "code", "message", "id"?}."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id

    def reply(self) -> dict[str, Any]:
        return error(self.code, self.message, self.request_id)


def error(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        out["id"] = request_id
    return out


def parse(text: str | None, data: bytes | None = None) -> dict[str, Any]:
    """A client frame as a request object with a known `action` (ProtocolError otherwise)."""
    if text is None:
        raise ProtocolError("invalid_message", "send JSON text frames, not binary ones")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError("message_too_large", f"a message may have at most {MAX_MESSAGE_CHARS} characters")
    try:  # the REST API's JSON rules: numbers keep their text (exact prices), bounded nesting, no NaN
        request = loads(text)
    except ValueError as exc:
        raise ProtocolError("invalid_json", f"the message is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ProtocolError("invalid_message", "a message is a JSON object with an \"action\"")
    request_id = request.get("id")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, (int, str))
                                   or (isinstance(request_id, str) and len(request_id) > 128)):
        raise ProtocolError("invalid_message", "id must be a number or a string of at most 128 characters")
    action = request.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise ProtocolError("unknown_action", f"action must be one of {', '.join(sorted(ACTIONS))}",
                            request_id)
    return request


@dataclass(frozen=True, slots=True)
class FeedRequest:
    symbol: str | None
    feeds: frozenset[str]
    interval: str


def feed_request(request: Mapping[str, Any]) -> FeedRequest:
    """The symbol, feed types and candle interval of a subscribe or unsubscribe (checked, not looked up)."""
    request_id = request.get("id")
    feeds = request.get("feed_types")
    if (not isinstance(feeds, list) or not feeds or len(feeds) > len(FEEDS)
            or not all(isinstance(f, str) for f in feeds)):
        raise ProtocolError("invalid_message", f"feed_types must be a list of {', '.join(sorted(FEEDS))}",
                            request_id)
    unknown = [f for f in feeds if f not in FEEDS]
    if unknown:
        raise ProtocolError("unknown_feed_type", f"unknown feed type {unknown[0]!r}; known: "
                            f"{', '.join(sorted(FEEDS))}", request_id)
    symbol = request.get("symbol")
    public = set(feeds) - PRIVATE_FEEDS
    if public:
        if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
            raise ProtocolError("invalid_message", "symbol is required for the public feeds", request_id)
    elif symbol is not None and not isinstance(symbol, str):
        raise ProtocolError("invalid_message", "symbol must be a string", request_id)
    interval = request.get("interval", "1m")
    if interval not in INTERVALS:
        raise ProtocolError("invalid_interval", f"interval must be one of {', '.join(INTERVALS)}", request_id)
    return FeedRequest(symbol if public else None, frozenset(feeds), interval)


class SlowConsumer(Exception):
    """The client's outbound queue passed its bound."""


class Outbox:
    """Ordered outbound messages, bounded; conflatable ones keep only their latest state (see module)."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        self._queue: deque[Any] = deque()  # str, or a slot key (a tuple)
        self._slots: dict[tuple, Any] = {}
        self._texts = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, text: str) -> None:
        if self._texts >= self.limit:
            raise SlowConsumer
        self._texts += 1
        self._queue.append(text)

    def put_slot(self, key: tuple, value: Any, merge: Any = None) -> None:
        """Queue `value` under `key`, or replace the queued one in place (`merge(old, new)` if given)."""
        if key in self._slots:
            old = self._slots[key]
            self._slots[key] = value if merge is None else merge(old, value)
        else:
            self._slots[key] = value
            self._queue.append(key)

    def pop(self) -> tuple[Any, Any]:
        """The next item: ("text", str) or (slot key, its latest value)."""
        item = self._queue.popleft()
        if isinstance(item, str):
            self._texts -= 1
            return "text", item
        return item, self._slots.pop(item)

    def drop(self, keys: Iterable[tuple]) -> None:
        """Forget queued slots (an unsubscribe): they are skipped when reached."""
        for key in keys:
            self._slots.pop(key, None)
        self._queue = deque(i for i in self._queue if isinstance(i, str) or i in self._slots)

    def clear(self) -> None:
        self._queue.clear()
        self._slots.clear()
        self._texts = 0


@dataclass(slots=True)
class SymbolFeeds:
    """One symbol's subscription on one connection: its feeds and where its sequences stand."""

    feeds: set[str] = field(default_factory=set)
    intervals: set[str] = field(default_factory=set)
    base_seq: int = 0  # the seq of the snapshot at subscribe: trades at or below it are in the past
    l2_received: int = 0  # the last level-2 seq received from the channel layer (or the snapshot's)
    l2_sent: int = 0  # the last level-2 seq queued to the client


@dataclass(slots=True)
class PendingLevel2:
    seq: int
    prev_seq: int  # the publisher's
    text: str  # rendered with the publisher's prev_seq
    gap: bool  # a publication between this and the last one received was lost on the way


class ClientState:
    """Subscriptions and the outbox of one connection (pure: the consumer feeds it)."""

    def __init__(self, outbox_limit: int = OUTBOX_LIMIT) -> None:
        self.outbox = Outbox(outbox_limit)
        self.symbols: dict[str, SymbolFeeds] = {}
        self.orders = False  # the private feed
        self.gaps = 0  # gaps seen on the way from the publisher (channel layer drops)
        # symbols being subscribed: their publications wait here until the snapshot is read
        self.pending: dict[str, list[Mapping[str, Any]]] = {}

    def send(self, message: Mapping[str, Any]) -> None:
        self.outbox.put(dumps(message))

    # ---- subscriptions ------------------------------------------------------------------------------

    def expect(self, symbol: str) -> None:
        """A subscription to `symbol` starts: hold its publications until `settle` (the consumer joins
        the group, then reads the snapshot, and a publication may come in between; dropped, it made
        the next level 2 look like a gap and its trades went missing when the snapshot was older)."""
        self.pending.setdefault(symbol, [])

    def settle(self, symbol: str) -> None:
        """The subscription is done (or refused): what came meanwhile, against the state it left."""
        for message in self.pending.pop(symbol, ()):
            self.on_md_update(message)

    def subscribe(self, symbol: str, feeds: Iterable[str], interval: str, snapshot_seq: int) -> bool:
        """Add public feeds of a symbol; True if the connection did not follow it before (join its group).
        A feed subscribed again restarts from the new snapshot."""
        new = symbol not in self.symbols
        if new and len(self.symbols) >= MAX_SYMBOLS:
            raise ProtocolError("too_many_subscriptions", f"at most {MAX_SYMBOLS} symbols per connection")
        sub = self.symbols.setdefault(symbol, SymbolFeeds())
        feeds = set(feeds)
        sub.feeds |= feeds
        if "candles" in feeds:
            sub.intervals.add(interval)
        if "level2" in feeds:
            sub.l2_received = sub.l2_sent = snapshot_seq
            self.outbox.drop([("l2", symbol)])
        if "trades" in feeds:
            sub.base_seq = snapshot_seq
        return new

    def unsubscribe(self, symbol: str, feeds: Iterable[str], interval: str | None = None) -> bool:
        """Remove public feeds; True if the connection follows nothing of the symbol any more (leave its
        group)."""
        sub = self.symbols.get(symbol)
        if sub is None:
            return False
        for feed in feeds:
            if feed == "candles" and interval is not None:
                sub.intervals.discard(interval)
                if sub.intervals:
                    continue
            sub.feeds.discard(feed)
        dropped: list[tuple] = []
        if "level2" not in sub.feeds:
            dropped.append(("l2", symbol))
        if "ticker" not in sub.feeds:
            dropped.append(("ticker", symbol))
        self.outbox.drop(dropped)
        if not sub.feeds:
            del self.symbols[symbol]
            return True
        return False

    # ---- from the channel layer ---------------------------------------------------------------------

    def on_md_update(self, message: Mapping[str, Any]) -> None:
        """A publisher's `md.update`: queue what this connection follows (raises SlowConsumer)."""
        symbol = message["symbol"]
        held = self.pending.get(symbol)
        if held is not None:
            if len(held) >= self.outbox.limit:
                raise SlowConsumer
            held.append(message)
            return
        sub = self.symbols.get(symbol)
        if sub is None:
            return
        feeds = sub.feeds
        # the trades first, then the book they left (in the order the matcher made them)
        if "trades" in feeds:
            for seq, text in message.get("trades", ()):
                if seq > sub.base_seq:
                    self.outbox.put(text)
        level2 = message.get("level2")
        if level2 is not None and "level2" in feeds and level2[0] > sub.l2_received:
            seq, prev_seq, text = level2
            gap = prev_seq > sub.l2_received  # a publication this connection should have had never came
            if gap:
                self.gaps += 1
            sub.l2_received = seq
            self.outbox.put_slot(("l2", symbol), PendingLevel2(seq, prev_seq, text, gap), _merge_level2)
        ticker = message.get("ticker")
        if ticker is not None and "ticker" in feeds and ticker[0] >= sub.base_seq:
            self.outbox.put_slot(("ticker", symbol), ticker[1])
        if "candles" in feeds:
            for interval, start, text in message.get("candles", ()):
                if interval in sub.intervals:
                    self.outbox.put_slot(("candle", symbol, interval, start), text)

    def on_user_updates(self, message: Mapping[str, Any]) -> None:
        if self.orders:
            for text in message["messages"]:
                self.outbox.put(text)

    # ---- to the socket ------------------------------------------------------------------------------

    def render(self, key: Any, value: Any) -> str | None:
        """The text of an item popped from the outbox (None: nothing to send)."""
        if key == "text":
            return value
        if key[0] == "l2":
            sub = self.symbols.get(key[1])
            if sub is None or "level2" not in sub.feeds:
                return None
            pending: PendingLevel2 = value
            if pending.seq <= sub.l2_sent:
                return None  # older than what the client holds (a re-subscription's snapshot)
            # no gap: chain onto what this client last got (the publisher's own chain, or a shorter one
            # where this outbox conflated); a gap: the publisher's prev_seq, which the client lacks
            prev = pending.prev_seq if pending.gap else sub.l2_sent
            sub.l2_sent = pending.seq
            return pending.text if prev == pending.prev_seq else with_prev_seq(pending.text, prev)
        return value  # a ticker or candle text


def _merge_level2(old: PendingLevel2, new: PendingLevel2) -> PendingLevel2:
    """The newer state replaces the queued one; a gap in either stays visible to the client."""
    if old.gap and not new.gap:
        return PendingLevel2(new.seq, new.prev_seq, new.text, True)
    return new
