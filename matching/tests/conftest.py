"""Fixtures and helpers for the pure-Python matching engine tests (no Django needed).

`h` wraps a `MatchingEngine` with one symbol "T": short helpers place orders and return that
command's events, every event is also kept in `h.log`, and `h.check()` verifies the book
invariants and the per-order quantity accounting over everything seen so far.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from matching.engine import (
    AdvanceTime,
    AmendOrder,
    BookDelta,
    CancelOrder,
    Command,
    MatchingEngine,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderType,
    Side,
    Trade,
    is_compiled,
)

SYM = "T"
BUY, SELL = Side.BUY, Side.SELL


def of(events, *kinds):
    """The events of the given types, in order."""
    return [e for e in events if isinstance(e, kinds)]


def kinds(events):
    """Event class names in order, e.g. ['OrderAccepted', 'Trade', 'BookDelta']."""
    return [type(e).__name__ for e in events]


def fills(events):
    """(maker id, price, qty) of each trade, in order."""
    return [(t.maker_order_id, t.price, t.qty) for t in of(events, Trade)]


def deltas(events):
    """(side, price, new level qty) of each BookDelta, in order."""
    return [(d.side, d.price, d.qty) for d in of(events, BookDelta)]


def canceled(events):
    """(order id, canceled qty, reason) of each OrderCanceled, in order."""
    return [(e.order_id, e.canceled_qty, e.reason) for e in of(events, OrderCanceled)]


def accounting_errors(log, book):
    """Orders whose events do not satisfy qty == filled + remaining + canceled.

    qty comes from OrderAccepted / OrderAmended, filled from trades on both sides, canceled from
    OrderCanceled, OrderExpired and OrderReduced, remaining from the live order in the book
    (0 when the order is gone). Assumes order ids are not reused in one log.
    """
    qty: dict[int, int] = {}
    filled: defaultdict[int, int] = defaultdict(int)
    gone: defaultdict[int, int] = defaultdict(int)
    for e in log:
        if isinstance(e, OrderAccepted | OrderAmended):
            qty[e.order_id] = e.qty
        elif isinstance(e, Trade):
            filled[e.taker_order_id] += e.qty
            filled[e.maker_order_id] += e.qty
        elif isinstance(e, OrderCanceled | OrderExpired):
            gone[e.order_id] += e.canceled_qty
        elif isinstance(e, OrderReduced):
            gone[e.order_id] += e.reduced_qty
    errors = []
    for oid, q in sorted(qty.items()):
        live = book.orders.get(oid)
        remaining = live.remaining if live is not None else 0
        if q != filled[oid] + remaining + gone[oid]:
            errors.append((oid, q, filled[oid], remaining, gone[oid]))
    return errors


def book_errors(book):
    """Inconsistencies between the book's queries: crossed book, level2 vs level3 mismatch."""
    errors: list[tuple] = []
    bid, ask = book.best_bid(), book.best_ask()
    if bid is not None and ask is not None and bid >= ask:
        errors.append(("crossed", bid, ask))
    depth, l3 = book.depth(10**9), book.level3()
    for side in ("bids", "asks"):
        agg: dict[int, list[int]] = {}
        for o in l3[side]:
            agg.setdefault(o.price, [0, 0])
            agg[o.price][0] += o.remaining
            agg[o.price][1] += 1
        if [(p, q, n) for p, (q, n) in agg.items()] != depth[side]:
            errors.append((side, depth[side], agg))
        prices = [p for p, _, _ in depth[side]]
        if prices != sorted(prices, reverse=side == "bids"):
            errors.append((side, "order", prices))
        if any(q <= 0 or n <= 0 for _, q, n in depth[side]):
            errors.append((side, "empty level", depth[side]))
    resting = {o.order_id for side in ("bids", "asks") for o in l3[side]}
    pending = set(book.orders) - resting
    if any(book.orders[i].order_type not in (OrderType.STOP, OrderType.STOP_LIMIT) for i in pending):
        errors.append(("non-stop order neither resting nor pending", pending))
    return errors


