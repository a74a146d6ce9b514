"""Model-based test: the engine against the slow reference book, command by command.

A hypothesis `RuleBasedStateMachine` sends the same random commands to `MatchingEngine(["T"])`
and to `ReferenceBook("T")` (matching/tests/reference_book.py): limit orders in a narrow price
band (so most orders cross), market orders, three owners (so self-trade prevention fires) with
random STP modes, GTC/IOC/FOK, post-only, cancels (live, dead and never-used ids, right and wrong
owner), amends (qty up/down, price change, both, invalid ones), duplicate ids and malformed orders.
After every command the two event lists must be identical, and after every step the invariants
of docs/ENGINE.md are checked on the engine: book never crossed, price-time priority in level 3,
per-order quantity accounting from the events, trades within the taker's limit at the maker's
price, consecutive trade ids, IOC/FOK/market orders never resting, and level 2/3 equal to the model.

Stops and DAY/GTD orders are not modeled (the unit tests cover them).

Default run: a few seconds. `HYPOTHESIS_PROFILE=nightly` runs the long profile registered below
(2000 examples of up to 100 steps).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from matching.engine import (
    AmendOrder,
    BookDelta,
    CancelOrder,
    CancelReason,
    MatchingEngine,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderReduced,
    OrderType,
    Side,
    STPMode,
    TimeInForce,
    Trade,
)
from matching.tests.reference_book import ReferenceBook

SYMBOL = "T"
OWNERS = (1, 2, 3)

sides = st.sampled_from([Side.BUY, Side.SELL])
prices = st.integers(96, 104)  # narrow band: most orders cross something
qtys = st.integers(1, 20)
owners = st.sampled_from(OWNERS)
stp_modes = st.sampled_from(list(STPMode))
tifs = st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK])
post_only_flags = st.integers(0, 4).map(lambda n: n == 0)  # post-only one time in five


@dataclass
class Account:
    """What the events so far say about one accepted order."""

    owner: int
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    qty: int
    filled: int = 0
    canceled: int = 0  # OrderCanceled + OrderReduced quantities

    @property
    def open_qty(self) -> int:
        return self.qty - self.filled - self.canceled


def _fmt(events: list) -> str:
    return "\n".join(f"    {e!r}" for e in events) or "    (none)"


class EngineVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = MatchingEngine([SYMBOL])
        self.book = self.engine.books[SYMBOL]
        self.model = ReferenceBook(SYMBOL)
        self.clock = 1_000_000
        self.next_id = 1
        self.used_ids: list[int] = []
        self.accounts: dict[int, Account] = {}
        self.trades = 0
        self._pending_new: NewOrder | None = None  # the NewOrder being applied (its tif is not in events)

    # ---- plumbing ---------------------------------------------------------------------------

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _new_id(self) -> int:
        order_id = self.next_id
        self.next_id += 1
        self.used_ids.append(order_id)
        return order_id

    def _live_ids(self) -> list[int]:
        return [o.order_id for o in self.model.resting]

    def _run(self, cmd, model_step) -> list:
        got = self.engine.apply(cmd)
        want = model_step(cmd)
        assert got == want, f"{cmd!r}\n  engine:\n{_fmt(got)}\n  model:\n{_fmt(want)}"
        self._account(got)
        return got

    def _account(self, events: list) -> None:
        """Fold one command's events into the per-order accounts, checking each event."""
        for ev in events:
            if isinstance(ev, OrderAccepted):
                cmd = self._pending_new
                assert cmd is not None and cmd.order_id == ev.order_id
                self.accounts[ev.order_id] = Account(ev.owner, ev.side, ev.order_type, cmd.tif, ev.price,
                                                     ev.qty)
            elif isinstance(ev, Trade):
                self.trades += 1
                assert ev.trade_id == self.trades
                taker, maker = self.accounts[ev.taker_order_id], self.accounts[ev.maker_order_id]
                assert ev.qty > 0
                assert ev.taker_side is taker.side and maker.side is not taker.side
                assert ev.price == maker.price, "fills happen at the maker's price"
                if taker.price is not None:
                    if taker.side is Side.BUY:
                        assert ev.price <= taker.price, "a buy filled above its limit"
                    else:
                        assert ev.price >= taker.price, "a sell filled below its limit"
                taker.filled += ev.qty
                maker.filled += ev.qty
                assert ev.taker_remaining == taker.open_qty
                assert ev.maker_remaining == maker.open_qty
            elif isinstance(ev, OrderCanceled):
                acct = self.accounts[ev.order_id]
                acct.canceled += ev.canceled_qty
                assert ev.canceled_qty > 0
                if ev.reason is not CancelReason.USER:  # user cancels are checked by the invariant
                    assert acct.open_qty == 0, f"{ev!r} left {acct.open_qty} open"
            elif isinstance(ev, OrderReduced):
                acct = self.accounts[ev.order_id]
                acct.canceled += ev.reduced_qty
                assert ev.reason is CancelReason.SELF_TRADE and ev.reduced_qty > 0
                assert ev.remaining == acct.open_qty > 0
            elif isinstance(ev, OrderAmended):
                acct = self.accounts[ev.order_id]
                acct.qty, acct.price = ev.qty, ev.price
                assert ev.remaining == acct.open_qty > 0
            elif isinstance(ev, BookDelta):
                assert ev.symbol == SYMBOL and ev.qty >= 0

    # ---- rules ------------------------------------------------------------------------------

    def _submit(self, cmd: NewOrder) -> None:
        self._pending_new = cmd
        self._run(cmd, self.model.submit)

    @rule(side=sides, price=prices, qty=qtys, owner=owners, stp=stp_modes, tif=tifs,
          post_only=post_only_flags)
    def place_limit(self, side, price, qty, owner, stp, tif, post_only) -> None:
        self._submit(NewOrder(self._new_id(), owner, SYMBOL, side, qty, price, OrderType.LIMIT, tif,
                              post_only, stp=stp, timestamp=self._tick()))

    @rule(side=sides, qty=st.integers(1, 30), owner=owners, stp=stp_modes, tif=tifs)
    def place_market(self, side, qty, owner, stp, tif) -> None:
        self._submit(NewOrder(self._new_id(), owner, SYMBOL, side, qty, None, OrderType.MARKET, tif,
                              stp=stp, timestamp=self._tick()))

    @initialize(orders=st.lists(st.tuples(sides, prices, qtys, owners, stp_modes), max_size=12))
    def seed_book(self, orders) -> None:
        """Start most runs with some resting GTC orders (they cross each other too)."""
        for side, price, qty, owner, stp in orders:
            self.place_gtc(side, price, qty, owner, stp)

    @rule(side=sides, price=prices, qty=qtys, owner=owners, stp=stp_modes, post_only=post_only_flags)
    def place_gtc(self, side, price, qty, owner, stp, post_only=False) -> None:
        self._submit(NewOrder(self._new_id(), owner, SYMBOL, side, qty, price, post_only=post_only, stp=stp,
                              timestamp=self._tick()))

    @rule(data=st.data(), side=sides, owner=owners)
    def place_rejected(self, data, side, owner) -> None:
        """A duplicate of a live id, or a malformed order: OrderRejected and nothing else."""
        kinds = ["qty", "price", "market_price", "market_post_only"]
        live = self._live_ids()
        if live:
            kinds.append("duplicate")
        kind = data.draw(st.sampled_from(kinds), label="kind")
        ts = self._tick()
        if kind == "duplicate":
            order_id = data.draw(st.sampled_from(live), label="live id")
            cmd = NewOrder(order_id, owner, SYMBOL, side, 5, data.draw(prices), timestamp=ts)
        elif kind == "qty":
            bad_qty = data.draw(st.integers(-1, 0), label="bad qty")
            cmd = NewOrder(self._new_id(), owner, SYMBOL, side, bad_qty, 100, timestamp=ts)
        elif kind == "price":
            bad_price = data.draw(st.integers(-1, 0), label="bad price")
            cmd = NewOrder(self._new_id(), owner, SYMBOL, side, 5, bad_price, timestamp=ts)
        elif kind == "market_price":  # a market order's price is its protection: it must be a price
            bad_price = data.draw(st.integers(-1, 0), label="bad protection")
            cmd = NewOrder(self._new_id(), owner, SYMBOL, side, 5, bad_price, OrderType.MARKET, timestamp=ts)
        else:
            cmd = NewOrder(self._new_id(), owner, SYMBOL, side, 5, None, OrderType.MARKET, post_only=True,
                           timestamp=ts)
        self._submit(cmd)

    def _target(self, data) -> tuple[int, int]:
        """An order id (mostly live, sometimes dead or never used) and an owner (mostly its own)."""
        live = self._live_ids()
        choice = data.draw(st.integers(0, 9), label="target kind")
        if live and choice < 7:
            order_id = data.draw(st.sampled_from(live), label="live id")
        elif self.used_ids and choice < 9:
            order_id = data.draw(st.sampled_from(self.used_ids), label="used id")
        else:
            order_id = self.next_id + 1000  # never used
        acct = self.accounts.get(order_id)
        if acct is not None and data.draw(st.integers(0, 4), label="right owner") != 0:
            return order_id, acct.owner
        return order_id, data.draw(owners, label="owner")

    @precondition(lambda self: self.used_ids)
    @rule(data=st.data())
    def cancel(self, data) -> None:
        order_id, owner = self._target(data)
        self._run(CancelOrder(order_id, owner, SYMBOL, timestamp=self._tick()), self.model.cancel)

    @precondition(lambda self: self.used_ids)
    @rule(data=st.data())
    def amend(self, data) -> None:
        order_id, owner = self._target(data)
        acct = self.accounts.get(order_id)
        kind = data.draw(
            st.sampled_from(["qty", "qty", "price", "cross", "both", "nothing", "stop_price"]), label="kind"
        )
        qty = price = stop_price = None
        if kind in ("qty", "both"):
            base = acct.qty if acct is not None else 10
            qty = max(0, base + data.draw(st.integers(-8, 8), label="qty change"))
        if kind in ("price", "both"):
            price = data.draw(prices, label="new price")
        if kind == "cross":  # to the far touch or through it: trades, or post_only_would_take
            side = acct.side if acct is not None else Side.BUY
            far = self.model.best(Side.SELL if side is Side.BUY else Side.BUY)
            step = data.draw(st.integers(-1, 2), label="ticks through")
            price = max(1, (far or 100) + (step if side is Side.BUY else -step))
        if kind == "stop_price":
            stop_price = data.draw(prices, label="stop price")
        cmd = AmendOrder(order_id, owner, SYMBOL, qty, price, stop_price, timestamp=self._tick())
        self._run(cmd, self.model.amend)

    # ---- invariants -------------------------------------------------------------------------

    @invariant()
    def book_not_crossed(self) -> None:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is None or ask is None or bid < ask, f"crossed book: bid {bid} >= ask {ask}"
        assert bid == self.model.best(Side.BUY) and ask == self.model.best(Side.SELL)

    @invariant()
    def level3_in_priority_order(self) -> None:
        level3 = self.book.level3()
        for name, side in (("bids", Side.BUY), ("asks", Side.SELL)):
            orders = level3[name]
            for a, b in pairwise(orders):
                assert a.side is side and b.side is side
                assert a.price is not None and b.price is not None, "only limit orders rest"
                if side is Side.BUY:
                    assert a.price >= b.price, f"bids out of price order: {a.price} before {b.price}"
                else:
                    assert a.price <= b.price, f"asks out of price order: {a.price} before {b.price}"
                if a.price == b.price:
                    assert a.timestamp <= b.timestamp, f"FIFO broken at {a.price}: {a.order_id}, {b.order_id}"

    @invariant()
    def engine_book_equals_model(self) -> None:
        level3 = self.book.level3()
        for name, side in (("bids", Side.BUY), ("asks", Side.SELL)):
            got = [(o.order_id, o.owner, o.price, o.qty, o.remaining, o.timestamp) for o in level3[name]]
            want = [(o.order_id, o.owner, o.price, o.qty, o.remaining, o.timestamp)
                    for o in self.model.in_priority_order(side)]
            assert got == want, f"level 3 {name} differ:\n  engine {got}\n  model  {want}"
        assert self.book.depth(1000) == self.model.depth()
        assert sorted(self.book.orders) == sorted(self._live_ids()), "live order index out of step"

    @invariant()
    def quantities_conserved(self) -> None:
        level3 = self.book.level3()
        resting = {o.order_id: o for o in level3["bids"] + level3["asks"]}
        for order_id, acct in self.accounts.items():
            order = resting.get(order_id)
            left = order.remaining if order is not None else 0
            assert acct.qty == acct.filled + left + acct.canceled, (
                f"order {order_id}: qty {acct.qty} != filled {acct.filled} + resting {left} "
                f"+ canceled {acct.canceled}"
            )
            if order is not None:
                assert left > 0 and order.qty == acct.qty and order.price == acct.price

    @invariant()
    def only_gtc_limits_rest(self) -> None:
        level3 = self.book.level3()
        for order in level3["bids"] + level3["asks"]:
            acct = self.accounts[order.order_id]
            assert acct.order_type is OrderType.LIMIT and acct.tif is TimeInForce.GTC, (
                f"order {order.order_id} ({acct.order_type}, {acct.tif}) is resting"
            )


