"""Positions and per-order reservations: what a matching shard's risk keeps of its users, in integer
cash units. The cash itself is the balance stage's (cash.py over balances.py): the ledger tells it
each reservation and each settlement as it happens.

1 cash unit = 10**-CASH_DECIMALS of the currency. An instrument's `cash_per_tick_lot` converts
price (ticks) x quantity (lots) into cash units, so every amount here is an exact integer.

- `Holdings` (per owner): the owner's positions on this shard.
- `Position` (per owner and symbol): qty (signed lots), cost (cash units paid for the open
  position, signed like qty), realised profit, and the lots of open buy and sell orders (the
  position-limit check counts them as if filled).
- `OrderRisk`: what risk keeps for each live or held order: its open quantity, its reservation and
  the balance stage's ticket for it.
- `Account`: a read of an owner's cash (from the balance stage) and positions together.
- `Ledger`: all of the above plus the bookkeeping of one command (which positions it changed), so
  `RiskEngine` can emit each changed one once, with its final values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from matching.engine.events import OrderAmended, Trade
from matching.engine.types import OrderType, Side
from risk.core.cash import BalanceStage
from risk.core.events import PositionUpdate, RiskAlert
from risk.core.types import AlertKind

CASH_DECIMALS: Final = 4

BUY: Final = Side.BUY
OVERRUN: Final = AlertKind.RESERVATION_OVERRUN
# The position updates emitted after every command are built as the engine builds its hot events:
# tuple.__new__(EventType, fields) is the same object at half the cost of the class call.
_new: Final = tuple.__new__
POSITION_UPDATE: Final = PositionUpdate


@dataclass(slots=True)
class Position:
    symbol: str
    qty: int = 0
    cost: int = 0
    realised: int = 0
    open_buy: int = 0  # lots of this owner's live and held buy orders in the symbol
    open_sell: int = 0

    def fill(self, lots: int, lot_value: int) -> None:
        """Apply a fill of `lots` (buy > 0, sell < 0) at `lot_value` cash units a lot, at average cost.

        Adding to the position adds to its cost. Reducing it releases cost in proportion to the lots
        closed, floor-divided (closing all of it releases all of it: no rounding is left behind), and
        books the difference to the proceeds as realised. Any rest opens the other way at this fill's
        price. Each step keeps cost - realised equal to the net cash spent, exactly.
        """
        qty = self.qty
        if qty == 0 or (qty > 0) == (lots > 0):
            self.qty = qty + lots
            self.cost += lots * lot_value
            return
        held = qty if qty > 0 else -qty
        size = lots if lots > 0 else -lots
        closing = size if size < held else held
        closed = closing if lots > 0 else -closing
        released = self.cost * closing // held
        self.cost -= released
        self.realised -= closed * lot_value + released
        rest = lots - closed
        self.qty = qty + lots
        if rest:
            self.cost += rest * lot_value

    def copy(self) -> Position:
        return Position(self.symbol, self.qty, self.cost, self.realised, self.open_buy, self.open_sell)

    def state(self) -> list:
        return [self.symbol, self.qty, self.cost, self.realised]


@dataclass(slots=True)
class Holdings:
    """An owner's positions on this shard."""

    owner: int
    positions: dict[str, Position]

    def state(self) -> list:
        return [self.owner, [self.positions[symbol].state() for symbol in sorted(self.positions)]]


@dataclass(slots=True)
class Account:
    """A read of an account: the balance stage's cash and reserved, this shard's positions (copies)."""

    owner: int
    cash: int
    reserved: int
    positions: dict[str, Position]

    def available(self) -> int:
        return self.cash - self.reserved


@dataclass(slots=True)
class OrderRisk:
    """Risk's record of one live or held order.

    A buy reserves `lot_reserve` cash units per open lot (its limit price, or its stop price for a
    stop order, times cash_per_tick_lot); fills and cancels release the lots they take at that rate,
    whatever the fill price, so a fill below the limit frees the difference. A `pooled` order (a
    market order, or a stop order once triggered: both never rest) holds a budget instead: each fill
    draws its cost from `reserved`, and what is left is released when the order ends. Sells reserve
    nothing. `ticket`: the balance stage's number for the reservation (every order has one, a sell's
    holding 0), named in each settlement line of the order.
    """

    order_id: int
    owner: int
    symbol: str
    side: Side
    order_type: OrderType
    qty: int  # total, as the engine counts it (an amend changes it)
    remaining: int
    price: int | None
    stop_price: int | None
    lot_reserve: int
    reserved: int
    pooled: bool
    ticket: int = 0

    def state(self) -> list:
        return [self.order_id, self.owner, self.symbol, self.side.value, self.order_type.value, self.qty,
                self.remaining, self.price, self.stop_price, self.lot_reserve, self.reserved, self.pooled,
                self.ticket]

    @classmethod
    def from_state(cls, v: Sequence) -> OrderRisk:
        return cls(v[0], v[1], v[2], Side(v[3]), OrderType(v[4]), v[5], v[6], v[7], v[8], v[9], v[10], v[11],
                   v[12] if len(v) > 12 else 0)