class Harness:
    """One engine, one symbol; every helper returns the events of its single command."""

    def __init__(self, engine: MatchingEngine, symbol: str = SYM) -> None:
        self.engine = engine
        self.symbol = symbol
        self.book = engine.books[symbol]
        self.log: list = []
        self.clock = 0

    def apply(self, cmd):
        events = self.engine.apply(cmd)
        self.log.extend(events)
        return events

    def _ts(self, ts):
        if ts is None:
            self.clock += 1
            return self.clock
        self.clock = max(self.clock, ts)
        return ts

    def new(self, oid, side, qty, price=None, owner=1, ts=None, **kw):
        kw.setdefault("symbol", self.symbol)
        return self.apply(NewOrder(oid, owner, side=side, qty=qty, price=price, timestamp=self._ts(ts), **kw))

    def limit(self, oid, side, qty, price, owner=1, **kw):
        return self.new(oid, side, qty, price, owner, **kw)

    def buy(self, oid, qty, price, owner=1, **kw):
        return self.new(oid, BUY, qty, price, owner, **kw)

    def sell(self, oid, qty, price, owner=1, **kw):
        return self.new(oid, SELL, qty, price, owner, **kw)

    def market(self, oid, side, qty, owner=1, **kw):
        return self.new(oid, side, qty, None, owner, order_type=OrderType.MARKET, **kw)

    def stop(self, oid, side, qty, stop_price, owner=1, price=None, **kw):
        otype = OrderType.STOP if price is None else OrderType.STOP_LIMIT
        return self.new(oid, side, qty, price, owner, order_type=otype, stop_price=stop_price, **kw)

    def cancel(self, oid, owner=1, ts=None, symbol=None):
        return self.apply(CancelOrder(oid, owner, symbol or self.symbol, timestamp=self._ts(ts)))

    def amend(self, oid, owner=1, ts=None, symbol=None, **kw):
        return self.apply(AmendOrder(oid, owner, symbol or self.symbol, timestamp=self._ts(ts), **kw))

    def advance(self, ts):
        return self.apply(AdvanceTime(self._ts(ts)))

    # ---- views of the book --------------------------------------------------------------

    def depth(self, n=10):
        return self.book.depth(n)

    def ids(self, side):
        """Resting order ids of one side ("bids"/"asks") in priority order."""
        return [o.order_id for o in self.book.level3()[side]]

    def check(self):
        """Book invariants plus quantity accounting over the whole log."""
        assert book_errors(self.book) == []
        assert accounting_errors(self.log, self.book) == []


@pytest.fixture
def engine():
    return MatchingEngine([SYM])


@pytest.fixture
def h(engine):
    return Harness(engine)


def random_commands(seed: int, n: int, symbols=(SYM,), ids_start: int = 1) -> list[Command]:
    """A reproducible mixed stream: limits, markets, stops, IOC/FOK/DAY, post-only, every STP
    mode, cancels, amends and AdvanceTime, on a narrow price band so much of it trades.
    Order ids are never reused. Uses only random.Random(seed), so it is the same in any process."""
    import random

    from matching.engine import STPMode, TimeInForce

    rnd = random.Random(seed)
    cmds: list[Command] = []
    ids: list[tuple[int, int, str]] = []
    ts = 0
    next_id = ids_start
    for _ in range(n):
        ts += rnd.randint(1, 5)
        sym = rnd.choice(symbols)
        r = rnd.random()
        if r < 0.12 and ids:
            oid, owner, osym = rnd.choice(ids[-12:])
            cmds.append(CancelOrder(oid, owner if rnd.random() < 0.9 else owner + 1, osym, ts))
            continue
        if r < 0.22 and ids:
            oid, owner, osym = rnd.choice(ids[-12:])
            kw = rnd.choice([{"qty": rnd.randint(1, 12)}, {"price": rnd.randint(95, 105)},
                             {"qty": rnd.randint(1, 12), "price": rnd.randint(95, 105)},
                             {"stop_price": rnd.randint(90, 110)}])
            cmds.append(AmendOrder(oid, owner, osym, timestamp=ts, **kw))
            continue
        if r < 0.25:
            cmds.append(AdvanceTime(ts))
            continue
        oid, owner = next_id, rnd.randint(1, 4)
        next_id += 1
        ids.append((oid, owner, sym))
        side = rnd.choice([BUY, SELL])
        qty = rnd.randint(1, 10)
        stp = rnd.choice(list(STPMode))
        kind = rnd.random()
        if kind < 0.08:
            cmds.append(NewOrder(oid, owner, sym, side, qty, order_type=OrderType.MARKET,
                                 tif=rnd.choice([TimeInForce.GTC, TimeInForce.FOK]), stp=stp, timestamp=ts))
        elif kind < 0.16:
            stop = rnd.randint(92, 108)
            limit = rnd.choice([None, rnd.randint(95, 105)])
            otype = OrderType.STOP if limit is None else OrderType.STOP_LIMIT
            cmds.append(NewOrder(oid, owner, sym, side, qty, limit, otype, stop_price=stop, stp=stp,
                                 timestamp=ts))
        else:
            tif = rnd.choice([TimeInForce.GTC] * 5 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY])
            expire = ts + rnd.randint(1, 40) if tif is TimeInForce.DAY else None
            post = tif in (TimeInForce.GTC, TimeInForce.DAY) and rnd.random() < 0.15
            cmds.append(NewOrder(oid, owner, sym, side, qty, rnd.randint(95, 105), tif=tif, post_only=post,
                                 expire_at=expire, stp=stp, timestamp=ts))
    return cmds


def refused_at_construction(cls, *args, **fields) -> bool:
    """Whether the command class itself refused a wrongly typed field (so the engine never sees it).

    Compiled by mypyc, command classes check field types when built and store a bool as an int;
    interpreted, they take anything and the engine must reject it with a reason. Either way no
    order results; this says which path applies, and pins that only the compiled classes refuse.
    """
    try:
        cmd = cls(*args, **fields)
    except TypeError:
        assert is_compiled()
        return True
    coerced = any(type(getattr(cmd, name)) is not type(value) for name, value in fields.items())
    assert not coerced or is_compiled()
    return coerced