TestEngineVersusModel = EngineVersusModel.TestCase

# matching/tests/conftest.py (fixtures only) registers no hypothesis profile, so it lives here.
# Hypothesis ignores HYPOTHESIS_PROFILE by itself; this module reads it.
settings.register_profile("nightly", max_examples=2000, stateful_step_count=100, deadline=None)

if os.environ.get("HYPOTHESIS_PROFILE") == "nightly":
    TestEngineVersusModel.settings = settings.get_profile("nightly")
else:
    TestEngineVersusModel.settings = settings(
        max_examples=150,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# ---- the model itself, against hand-worked examples from docs/ENGINE.md -----------------------


def _both(commands: list) -> list[list]:
    """Run commands through engine and model; they must agree; return the engine's events."""
    engine, model = MatchingEngine([SYMBOL]), ReferenceBook(SYMBOL)
    steps: dict[type, Callable[[Any], list]] = {NewOrder: model.submit, CancelOrder: model.cancel,
                                                 AmendOrder: model.amend}
    results = []
    for cmd in commands:
        got, want = engine.apply(cmd), steps[type(cmd)](cmd)
        assert got == want, f"{cmd!r}\n  engine:\n{_fmt(got)}\n  model:\n{_fmt(want)}"
        results.append(got)
    return results


def test_sweep_two_levels_emits_one_delta_per_level_then_rests() -> None:
    *_, sweep = _both([
        NewOrder(1, 1, SYMBOL, Side.SELL, 5, 101, timestamp=1),
        NewOrder(2, 2, SYMBOL, Side.SELL, 5, 102, timestamp=2),
        NewOrder(3, 3, SYMBOL, Side.BUY, 12, 102, timestamp=3),
    ])
    assert sweep == [
        OrderAccepted(3, 3, SYMBOL, Side.BUY, OrderType.LIMIT, 102, 12, 3),
        Trade(1, SYMBOL, 101, 5, 3, 3, Side.BUY, 7, 1, 1, 0, 3),
        BookDelta(SYMBOL, Side.SELL, 101, 0),
        Trade(2, SYMBOL, 102, 5, 3, 3, Side.BUY, 2, 2, 2, 0, 3),
        BookDelta(SYMBOL, Side.SELL, 102, 0),
        BookDelta(SYMBOL, Side.BUY, 102, 2),
    ]


def test_self_trade_decrement_reduces_both_without_a_trade() -> None:
    *_, taker = _both([
        NewOrder(1, 1, SYMBOL, Side.SELL, 8, 100, timestamp=1),
        NewOrder(2, 1, SYMBOL, Side.BUY, 3, 100, stp=STPMode.DECREMENT, timestamp=2),
    ])
    assert taker == [
        OrderAccepted(2, 1, SYMBOL, Side.BUY, OrderType.LIMIT, 100, 3, 2),
        OrderCanceled(2, 1, SYMBOL, 3, CancelReason.SELF_TRADE, 2),
        OrderReduced(1, 1, SYMBOL, 3, 5, CancelReason.SELF_TRADE, 2),
        BookDelta(SYMBOL, Side.SELL, 100, 5),
    ]


def test_fok_blocked_by_own_order_with_cancel_newest() -> None:
    *_, fok = _both([
        NewOrder(1, 1, SYMBOL, Side.SELL, 5, 100, timestamp=1),
        NewOrder(2, 2, SYMBOL, Side.SELL, 5, 101, timestamp=2),
        NewOrder(3, 1, SYMBOL, Side.BUY, 6, 101, tif=TimeInForce.FOK, timestamp=3),
    ])
    assert fok == [
        OrderAccepted(3, 1, SYMBOL, Side.BUY, OrderType.LIMIT, 101, 6, 3),
        OrderCanceled(3, 1, SYMBOL, 6, CancelReason.FOK, 3),
    ]


def test_amend_price_loses_priority_and_trades() -> None:
    *_, amend = _both([
        NewOrder(1, 1, SYMBOL, Side.SELL, 5, 102, timestamp=1),
        NewOrder(2, 2, SYMBOL, Side.BUY, 4, 100, timestamp=2),
        AmendOrder(2, 2, SYMBOL, price=102, timestamp=3),
    ])
    assert amend == [
        OrderAmended(2, 2, SYMBOL, 102, 4, 4, None, False, 3),
        BookDelta(SYMBOL, Side.BUY, 100, 0),
        Trade(1, SYMBOL, 102, 4, 2, 2, Side.BUY, 0, 1, 1, 1, 3),
        BookDelta(SYMBOL, Side.SELL, 102, 1),
    ]