class Ledger:
    """Positions and order reservations, changed only through these methods; every change of money
    goes to the balance stage (`cash`) as it happens."""

    __slots__ = ("accounts", "alerts", "cash", "orders", "traded")

    def __init__(self, cash: BalanceStage) -> None:
        self.cash = cash
        self.accounts: dict[int, Holdings] = {}
        self.orders: dict[int, OrderRisk] = {}  # live in the engine or held, by order id
        # What the current command changed: the positions it traded, and the overrun alerts it found.
        self.traded: dict[tuple[int, str], Position] = {}
        self.alerts: list[RiskAlert] = []

    # ---- accounts and positions ---------------------------------------------------------------

    def account(self, owner: int) -> Holdings:
        """The owner's holdings, opened on first sight (and the cash account with them)."""
        holdings = self.accounts.get(owner)
        if holdings is None:
            holdings = self.accounts[owner] = Holdings(owner, {})
            self.cash.open(owner)
        return holdings

    @staticmethod
    def position(holdings: Holdings, symbol: str) -> Position:
        position = holdings.positions.get(symbol)
        if position is None:
            position = holdings.positions[symbol] = Position(symbol)
        return position

    # ---- orders -------------------------------------------------------------------------------

    def open(self, order: OrderRisk) -> None:
        """Start tracking an order whose reservation the balance stage holds (`order.ticket`)."""
        position = self.position(self.account(order.owner), order.symbol)
        if order.side is BUY:
            position.open_buy += order.remaining
        else:
            position.open_sell += order.remaining
        self.orders[order.order_id] = order

    def close(self, order: OrderRisk, release: bool = True) -> None:
        """Stop tracking an order: its open lots and (`release`) whatever it still reserves are released."""
        del self.orders[order.order_id]
        position = self.accounts[order.owner].positions[order.symbol]
        if order.side is BUY:
            position.open_buy -= order.remaining
        else:
            position.open_sell -= order.remaining
        order.remaining = 0
        if release:
            self.cash.settle(order.owner, order.ticket, 0, order.reserved, order.order_id, True)
        order.reserved = 0

    def take_away(self, order_id: int, lots: int) -> None:
        """Lots of an order ended without a trade (canceled, expired, reduced by self-trade prevention)."""
        order = self.orders.get(order_id)
        if order is None:
            return  # an order risk never saw (the engine had it before risk wrapped it)
        if lots >= order.remaining:
            self.close(order)
            return
        position = self.accounts[order.owner].positions[order.symbol]
        order.remaining -= lots
        if order.side is BUY:
            position.open_buy -= lots
            if not order.pooled:
                self._reserve_to(order, order.remaining * order.lot_reserve)
        else:
            position.open_sell -= lots

    def amended(self, event: OrderAmended, lot_reserve: int) -> None:
        """Follow an amend: new quantity, prices and, for a buy, a reservation at the new rate (the
        pre-check made sure the account can afford any increase)."""
        order = self.orders.get(event.order_id)
        if order is None:
            return
        position = self.accounts[order.owner].positions[order.symbol]
        delta = event.remaining - order.remaining
        order.qty, order.remaining = event.qty, event.remaining
        order.price, order.stop_price = event.price, event.stop_price
        if order.side is BUY:
            position.open_buy += delta
            if not order.pooled:
                order.lot_reserve = lot_reserve
                self._reserve_to(order, order.remaining * lot_reserve)
        else:
            position.open_sell += delta

    def triggered(self, order_id: int) -> None:
        """A stop order became active: a stop (market) buy now spends its reservation as a budget."""
        order = self.orders.get(order_id)
        if order is not None and order.order_type is OrderType.STOP:
            order.pooled = True

    def _reserve_to(self, order: OrderRisk, target: int) -> None:
        if target < order.reserved:
            self.cash.settle(order.owner, order.ticket, 0, order.reserved - target, order.order_id, False)
        elif target > order.reserved:  # an amendment the pre-check let through: the cash is there
            self.cash.extend(order.owner, order.ticket, target - order.reserved)
        order.reserved = target

    # ---- trades -------------------------------------------------------------------------------

    def settle(self, trade: Trade, cash_per_tick_lot: int) -> None:
        """Cash from buyer to seller (conserved: one line each), both positions, both orders."""
        lot_value = trade.price * cash_per_tick_lot
        lots = trade.qty
        cost = lot_value * lots
        if trade.taker_side is BUY:
            buyer_owner, buy_id = trade.taker_owner, trade.taker_order_id
            seller_owner, sell_id = trade.maker_owner, trade.maker_order_id
        else:
            buyer_owner, buy_id = trade.maker_owner, trade.maker_order_id
            seller_owner, sell_id = trade.taker_owner, trade.taker_order_id
        symbol = trade.symbol
        buyer = self.account(buyer_owner)
        seller = self.account(seller_owner)
        bought = self.position(buyer, symbol)
        sold = self.position(seller, symbol)
        bought.fill(lots, lot_value)
        sold.fill(-lots, lot_value)
        self.traded[(buyer_owner, symbol)] = bought
        self.traded[(seller_owner, symbol)] = sold
        order = self.orders.get(buy_id)
        if order is not None:
            self._bought(bought, order, lots, cost, trade.timestamp)
        else:
            self.cash.settle(buyer_owner, None, -cost, 0, buy_id, False)
        order = self.orders.get(sell_id)
        ticket = None if order is None else order.ticket
        done = False
        if order is not None:
            order.remaining -= lots
            sold.open_sell -= lots
            if not order.remaining:
                del self.orders[sell_id]
                done = True
        self.cash.settle(seller_owner, ticket, cost, 0, sell_id, done)

    def _bought(self, position: Position, order: OrderRisk, lots: int, cost: int, ts: int) -> None:
        order.remaining -= lots
        position.open_buy -= lots
        if order.pooled:
            release = cost if cost <= order.reserved else order.reserved
        else:
            target = order.remaining * order.lot_reserve
            release = order.reserved - target if order.reserved > target else 0
        order.reserved -= release
        done = not order.remaining
        if done:
            order.reserved = 0
            del self.orders[order.order_id]
        self.cash.settle(order.owner, order.ticket, -cost, release, order.order_id, done)
        if release < cost:
            cash, reserved = self.cash.account(order.owner) or (0, 0)
            self.alerts.append(RiskAlert(
                order.owner, order.symbol, OVERRUN,
                f"order {order.order_id} filled {cost - release} cash units above its reservation; "
                f"cash {cash}, reserved {reserved}", ts))

    # ---- one command's changes ----------------------------------------------------------------

    def flush(self, ts: int, out: list) -> None:
        """PositionUpdate for every position the command traded, then AccountUpdate for every account
        it changed (or opened), sorted, with final values; then forget them."""
        if self.traded:
            traded = self.traded
            for key in sorted(traded):
                p = traded[key]
                out.append(_new(POSITION_UPDATE, (key[0], key[1], p.qty, p.cost, p.realised, ts)))
            self.traded = {}
        self.cash.flush(ts, out)

    # ---- state --------------------------------------------------------------------------------

    def state(self) -> list:
        return [[self.accounts[owner].state() for owner in sorted(self.accounts)],
                [self.orders[order_id].state() for order_id in sorted(self.orders)]]

    @classmethod
    def from_state(cls, state: Sequence, cash: BalanceStage) -> Ledger:
        holdings, orders = state
        ledger = cls(cash)
        for owner, positions in holdings:
            account = ledger.accounts[owner] = Holdings(owner, {})
            for symbol, qty, cost, realised in positions:
                account.positions[symbol] = Position(symbol, qty, cost, realised)
        for values in orders:
            order = OrderRisk.from_state(values)
            position = ledger.position(ledger.accounts[order.owner], order.symbol)
            if order.side is BUY:
                position.open_buy += order.remaining
            else:
                position.open_sell += order.remaining
            ledger.orders[order.order_id] = order
        return ledger
