"""A slow, obviously-correct reference model of ONE symbol's order book, for model-based tests.

Written for clarity, not speed: resting orders live in one plain list in arrival order (an order
that loses priority is removed and appended again), the best price is found by scanning with
min/max, and a price level is simply "the resting orders of one side at one price, in list order".
No heaps, no lazy deletion, no cached aggregates.

It implements the rules of docs/ENGINE.md for:

* limit orders with GTC, IOC and FOK (FOK counts only what it could really fill given its
  self-trade mode), with and without ``post_only``;
* market orders (GTC/IOC/FOK; the remainder is canceled with ``no_liquidity``);
* cancel (only by the owner, otherwise ``unknown_order``);
* amend: ``qty`` is the new total quantity; lowering it at the same price keeps priority, a
  price change or a quantity increase loses it (back of the queue, may trade as a taker);
* self-trade prevention: none, cancel_newest, cancel_oldest, cancel_both, decrement;
* the rejections the model-based test generates: invalid quantity/price, duplicate live order id,
  invalid options (post_only with ioc/fok or on a market order), post_only_would_take; for amends
  unknown_order, invalid_options, invalid_quantity, invalid_price, not_amendable (stop_price on a
  resting order) and post_only_would_take.

It emits the very event objects of ``matching.engine.events`` in the engine's order, including
``BookDelta``: one per level a sweep changed (when leaving the level, none for a level it left
unchanged), one when an order rests, one when an order is taken out by cancel/amend.

Left out on purpose (the unit tests cover them): stop and stop-limit orders, DAY/GTD orders and
expiry (``AdvanceTime``), symbols other than the model's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from matching.engine.commands import AmendOrder, CancelOrder, NewOrder
from matching.engine.events import (
    AmendRejected,
    BookDelta,
    CancelRejected,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderReduced,
    OrderRejected,
    Trade,
)
from matching.engine.types import CancelReason, OrderType, RejectReason, Side, STPMode, TimeInForce

MAX_UNITS = 10**15


@dataclass(eq=False)  # identity, not value: list.remove() must take out this very order
class RefOrder:
    order_id: int
    owner: int
    side: Side
    order_type: OrderType
    price: int | None  # None for a market order
    qty: int  # total quantity (an amend changes it)
    remaining: int
    tif: TimeInForce
    post_only: bool
    stp: STPMode
    timestamp: int

    @property
    def limit(self) -> int:
        """The price of a resting order (only limit orders rest)."""
        assert self.price is not None, self
        return self.price


def _valid_units(value: object) -> bool:
    return type(value) is int and 0 < value <= MAX_UNITS


def _opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


class ReferenceBook:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.resting: list[RefOrder] = []  # every resting order, in arrival (queue) order
        self.trade_count = 0

    # ---- queries ------------------------------------------------------------------------------

    def find(self, order_id: int) -> RefOrder | None:
        for order in self.resting:
            if order.order_id == order_id:
                return order
        return None

    def prices(self, side: Side) -> list[int]:
        """Distinct resting prices of one side, best first."""
        distinct = {o.limit for o in self.resting if o.side is side}
        return sorted(distinct, reverse=(side is Side.BUY))

    def best(self, side: Side) -> int | None:
        prices = [o.limit for o in self.resting if o.side is side]
        if not prices:
            return None
        return max(prices) if side is Side.BUY else min(prices)

    def level(self, side: Side, price: int) -> list[RefOrder]:
        """The resting orders at one price, oldest first."""
        return [o for o in self.resting if o.side is side and o.price == price]

    def level_qty(self, side: Side, price: int) -> int:
        return sum(o.remaining for o in self.level(side, price))

    def in_priority_order(self, side: Side) -> list[RefOrder]:
        return [o for price in self.prices(side) for o in self.level(side, price)]

    def depth(self) -> dict[str, list[tuple[int, int, int]]]:
        def side_depth(side: Side) -> list[tuple[int, int, int]]:
            return [(p, self.level_qty(side, p), len(self.level(side, p))) for p in self.prices(side)]

        return {"bids": side_depth(Side.BUY), "asks": side_depth(Side.SELL)}

    def crosses(self, side: Side, limit: int | None, price: int) -> bool:
        """Would an order of `side` with limit `limit` (None: market) trade at `price`?"""
        if limit is None:
            return True
        return price <= limit if side is Side.BUY else price >= limit

    def would_cross(self, side: Side, limit: int | None) -> bool:
        best = self.best(_opposite(side))
        return best is not None and self.crosses(side, limit, best)

    # ---- commands -----------------------------------------------------------------------------

    def submit(self, cmd: NewOrder) -> list:
        out: list = []
        ts = cmd.timestamp
        reason = self._check_new(cmd)
        if reason is not None:
            out.append(OrderRejected(cmd.order_id, cmd.owner, self.symbol, reason, ts))
            return out
        order = RefOrder(cmd.order_id, cmd.owner, cmd.side, cmd.order_type, cmd.price, cmd.qty, cmd.qty,
                         cmd.tif, cmd.post_only, cmd.stp, ts)
        out.append(OrderAccepted(order.order_id, order.owner, self.symbol, order.side, order.order_type,
                                 order.price, order.qty, ts))
        self._execute(order, ts, out)
        return out

    def cancel(self, cmd: CancelOrder) -> list:
        out: list = []
        ts = cmd.timestamp
        order = self.find(cmd.order_id)
        if order is None or order.owner != cmd.owner:
            out.append(CancelRejected(cmd.order_id, cmd.owner, self.symbol, RejectReason.UNKNOWN_ORDER, ts))
            return out
        canceled = order.remaining
        self._take_out(order, out)
        out.append(OrderCanceled(order.order_id, order.owner, self.symbol, canceled, CancelReason.USER, ts))
        return out

    def amend(self, cmd: AmendOrder) -> list:
        out: list = []
        ts = cmd.timestamp
        order = self.find(cmd.order_id)
        if order is None or order.owner != cmd.owner:
            reason: RejectReason | None = RejectReason.UNKNOWN_ORDER
        else:
            reason = self._check_amend(order, cmd)
        if reason is not None:
            out.append(AmendRejected(cmd.order_id, cmd.owner, self.symbol, reason, ts))
            return out
        assert order is not None
        new_qty = order.qty if cmd.qty is None else cmd.qty
        new_price = order.price if cmd.price is None else cmd.price
        new_remaining = order.remaining + new_qty - order.qty
        if new_qty <= order.qty and new_price == order.price:
            # Same price, not more quantity: shrink in place, keep the queue position.
            order.qty, order.remaining = new_qty, new_remaining
            out.append(self._amended(order, True, ts))
            out.append(self._delta(order.side, order.limit))
            return out
        # Loses priority: out of the book, then in again as a new arrival (may trade first).
        replacement = RefOrder(order.order_id, order.owner, order.side, order.order_type, new_price, new_qty,
                               new_remaining, order.tif, order.post_only, order.stp, ts)
        out.append(self._amended(replacement, False, ts))
        self._take_out(order, out)
        self._execute(replacement, ts, out)
        return out

    # ---- checks -------------------------------------------------------------------------------

    def _check_new(self, cmd: NewOrder) -> RejectReason | None:
        if not _valid_units(cmd.qty):
            return RejectReason.INVALID_QUANTITY
        if cmd.order_type is OrderType.LIMIT:
            if not _valid_units(cmd.price):
                return RejectReason.INVALID_PRICE
        elif cmd.price is not None:
            return RejectReason.INVALID_PRICE
        if self.find(cmd.order_id) is not None:
            return RejectReason.DUPLICATE_ORDER_ID
        assert cmd.order_type in (OrderType.LIMIT, OrderType.MARKET), "stops are not modeled"
        assert cmd.stop_price is None and cmd.expire_at is None, "stops and expiry are not modeled"
        assert cmd.tif in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK), "DAY/GTD are not modeled"
        if cmd.post_only:
            if cmd.order_type is OrderType.MARKET or cmd.tif is not TimeInForce.GTC:
                return RejectReason.INVALID_OPTIONS
            if self.would_cross(cmd.side, cmd.price):
                return RejectReason.POST_ONLY_WOULD_TAKE
        return None

    def _check_amend(self, order: RefOrder, cmd: AmendOrder) -> RejectReason | None:
        if cmd.qty is None and cmd.price is None and cmd.stop_price is None:
            return RejectReason.INVALID_OPTIONS
        if cmd.qty is not None:
            if type(cmd.qty) is not int or cmd.qty > MAX_UNITS:
                return RejectReason.INVALID_QUANTITY
            if order.remaining + cmd.qty - order.qty <= 0:  # the new total must exceed what is gone
                return RejectReason.INVALID_QUANTITY
        if cmd.price is not None and not _valid_units(cmd.price):
            return RejectReason.INVALID_PRICE
        if cmd.stop_price is not None:
            return RejectReason.NOT_AMENDABLE  # only pending stops have a trigger to amend
        if cmd.price is not None and order.post_only and self.would_cross(order.side, cmd.price):
            return RejectReason.POST_ONLY_WOULD_TAKE
        return None

    # ---- matching -----------------------------------------------------------------------------

    def _execute(self, order: RefOrder, ts: int, out: list) -> None:
        """Match an incoming (or re-entering) order, then rest it or cancel what is left."""
        if self.would_cross(order.side, order.price):
            if order.tif is TimeInForce.FOK and not self._fok_fillable(order):
                out.append(OrderCanceled(order.order_id, order.owner, self.symbol, order.remaining,
                                         CancelReason.FOK, ts))
                return
            self._sweep(order, ts, out)
        if order.remaining == 0:
            return
        if order.tif is TimeInForce.FOK:  # canceled whole, market or limit: nothing it could take
            reason = CancelReason.FOK
        elif order.order_type is OrderType.MARKET:
            reason = CancelReason.NO_LIQUIDITY
        elif order.tif is TimeInForce.IOC:
            reason = CancelReason.IOC
        else:
            self.resting.append(order)
            out.append(self._delta(order.side, order.limit))
            return
        out.append(OrderCanceled(order.order_id, order.owner, self.symbol, order.remaining, reason, ts))

    def _makers_in_reach(self, taker: RefOrder) -> list[RefOrder]:
        side = _opposite(taker.side)
        return [o for o in self.in_priority_order(side) if self.crosses(taker.side, taker.price, o.limit)]

    def _fok_fillable(self, taker: RefOrder) -> bool:
        """Walk the makers in priority order and count what would really fill."""
        need = taker.remaining
        for maker in self._makers_in_reach(taker):
            if maker.owner == taker.owner and taker.stp is not STPMode.NONE:
                if taker.stp is STPMode.CANCEL_OLDEST:
                    continue  # it would be canceled, not filled
                return False  # cancel_newest / cancel_both / decrement stop the fill here
            need -= maker.remaining
            if need <= 0:
                return True
        return False

    def _sweep(self, taker: RefOrder, ts: int, out: list) -> None:
        maker_side = _opposite(taker.side)
        while taker.remaining:
            price = self.best(maker_side)
            if price is None or not self.crosses(taker.side, taker.price, price):
                return
            qty_before = self.level_qty(maker_side, price)
            for maker in self.level(maker_side, price):
                if taker.remaining == 0:
                    break
                if maker.owner == taker.owner and taker.stp is not STPMode.NONE:
                    self._self_trade(taker, maker, ts, out)
                else:
                    self._fill(taker, maker, price, ts, out)
            qty_after = self.level_qty(maker_side, price)
            if qty_after != qty_before:  # one delta per level the sweep changed, when leaving it
                out.append(self._delta(maker_side, price))
            # A level is left either empty or with the taker done (or stopped by cancel_newest).
            assert qty_after == 0 or taker.remaining == 0

    def _fill(self, taker: RefOrder, maker: RefOrder, price: int, ts: int, out: list) -> None:
        fill = min(taker.remaining, maker.remaining)
        taker.remaining -= fill
        maker.remaining -= fill
        self.trade_count += 1
        out.append(Trade(self.trade_count, self.symbol, price, fill, taker.order_id, taker.owner, taker.side,
                         taker.remaining, maker.order_id, maker.owner, maker.remaining, ts))
        if maker.remaining == 0:
            self.resting.remove(maker)

    def _self_trade(self, taker: RefOrder, maker: RefOrder, ts: int, out: list) -> None:
        stp, owner = taker.stp, taker.owner
        if stp in (STPMode.CANCEL_NEWEST, STPMode.CANCEL_BOTH):
            out.append(OrderCanceled(taker.order_id, owner, self.symbol, taker.remaining,
                                     CancelReason.SELF_TRADE, ts))
            taker.remaining = 0
            if stp is STPMode.CANCEL_NEWEST:
                return
        if stp in (STPMode.CANCEL_OLDEST, STPMode.CANCEL_BOTH):
            reduce = maker.remaining
        else:  # decrement: both lose the smaller quantity, the taker's event first
            reduce = min(taker.remaining, maker.remaining)
            taker.remaining -= reduce
            if taker.remaining:
                out.append(OrderReduced(taker.order_id, owner, self.symbol, reduce, taker.remaining,
                                        CancelReason.SELF_TRADE, ts))
            else:
                out.append(OrderCanceled(taker.order_id, owner, self.symbol, reduce, CancelReason.SELF_TRADE,
                                         ts))
        maker.remaining -= reduce
        if maker.remaining:
            out.append(OrderReduced(maker.order_id, owner, self.symbol, reduce, maker.remaining,
                                    CancelReason.SELF_TRADE, ts))
        else:
            self.resting.remove(maker)
            out.append(OrderCanceled(maker.order_id, owner, self.symbol, reduce, CancelReason.SELF_TRADE, ts))

    # ---- helpers ------------------------------------------------------------------------------

    def _take_out(self, order: RefOrder, out: list) -> None:
        """Remove a resting order (cancel, or the old copy of an amended order)."""
        self.resting.remove(order)
        out.append(self._delta(order.side, order.limit))

    def _delta(self, side: Side, price: int) -> BookDelta:
        """The level's new aggregate quantity (0: the level is gone)."""
        return BookDelta(self.symbol, side, price, self.level_qty(side, price))

    def _amended(self, order: RefOrder, kept: bool, ts: int) -> OrderAmended:
        return OrderAmended(order.order_id, order.owner, self.symbol, order.price, order.qty, order.remaining,
                            None, kept, ts)
