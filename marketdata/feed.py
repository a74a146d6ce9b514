"""The WebSocket protocol's messages (docs/WEBSOCKET.md), built from the matcher's published state and
events: plain functions and one small state machine (`OrderTracker`), no I/O, no Channels.

Prices and quantities are decimal strings exactly as the REST API writes them (`Instrument.ticks_to_price`,
`lots_to_qty`), times ISO 8601 UTC from engine time. Level 2 carries the top `LEVEL2_DEPTH` levels a side,
best first, whole (not deltas), so depth can be conflated: a client that misses an update still holds a
correct book after the next one, and `seq`/`prev_seq` tell it that it missed one.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from marketdata.book_cache import Level, Snapshot, Ticker, TradeTick
from marketdata.candles import Candle
from matching.engine.events import (
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    StopTriggered,
    Trade,
)
from matching.engine.types import OrderStatus, OrderType
from matching.timestamps import to_datetime
from risk.core.events import HeldOrderReleased, OrderHeld

LEVEL2_DEPTH = 10
PUBLIC_FEEDS = frozenset({"trades", "level2", "ticker", "candles"})
PRIVATE_FEEDS = frozenset({"orders"})
FEEDS = PUBLIC_FEEDS | PRIVATE_FEEDS


class Units(Protocol):
    """What converts engine integers to decimals: an `exchange.models.Instrument`."""

    symbol: str

    def ticks_to_price(self, ticks: int) -> Any: ...

    def lots_to_qty(self, lots: int) -> Any: ...


def dumps(message: Mapping[str, Any]) -> str:
    """One message as sent: compact JSON (every value is a str, int, None or a list of them)."""
    return json.dumps(message, separators=(",", ":"))


def iso(ns: int) -> str:
    """As the REST API writes times: 2026-12-03T13:14:15.123456+00:00."""
    return to_datetime(ns).isoformat()


def _price(units: Units, ticks: int | None) -> str | None:
    return None if ticks is None else str(units.ticks_to_price(ticks))


def levels(units: Units, side: Sequence[Level], n: int = LEVEL2_DEPTH) -> list[list[str]]:
    return [[str(units.ticks_to_price(p)), str(units.lots_to_qty(q))] for p, q in side[:n]]


def checksum(bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> int:
    """CRC-32 (unsigned) of "price:qty|price:qty...;price:qty|..." over the levels as sent (bids best
    first, then asks best first; an empty side is an empty string)."""
    text = "|".join(f"{p}:{q}" for p, q in bids) + ";" + "|".join(f"{p}:{q}" for p, q in asks)
    return zlib.crc32(text.encode())


@dataclass(frozen=True, slots=True)
class Level2:
    """One symbol's top of book as published; `prev_seq` is the publisher's previous one (0: none)."""

    symbol: str
    seq: int
    prev_seq: int
    bids: list[list[str]]
    asks: list[list[str]]
    checksum: int
    timestamp: str

    @classmethod
    def of(cls, units: Units, snap: Snapshot, prev_seq: int) -> Level2:
        bids, asks = levels(units, snap.bids), levels(units, snap.asks)
        return cls(snap.symbol, snap.seq, prev_seq, bids, asks, checksum(bids, asks), iso(snap.ticker.ts))

    def message(self, *, snapshot: bool = False, prev_seq: int | None = None) -> dict[str, Any]:
        """`level2_snapshot`, or `level2_update` with `prev_seq` (default: the publisher's)."""
        out: dict[str, Any] = {"type": "level2_snapshot" if snapshot else "level2_update",
                               "symbol": self.symbol, "bids": self.bids, "asks": self.asks, "seq": self.seq}
        if not snapshot:
            out["prev_seq"] = self.prev_seq if prev_seq is None else prev_seq
        out["checksum"] = self.checksum
        out["timestamp"] = self.timestamp
        return out

    def update(self) -> tuple[int, int, str]:
        """As the publisher sends it through the channel layer: (seq, prev_seq, the update's text).
        Immutable values only: the in-memory layer deep-copies a message for every subscriber."""
        return self.seq, self.prev_seq, dumps(self.message())


def with_prev_seq(text: str, prev_seq: int) -> str:
    """A level2_update's text with another prev_seq (a consumer that conflated, or after a gap)."""
    message = json.loads(text)
    message["prev_seq"] = prev_seq
    return dumps(message)


def trade_message(units: Units, tick: TradeTick, seq: int) -> dict[str, Any]:
    return {"type": "trade", "symbol": units.symbol, "trade_id": f"{units.symbol}-{tick.trade_id}",
            "price": str(units.ticks_to_price(tick.price)), "quantity": str(units.lots_to_qty(tick.qty)),
            "timestamp": iso(tick.ts), "side": tick.side, "seq": seq}


def ticker_message(units: Units, ticker: Ticker) -> dict[str, Any]:
    change = None if ticker.last is None or ticker.open is None else ticker.last - ticker.open
    return {"type": "ticker", "symbol": units.symbol, "last": _price(units, ticker.last),
            "bid": _price(units, ticker.bid), "ask": _price(units, ticker.ask),
            "open": _price(units, ticker.open), "high": _price(units, ticker.high),
            "low": _price(units, ticker.low), "volume": str(units.lots_to_qty(ticker.volume)),
            "change": None if change is None else str(units.ticks_to_price(change)) if change >= 0
            else "-" + str(units.ticks_to_price(-change)),
            "timestamp": iso(ticker.ts), "seq": ticker.seq}


def candle_message(units: Units, interval: str, candle: Candle) -> dict[str, Any]:
    return {"type": "candle", "symbol": units.symbol, "interval": interval, "start": iso(candle.start),
            "open": str(units.ticks_to_price(candle.open)), "high": str(units.ticks_to_price(candle.high)),
            "low": str(units.ticks_to_price(candle.low)), "close": str(units.ticks_to_price(candle.close)),
            "volume": str(units.lots_to_qty(candle.volume)), "trades": candle.trades}


# ---- private updates ---------------------------------------------------------------------------------


class _Order:
    """What the tracker knows of one live order (the engine's fields, plus the lots filled so far)."""

    __slots__ = ("filled", "order_id", "order_type", "owner", "price", "qty", "remaining", "side", "status",
                 "stop_price", "symbol")

    def __init__(self, order_id: int, owner: int, symbol: str, side: str, order_type: str | None,
                 price: int | None, qty: int, remaining: int, status: str, stop_price: int | None = None,
                 filled: int = 0) -> None:
        self.order_id, self.owner, self.symbol, self.side = order_id, owner, symbol, side
        self.order_type, self.price, self.stop_price = order_type, price, stop_price
        self.qty, self.remaining, self.filled, self.status = qty, remaining, filled, status


TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


class OrderTracker:
    """Turns the matcher's events into each owner's `order` and `fill` messages (integers; `render`
    makes them decimal). It keeps the live orders' side, price, quantity and fills, which the engine's
    later events (a maker's trade, a cancel) do not repeat. Orders live before the publisher started are
    seeded from the recovered engine (`seed_engine`); one it never saw is reported with what the event
    itself says."""

    def __init__(self) -> None:
        self.orders: dict[int, _Order] = {}

    def seed_engine(self, engine: Any) -> None:
        for symbol, book in engine.books.items():
            for order in book.orders.values():
                pending = order.order_id in book.stops
                self.orders[order.order_id] = _Order(
                    order.order_id, order.owner, symbol, str(order.side), str(order.order_type), order.price,
                    order.qty, order.remaining,
                    OrderStatus.PENDING if pending else OrderStatus.OPEN if order.remaining == order.qty
                    else OrderStatus.PARTIALLY_FILLED, order.stop_price, order.qty - order.remaining)

    def fold(self, events: Iterable[Any], seq: int) -> list[tuple[int, dict[str, Any]]]:
        """(owner, raw update) per change the events make to anyone's order, in event order."""
        out: list[tuple[int, dict[str, Any]]] = []
        orders = self.orders
        for event in events:
            kind = type(event)
            if kind is OrderAccepted:
                stop = event.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
                held = orders.get(event.order_id)
                order = orders[event.order_id] = _Order(
                    event.order_id, event.owner, event.symbol, str(event.side), str(event.order_type),
                    event.price, event.qty, event.qty, OrderStatus.PENDING if stop else OrderStatus.OPEN,
                    None if held is None else held.stop_price)
                out.append((event.owner, self._update(order, event.timestamp, seq)))
            elif kind is OrderHeld:
                order = orders[event.order_id] = _Order(
                    event.order_id, event.owner, event.symbol, str(event.side), None, event.price, event.qty,
                    event.qty, OrderStatus.HELD)
                out.append((event.owner, self._update(order, event.timestamp, seq)))
            elif kind is OrderRejected:
                order = self._take(event.order_id) or _Order(
                    event.order_id, event.owner, event.symbol, "", None, None, 0, 0, OrderStatus.REJECTED)
                order.status, order.remaining = OrderStatus.REJECTED, 0
                out.append((event.owner, self._update(order, event.timestamp, seq, reason=str(event.reason))))
            elif kind is Trade:
                for order_id, owner, remaining, taker in (
                        (event.taker_order_id, event.taker_owner, event.taker_remaining, True),
                        (event.maker_order_id, event.maker_owner, event.maker_remaining, False)):
                    order = orders.get(order_id) or self._unknown(order_id, owner, event.symbol)
                    if taker and not order.side:
                        order.side = str(event.taker_side)
                    order.filled += event.qty
                    order.remaining = remaining
                    order.status = OrderStatus.FILLED if remaining == 0 else OrderStatus.PARTIALLY_FILLED
                    out.append((owner, {"type": "fill", "order_id": order_id, "symbol": event.symbol,
                                        "side": order.side, "price": event.price, "quantity": event.qty,
                                        "trade_id": event.trade_id,
                                        "liquidity": "taker" if taker else "maker",
                                        "timestamp": event.timestamp, "seq": seq}))
                    out.append((owner, self._update(order, event.timestamp, seq)))
                    if remaining == 0:
                        orders.pop(order_id, None)
            elif kind is OrderCanceled or kind is OrderExpired:
                order = self._take(event.order_id) or _Order(
                    event.order_id, event.owner, event.symbol, "", None, None, 0, 0, OrderStatus.CANCELED)
                order.status = OrderStatus.CANCELED if kind is OrderCanceled else OrderStatus.EXPIRED
                order.remaining = 0
                reason = str(event.reason) if kind is OrderCanceled else None
                out.append((event.owner, self._update(order, event.timestamp, seq, reason=reason)))
            elif kind is OrderReduced:
                order = orders.get(event.order_id) or self._unknown(event.order_id, event.owner, event.symbol)
                order.remaining = event.remaining
                out.append((event.owner, self._update(order, event.timestamp, seq, reason=str(event.reason))))
            elif kind is OrderAmended:
                order = orders.get(event.order_id) or self._unknown(event.order_id, event.owner, event.symbol)
                order.price, order.qty, order.remaining = event.price, event.qty, event.remaining
                order.stop_price = event.stop_price
                if order.status != OrderStatus.PENDING:
                    order.status = OrderStatus.OPEN if order.filled == 0 else OrderStatus.PARTIALLY_FILLED
                out.append((event.owner, self._update(order, event.timestamp, seq)))
            elif kind is StopTriggered:
                order = orders.get(event.order_id) or self._unknown(event.order_id, event.owner, event.symbol)
                order.status = OrderStatus.OPEN
                out.append((event.owner, self._update(order, event.timestamp, seq)))
            elif kind is HeldOrderReleased:
                pass  # the engine's events for the order follow (OrderAccepted, or a rejection)
        return out

    def _take(self, order_id: int) -> _Order | None:
        """Remove and return a tracked order (None: not tracked)."""
        return self.orders.pop(order_id) if order_id in self.orders else None

    def _unknown(self, order_id: int, owner: int, symbol: str) -> _Order:
        order = _Order(order_id, owner, symbol, "", None, None, 0, 0, OrderStatus.OPEN)
        self.orders[order_id] = order
        return order

    @staticmethod
    def _update(order: _Order, ts: int, seq: int, reason: str | None = None) -> dict[str, Any]:
        return {"type": "order", "order_id": order.order_id, "symbol": order.symbol,
                "side": order.side or None, "order_type": order.order_type, "status": str(order.status),
                "price": order.price, "stop_price": order.stop_price, "quantity": order.qty or None,
                "remaining_quantity": order.remaining,
                "filled_quantity": order.filled, "reason": reason, "timestamp": ts, "seq": seq}


_PRICES = ("price", "stop_price")
_QTYS = ("quantity", "remaining_quantity", "filled_quantity")


def render_private(units: Units, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A tracker update with decimal prices and quantities, ISO time and REST's trade id."""
    out = dict(raw)
    for name in _PRICES:
        if out.get(name) is not None:
            out[name] = str(units.ticks_to_price(out[name]))
    for name in _QTYS:
        if out.get(name) is not None:
            out[name] = str(units.lots_to_qty(out[name]))
    if "trade_id" in out:
        out["trade_id"] = f"{units.symbol}-{out['trade_id']}"
    out["timestamp"] = iso(out["timestamp"])
    return out
