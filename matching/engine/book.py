"""One symbol's limit order book: matching, resting, canceling, amending, expiring, stops.

Prices are integer ticks and quantities integer lots. Each side is a `Ladder`: a dict of
price levels keyed so that the best level has the smallest key (asks: price, bids: -price),
plus a binary heap of those keys whose top is always a live level. A heap beats a sorted
container here because the hot path only ever needs the best level; depth queries sort on
demand. Everything that changes state appends events to the caller's list.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from hashlib import sha256
from heapq import heapify, heappop, heappush, nsmallest
from typing import Final, cast

from matching.engine.commands import AmendOrder, CancelOrder, NewOrder
from matching.engine.events import (
    AmendRejected,
    BookDelta,
    CancelRejected,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    StopTriggered,
    Trade,
)
from matching.engine.order import Level, Order
from matching.engine.stops import StopBook
from matching.engine.types import CancelReason, OrderType, RejectReason, Side, STPMode, TimeInForce

# Bound on prices (ticks) and quantities (lots): keeps arithmetic and storage sane.
MAX_UNITS: Final = 10**15
_NO_LIMIT: Final = MAX_UNITS + 1  # the limit key of a market order: beyond every real price

# Enum members bound once as Final names: a plain global or class attribute lookup per use costs
# more than the comparison itself, interpreted and even more so compiled.
BUY: Final = Side.BUY
SELL: Final = Side.SELL
LIMIT: Final = OrderType.LIMIT
MARKET: Final = OrderType.MARKET
STOP: Final = OrderType.STOP
STOP_LIMIT: Final = OrderType.STOP_LIMIT
GTC: Final = TimeInForce.GTC
IOC: Final = TimeInForce.IOC
FOK: Final = TimeInForce.FOK
DAY: Final = TimeInForce.DAY
GTD: Final = TimeInForce.GTD
STP_NONE: Final = STPMode.NONE
CANCEL_NEWEST: Final = STPMode.CANCEL_NEWEST
CANCEL_OLDEST: Final = STPMode.CANCEL_OLDEST
CANCEL_BOTH: Final = STPMode.CANCEL_BOTH
SELF_TRADE: Final = CancelReason.SELF_TRADE
USER_CANCEL: Final = CancelReason.USER

# Hot paths build events with tuple.__new__(EventType, fields): same object, half the cost.
_new: Final = tuple.__new__
# The classes and functions the hot path calls, bound as Final too (compiled: no lookup per call).
ACCEPTED: Final = OrderAccepted
CANCELED: Final = OrderCanceled
TRADE: Final = Trade
DELTA: Final = BookDelta

# Command fields that still need checking are read with getattr(cmd, "name"): untyped, so that
# a wrongly typed field is rejected with a reason, also when the engine is compiled by mypyc
# (whose typed attribute reads would raise TypeError first).


class Ladder:
    """One side of the book."""

    __slots__ = ("heap", "levels", "side")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.levels: dict[int, Level] = {}
        self.heap: list[int] = []

    def best(self) -> Level | None:
        return self.levels[self.heap[0]] if self.heap else None

    def drop(self, key: int) -> None:
        """Remove an empty level; stale heap keys deeper down are skipped when they surface."""
        levels, heap = self.levels, self.heap
        del levels[key]
        while heap and heap[0] not in levels:
            heappop(heap)
        if len(heap) > 2 * len(levels) + 64:
            heap[:] = levels
            heapify(heap)

    def sorted_levels(self, n: int | None = None) -> list[Level]:
        keys = sorted(self.levels) if n is None else nsmallest(n, self.levels)
        return [self.levels[k] for k in keys]


class OrderBook:
    __slots__ = ("asks", "bids", "expiries", "last_price", "orders", "stops", "symbol", "trade_seq")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = Ladder(BUY)
        self.asks = Ladder(SELL)
        self.orders: dict[int, Order] = {}  # every live order: resting or pending stop
        self.stops = StopBook()
        self.expiries: list[tuple[int, int]] = []  # heap of (expire_at, order_id)
        self.last_price: int | None = None
        self.trade_seq = 0

    # ---- commands -------------------------------------------------------------------------

    def submit(self, cmd: NewOrder, out: list) -> None:
        ts = cmd.timestamp
        if self.expiries and self.expiries[0][0] <= ts:
            self.expire(ts, out)
        order_id, side, otype, tif = cmd.order_id, cmd.side, cmd.order_type, cmd.tif
        qty: object = getattr(cmd, "qty")
        price: object = getattr(cmd, "price")
        if not (
            # the common case, a plain GTC limit order, checked inline; the rest in _check_new
            otype is LIMIT and tif is GTC and type(qty) is int and 0 < qty <= MAX_UNITS
            and type(price) is int and 0 < price <= MAX_UNITS and order_id not in self.orders
            and cmd.stop_price is None and cmd.expire_at is None and not cmd.post_only
        ):
            reason = self._check_new(cmd)
            if reason is not None:
                out.append(OrderRejected(order_id, cmd.owner, self.symbol, reason, ts))
                return
        order = Order(cmd, ts)
        out.append(_new(ACCEPTED, (order_id, cmd.owner, self.symbol, side, otype, order.price, order.qty,
                                        ts)))
        if cmd.expire_at is not None:
            heappush(self.expiries, (cmd.expire_at, order_id))
        if otype is LIMIT and tif is not IOC and tif is not FOK:
            # The common case, inlined: a limit order that does not cross simply rests.
            limit = cast(int, order.price)
            if side is BUY:
                heap = self.asks.heap
                if not heap or heap[0] > limit:
                    self._rest(order, out)
                    return
            else:
                heap = self.bids.heap
                if not heap or heap[0] > -limit:
                    self._rest(order, out)
                    return
        elif otype is STOP or otype is STOP_LIMIT:
            self.stops.add(order)
            self.orders[order_id] = order
            return
        last = self.last_price
        self._execute(order, ts, out)
        if self.stops.keys and self.last_price != last:
            self._run_stops(ts, out)

    def cancel(self, cmd: CancelOrder, out: list) -> None:
        ts = cmd.timestamp
        if self.expiries and self.expiries[0][0] <= ts:
            self.expire(ts, out)
        order = self.orders.get(cmd.order_id)
        if order is None or order.owner != cmd.owner:
            out.append(CancelRejected(cmd.order_id, cmd.owner, self.symbol, RejectReason.UNKNOWN_ORDER, ts))
            return
        remaining = order.remaining
        self._remove(order, out)
        out.append(_new(CANCELED, (order.order_id, order.owner, self.symbol, remaining, USER_CANCEL,
                                        ts)))

    def amend(self, cmd: AmendOrder, out: list) -> None:
        ts = cmd.timestamp
        if self.expiries and self.expiries[0][0] <= ts:
            self.expire(ts, out)
        order = self.orders.get(cmd.order_id)
        if order is None or order.owner != cmd.owner:
            out.append(AmendRejected(cmd.order_id, cmd.owner, self.symbol, RejectReason.UNKNOWN_ORDER, ts))
            return
        reason = self._check_amend(order, cmd)
        if reason is not None:
            out.append(AmendRejected(cmd.order_id, cmd.owner, self.symbol, reason, ts))
            return
        qty = order.qty if cmd.qty is None else cmd.qty
        price = order.price if cmd.price is None else cmd.price
        stop_price = order.stop_price if cmd.stop_price is None else cmd.stop_price
        remaining = order.remaining + qty - order.qty
        pending = order.order_id in self.stops
        keeps_priority = qty <= order.qty and price == order.price and stop_price == order.stop_price
        if keeps_priority and not pending:
            level = self._level_of(order)
            level.qty -= order.remaining - remaining
            order.qty, order.remaining = qty, remaining
            out.append(self._amended(order, True, ts))
            out.append(BookDelta(self.symbol, order.side, level.price, level.qty))
            return
        if pending:
            if not keeps_priority:
                self.stops.remove(order)
            order.qty, order.remaining, order.price, order.stop_price = qty, remaining, price, stop_price
            if not keeps_priority:
                order.timestamp = ts
                self.stops.add(order)
            out.append(self._amended(order, keeps_priority, ts))
            return
        replacement = order.copy()
        replacement.qty, replacement.remaining, replacement.price = qty, remaining, price
        replacement.timestamp = ts
        out.append(self._amended(replacement, False, ts))
        self._remove(order, out)
        last = self.last_price
        self._execute(replacement, ts, out)
        if self.stops.keys and self.last_price != last:
            self._run_stops(ts, out)

    def expire(self, now: int, out: list) -> None:
        """Expire every DAY/GTD order whose time has come (expire_at <= now)."""
        expiries, orders = self.expiries, self.orders
        while expiries and expiries[0][0] <= now:
            expire_at, order_id = heappop(expiries)
            order = orders.get(order_id)
            if order is None or order.expire_at != expire_at:
                continue  # filled or canceled since
            remaining = order.remaining
            self._remove(order, out)
            out.append(OrderExpired(order_id, order.owner, self.symbol, remaining, now))

    # ---- queries --------------------------------------------------------------------------

    def best_bid(self) -> int | None:
        level = self.bids.best()
        return None if level is None else level.price

    def best_ask(self) -> int | None:
        level = self.asks.best()
        return None if level is None else level.price

    def spread(self) -> int | None:
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else ask - bid

    def mid(self) -> Fraction | None:
        """Exact mid in ticks (may be a half tick)."""
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else Fraction(bid + ask, 2)

    def depth(self, n: int = 10) -> dict[str, list[tuple[int, int, int]]]:
        """Level 2: the top n levels a side as (price, qty, order count), best first."""
        return {
            "bids": [(lv.price, lv.qty, lv.count) for lv in self.bids.sorted_levels(n)],
            "asks": [(lv.price, lv.qty, lv.count) for lv in self.asks.sorted_levels(n)],
        }

    def taker_cost(self, side: Side, qty: int) -> tuple[int, int]:
        """What a market order on `side` for `qty` lots would take right now, ignoring self-trade
        prevention: (sum of price x lots, lots found). Read-only. Unlike depth(), which sorts every
        level, it visits the heap in key order (children are never better than their parent) and
        stops at the last level it needs: O(k log k) for k levels. Stale keys are skipped once."""
        ladder = self.asks if side is BUY else self.bids
        levels, heap = ladder.levels, ladder.heap
        if not heap:
            return 0, 0
        best = levels[heap[0]]
        if best.qty >= qty:
            return qty * best.price, qty
        cost = taken = 0
        size = len(heap)
        frontier = [(heap[0], 0)]
        seen: set[int] = set()
        while frontier and taken < qty:
            key, index = heappop(frontier)
            child = 2 * index + 1
            if child < size:
                heappush(frontier, (heap[child], child))
                if child + 1 < size:
                    heappush(frontier, (heap[child + 1], child + 1))
            level = levels.get(key)
            if level is None or key in seen:
                continue
            seen.add(key)
            lots = qty - taken if qty - taken < level.qty else level.qty
            cost += lots * level.price
            taken += lots
        return cost, taken

    def level3(self) -> dict[str, list[Order]]:
        """Level 3: every resting order a side, in priority order."""
        return {
            "bids": [o for lv in self.bids.sorted_levels() for o in lv.live()],
            "asks": [o for lv in self.asks.sorted_levels() for o in lv.live()],
        }

    def state(self) -> tuple:
        """Everything that decides future behaviour, as plain values in a fixed order."""
        book = self.level3()
        pending = tuple(self.orders[k[2]].state() for k in (*self.stops.buys, *self.stops.sells))
        expiries = tuple(sorted(e for e in self.expiries if e[1] in self.orders))
        return (
            self.symbol,
            tuple(o.state() for o in book["bids"]),
            tuple(o.state() for o in book["asks"]),
            pending,
            self.stops.state(),
            expiries,
            self.last_price,
            self.trade_seq,
        )

    @classmethod
    def from_state(cls, state: Sequence) -> OrderBook:
        """Rebuild a book from `state()` (also after a JSON round trip): same hash, same future."""
        symbol, bids, asks, pending, stops, expiries, last_price, trade_seq = state
        book = cls(symbol)
        discard: list = []
        for values in (*bids, *asks):  # priority order, so FIFO is rebuilt as it was
            book._rest(Order.from_state(values), discard)
        for values in pending:
            order = Order.from_state(values)
            book.orders[order.order_id] = order
        book.stops.restore(stops)
        book.expiries = [tuple(entry) for entry in expiries]
        heapify(book.expiries)
        book.last_price, book.trade_seq = last_price, trade_seq
        return book

    def state_hash(self) -> str:
        """SHA-256 of `state()`: the same book hashes the same in any process."""
        return sha256(repr(self.state()).encode()).hexdigest()

    # ---- internals ------------------------------------------------------------------------

    def _level_of(self, order: Order) -> Level:
        price = cast(int, order.price)
        return self.bids.levels[-price] if order.side is BUY else self.asks.levels[price]

    def _amended(self, order: Order, kept: bool, ts: int) -> OrderAmended:
        return OrderAmended(order.order_id, order.owner, self.symbol, order.price, order.qty,
                            order.remaining, order.stop_price, kept, ts)

    def _crosses(self, side: Side, price: int) -> bool:
        if side is BUY:
            heap = self.asks.heap
            return bool(heap) and heap[0] <= price
        heap = self.bids.heap
        return bool(heap) and heap[0] <= -price

    def _check_new(self, cmd: NewOrder) -> RejectReason | None:
        otype, tif = cmd.order_type, cmd.tif
        qty: object = getattr(cmd, "qty")
        price: object = getattr(cmd, "price")
        if type(qty) is not int or not 0 < qty <= MAX_UNITS:
            return RejectReason.INVALID_QUANTITY
        if otype is LIMIT or otype is STOP_LIMIT or (otype is MARKET and price is not None):
            if type(price) is not int or not 0 < price <= MAX_UNITS:  # (a market order's protection)
                return RejectReason.INVALID_PRICE
        elif price is not None:
            return RejectReason.INVALID_PRICE
        if cmd.order_id in self.orders:
            return RejectReason.DUPLICATE_ORDER_ID
        stop: object = getattr(cmd, "stop_price")
        if otype is STOP or otype is STOP_LIMIT:
            if type(stop) is not int or not 0 < stop <= MAX_UNITS:
                return RejectReason.INVALID_STOP_PRICE
            if cmd.post_only:
                return RejectReason.INVALID_OPTIONS
            if self._stop_triggered(cmd.side, stop):
                return RejectReason.STOP_WOULD_TRIGGER
        elif stop is not None:
            return RejectReason.INVALID_STOP_PRICE
        expire_at: object = getattr(cmd, "expire_at")
        if tif is DAY or tif is GTD:
            if type(expire_at) is not int or expire_at <= cmd.timestamp:
                return RejectReason.INVALID_EXPIRY
        elif expire_at is not None:
            return RejectReason.INVALID_EXPIRY
        if (otype is MARKET or otype is STOP) and (cmd.post_only or tif is DAY or tif is GTD):
            return RejectReason.INVALID_OPTIONS
        if cmd.post_only:
            if tif is IOC or tif is FOK:
                return RejectReason.INVALID_OPTIONS
            if self._crosses(cmd.side, cast(int, price)):
                return RejectReason.POST_ONLY_WOULD_TAKE
        return None

    def _check_amend(self, order: Order, cmd: AmendOrder) -> RejectReason | None:
        qty: object = getattr(cmd, "qty")
        price: object = getattr(cmd, "price")
        stop: object = getattr(cmd, "stop_price")
        if qty is None and price is None and stop is None:
            return RejectReason.INVALID_OPTIONS
        if qty is not None and (
            type(qty) is not int or qty > MAX_UNITS or order.remaining + qty - order.qty <= 0
        ):
            return RejectReason.INVALID_QUANTITY
        if price is not None:
            if order.price is None:
                return RejectReason.NOT_AMENDABLE
            if type(price) is not int or not 0 < price <= MAX_UNITS:
                return RejectReason.INVALID_PRICE
        pending = order.order_id in self.stops
        if stop is not None:
            if not pending:
                return RejectReason.NOT_AMENDABLE
            if type(stop) is not int or not 0 < stop <= MAX_UNITS:
                return RejectReason.INVALID_STOP_PRICE
            if self._stop_triggered(order.side, stop):
                return RejectReason.STOP_WOULD_TRIGGER
        if price is not None and order.post_only and not pending and self._crosses(order.side, price):
            return RejectReason.POST_ONLY_WOULD_TAKE
        return None

    def _stop_triggered(self, side: Side, stop: int) -> bool:
        last = self.last_price
        if last is None:
            return False
        return last >= stop if side is BUY else last <= stop

    def _execute(self, order: Order, ts: int, out: list) -> None:
        """Match an active order against the book, then rest or cancel what is left. A market order
        with a price (its protection price) trades at that price or better only, and the rest is
        canceled like any market order's: no liquidity within its protection."""
        if order.side is BUY:
            opposite, limit = self.asks, _NO_LIMIT if order.price is None else order.price
        else:
            opposite, limit = self.bids, _NO_LIMIT if order.price is None else -order.price
        heap = opposite.heap
        if heap and heap[0] <= limit:
            if order.tif is FOK and not self._fillable(order, opposite, limit):
                out.append(OrderCanceled(order.order_id, order.owner, self.symbol, order.remaining,
                                         CancelReason.FOK, ts))
                return
            self._match(order, opposite, limit, ts, out)
        remaining = order.remaining
        if not remaining:
            return
        if order.tif is FOK:
            reason = CancelReason.FOK
        elif order.order_type is MARKET:
            reason = CancelReason.NO_LIQUIDITY
        elif order.tif is IOC:
            reason = CancelReason.IOC
        else:
            self._rest(order, out)
            return
        out.append(OrderCanceled(order.order_id, order.owner, self.symbol, remaining, reason, ts))

    def _fillable(self, order: Order, opposite: Ladder, limit: int) -> bool:
        """Can a fill-or-kill fill completely right now, given its self-trade mode?"""
        need, owner, stp = order.remaining, order.owner, order.stp
        for key in sorted(k for k in opposite.levels if k <= limit):
            for maker in opposite.levels[key].orders:
                if not maker.remaining:
                    continue
                if maker.owner == owner and stp is not STP_NONE:
                    if stp is CANCEL_OLDEST:
                        continue
                    return False
                need -= maker.remaining
                if need <= 0:
                    return True
        return False

    def _match(self, taker: Order, opposite: Ladder, limit: int, ts: int, out: list) -> None:
        # The hot path: locals instead of attribute lookups, one event per fill and one
        # BookDelta per level touched.
        append = out.append
        symbol, orders, levels, heap = self.symbol, self.orders, opposite.levels, opposite.heap
        maker_side = opposite.side
        taker_id, owner, taker_side, stp = taker.order_id, taker.owner, taker.side, taker.stp
        check_stp = stp is not STP_NONE
        remaining = taker.remaining
        trade_seq = self.trade_seq
        last = None
        while remaining and heap:
            key = heap[0]
            if key > limit:
                break
            level = levels[key]
            queue = level.orders
            head = level.head
            price = level.price
            level_qty = level.qty
            while remaining and level_qty:
                maker = queue[head]
                maker_left = maker.remaining
                if not maker_left:  # canceled while queued
                    head += 1
                    level.dead -= 1
                    continue
                if check_stp and maker.owner == owner:
                    if stp is CANCEL_NEWEST or stp is CANCEL_BOTH:
                        append(OrderCanceled(taker_id, owner, symbol, remaining, SELF_TRADE, ts))
                        remaining = 0
                        if stp is CANCEL_NEWEST:
                            break
                    if stp is CANCEL_OLDEST or stp is CANCEL_BOTH:
                        reduce = maker_left
                    else:  # decrement both sides by the smaller quantity
                        reduce = remaining if remaining < maker_left else maker_left
                        remaining -= reduce
                        if remaining:
                            append(OrderReduced(taker_id, owner, symbol, reduce, remaining, SELF_TRADE, ts))
                        else:
                            append(OrderCanceled(taker_id, owner, symbol, reduce, SELF_TRADE, ts))
                    maker_left -= reduce
                    maker.remaining = maker_left
                    level_qty -= reduce
                    if maker_left:
                        append(OrderReduced(maker.order_id, owner, symbol, reduce, maker_left, SELF_TRADE,
                                            ts))
                    else:
                        head += 1
                        del orders[maker.order_id]
                        level.count -= 1
                        append(OrderCanceled(maker.order_id, owner, symbol, reduce, SELF_TRADE, ts))
                    continue
                fill = remaining if remaining < maker_left else maker_left
                remaining -= fill
                maker_left -= fill
                level_qty -= fill
                maker.remaining = maker_left
                trade_seq += 1
                last = price
                append(_new(TRADE, (trade_seq, symbol, price, fill, taker_id, owner, taker_side, remaining,
                                    maker.order_id, maker.owner, maker_left, ts)))
                if not maker_left:
                    head += 1
                    del orders[maker.order_id]
                    level.count -= 1
            level.head = head
            if level_qty != level.qty:
                level.qty = level_qty
                append(_new(DELTA, (symbol, maker_side, price, level_qty)))
                if not level_qty:
                    opposite.drop(key)
                else:
                    level.trim()
        taker.remaining = remaining
        self.trade_seq = trade_seq
        if last is not None:
            self.last_price = last

    def _rest(self, order: Order, out: list) -> None:
        side, price = order.side, cast(int, order.price)
        if side is BUY:
            ladder, key = self.bids, -price
        else:
            ladder, key = self.asks, price
        level = ladder.levels.get(key)
        if level is None:
            level = ladder.levels[key] = Level(price)
            heappush(ladder.heap, key)
        level.orders.append(order)
        level.qty += order.remaining
        level.count += 1
        self.orders[order.order_id] = order
        out.append(_new(DELTA, (self.symbol, side, price, level.qty)))

    def _remove(self, order: Order, out: list) -> None:
        """Take a live order out of the book (resting or pending stop), without an event for it."""
        order_id = order.order_id
        del self.orders[order_id]
        if order_id in self.stops.keys:
            self.stops.remove(order)
            order.remaining = 0
            return
        side, price = order.side, cast(int, order.price)
        if side is BUY:
            ladder, key = self.bids, -price
        else:
            ladder, key = self.asks, price
        level = ladder.levels[key]
        level.qty -= order.remaining
        level.count -= 1
        order.remaining = 0
        if not level.count:
            ladder.drop(key)
        elif level.orders[level.head] is order:
            level.head += 1
            level.trim()
        else:
            level.dead += 1
            if level.dead > 16:
                level.compact()
        out.append(_new(DELTA, (self.symbol, side, price, level.qty)))

    def _run_stops(self, ts: int, out: list) -> None:
        """Trigger stops reached by the last price, oldest trigger first, until none is left;
        each triggered order's trades may move the price and trigger more."""
        stops = self.stops
        while stops.keys:
            last = cast(int, self.last_price)  # only called after a trade
            order_id = stops.pop_triggered(last)
            if order_id is None:
                return
            order = self.orders.pop(order_id)
            stop = cast(int, order.stop_price)
            out.append(StopTriggered(order_id, order.owner, self.symbol, stop, last, ts))
            order.order_type = MARKET if order.order_type is STOP else LIMIT
            order.timestamp = ts
            self._execute(order, ts, out)
