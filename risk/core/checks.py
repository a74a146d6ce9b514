"""The pre-trade checks: pure reads of risk's state and the book, no changes.

New order, in this order (the first failure wins, each with its own reason):
  1. halted          the symbol is halted                                     -> halted
  2. order size      qty > max_order_qty (a user's override wins)             -> order_size
  3. position limit  position + every open order of the owner on that side    -> position_limit
                     + this one, all filled, beyond +-max_position
  4. price band      a limit (or stop-limit) price more than price_band_bps   -> price_band
                     from the last trade (else the reference price; none: skip); not a
                     market order's protection price
  5. buying power    a buy's reservation > cash - reserved (the balance stage) -> insufficient_funds
  6. hold rule       qty > hold_volume_bps x daily volume / 10,000            -> held for an admin
A limit is accepted exactly at its bound and refused one step beyond. Amends pass 1-5 for what they
add (more lots, a new price, more cash). Malformed orders (a missing price, a float quantity ...) are
not checked: the engine rejects them with its own reason, and nothing is reserved for them.
"""

from __future__ import annotations

from typing import Final, cast

from matching.engine.book import MAX_UNITS
from matching.engine.commands import AmendOrder, NewOrder
from matching.engine.engine import MatchingEngine
from matching.engine.types import OrderType, RejectReason, Side
from risk.core.accounts import Ledger, OrderRisk
from risk.core.limits import BPS, InstrumentRisk, UserLimit, beyond_bps
from risk.core.symbols import SymbolRisk
from risk.core.types import Verdict

BUY: Final = Side.BUY
LIMIT: Final = OrderType.LIMIT
MARKET: Final = OrderType.MARKET
STOP: Final = OrderType.STOP
STOP_LIMIT: Final = OrderType.STOP_LIMIT
PASS: Final = Verdict.PASS
HOLD: Final = Verdict.HOLD
MALFORMED: Final = Verdict.MALFORMED
HALTED: Final = RejectReason.HALTED
ORDER_SIZE: Final = RejectReason.ORDER_SIZE
POSITION_LIMIT: Final = RejectReason.POSITION_LIMIT
PRICE_BAND: Final = RejectReason.PRICE_BAND
INSUFFICIENT_FUNDS: Final = RejectReason.INSUFFICIENT_FUNDS


class PreTradeChecks:
    """Reads the state `RiskEngine` owns (the same objects, never rebound) and decides."""

    __slots__ = ("engine", "ledger", "symbols", "user_limits")

    def __init__(self, engine: MatchingEngine, ledger: Ledger, symbols: dict[str, SymbolRisk],
                 user_limits: dict[tuple[int, str], UserLimit]) -> None:
        self.engine = engine
        self.ledger = ledger
        self.symbols = symbols
        self.user_limits = user_limits

    def limits(self, owner: int, symbol: str, config: InstrumentRisk | None) -> tuple[int | None, int | None]:
        """(max_order_qty, max_position) for this owner: the user's override, else the instrument's."""
        max_qty = max_position = None
        if config is not None:
            max_qty, max_position = config.max_order_qty, config.max_position
        if self.user_limits:
            override = self.user_limits.get((owner, symbol))
            if override is not None:
                if override.max_order_qty is not None:
                    max_qty = override.max_order_qty
                if override.max_position is not None:
                    max_position = override.max_position
        return max_qty, max_position

    def check_new(self, cmd: NewOrder, hold_rule: bool = True, funds: bool = True
                  ) -> tuple[RejectReason | Verdict, int]:
        """Checks 1-6 for a new order on a symbol the engine has a book for. Returns the verdict and
        the cash units the order must reserve: a limit or stop-limit buy qty x limit price, a stop buy
        qty x stop price, a market buy qty x its protection price if it has one, else the cost of taking
        the best asks for qty (what is there), each times cash_per_tick_lot; a sell nothing.
        `hold_rule=False` when an admin releases a held order; `funds=False` for an order whose cash its
        balance shard holds already (check 5 skipped)."""
        # Untyped reads, as in the engine's book.py: compiled, a typed read of a wrongly typed field
        # would raise before the engine could reject it with a reason.
        qty: object = getattr(cmd, "qty")  # noqa: B009
        price: object = getattr(cmd, "price")  # noqa: B009
        stop: object = getattr(cmd, "stop_price")  # noqa: B009
        otype = cmd.order_type
        if type(qty) is not int or not 0 < qty <= MAX_UNITS:
            return MALFORMED, 0
        if otype is LIMIT or otype is STOP_LIMIT or (otype is MARKET and price is not None):
            if type(price) is not int or not 0 < price <= MAX_UNITS:  # (a market order's protection)
                return MALFORMED, 0
        elif price is not None or (otype is not MARKET and otype is not STOP):
            return MALFORMED, 0
        if (otype is STOP or otype is STOP_LIMIT) and (type(stop) is not int or not 0 < stop <= MAX_UNITS):
            return MALFORMED, 0
        owner, symbol = cmd.owner, cmd.symbol
        buy = cmd.side is BUY
        sym = self.symbols.get(symbol)
        config: InstrumentRisk | None = None
        cash_per_tick_lot = 1
        if sym is not None:
            if sym.halted:
                return HALTED, 0
            config = sym.config
            cash_per_tick_lot = sym.cash_per_tick_lot
        account = self.ledger.accounts.get(owner)
        if config is not None or self.user_limits:
            max_qty, max_position = self.limits(owner, symbol, config)
            if max_qty is not None and qty > max_qty:
                return ORDER_SIZE, 0
            if max_position is not None:
                position = None if account is None else account.positions.get(symbol)
                if position is None:
                    exposure = qty
                elif buy:
                    exposure = position.qty + position.open_buy + qty
                else:
                    exposure = position.open_sell + qty - position.qty
                if exposure > max_position:
                    return POSITION_LIMIT, 0
            # A market order's price is its protection, a bound on what it pays, never a price it rests
            # at: the band is for limit prices.
            if config is not None and config.price_band_bps is not None and price is not None \
                    and otype is not MARKET:
                reference = cast(SymbolRisk, sym).reference_price()
                if reference is not None and beyond_bps(price, reference, config.price_band_bps):
                    return PRICE_BAND, 0
        reserve = 0
        if buy:
            if otype is MARKET and price is None:
                reserve = self.engine.books[symbol].taker_cost(BUY, qty)[0] * cash_per_tick_lot
            elif otype is MARKET:  # protected: it never pays more than its protection price
                reserve = qty * cast(int, price) * cash_per_tick_lot
            else:
                unit = cast(int, stop if otype is STOP else price)
                reserve = qty * unit * cash_per_tick_lot
            if funds and self.ledger.cash.available(owner) < reserve:
                return INSUFFICIENT_FUNDS, 0
        if hold_rule and config is not None and config.hold_volume_bps is not None:
            volume = cast(SymbolRisk, sym).daily_volume(cmd.timestamp, config.reference_daily_volume)
            if qty * BPS > config.hold_volume_bps * volume:
                return HOLD, reserve
        return PASS, reserve

    def check_amend(self, order: OrderRisk, cmd: AmendOrder) -> RejectReason | None:
        """Checks 2-5 for what an amend adds (the caller checked the halt): a larger quantity (size,
        position), a new limit price (band), a larger reservation (funds). Amends the engine will
        refuse anyway (bad values, nothing to change) pass through to get the engine's reason."""
        values = _amend_values(order, cmd)
        if values is None:
            return None
        remaining, price, stop = values
        qty = remaining - order.remaining + order.qty
        symbol = order.symbol
        buy = order.side is BUY
        sym = self.symbols.get(symbol)
        config = None if sym is None else sym.config
        account = self.ledger.accounts[order.owner]
        if config is not None or self.user_limits:
            max_qty, max_position = self.limits(order.owner, symbol, config)
            if max_qty is not None and qty > order.qty and qty > max_qty:
                return ORDER_SIZE
            added = remaining - order.remaining
            if max_position is not None and added > 0:
                position = account.positions[symbol]
                if buy:
                    exposure = position.qty + position.open_buy + added
                else:
                    exposure = position.open_sell + added - position.qty
                if exposure > max_position:
                    return POSITION_LIMIT
            if config is not None and config.price_band_bps is not None and price is not None \
                    and price != order.price:
                reference = cast(SymbolRisk, sym).reference_price()
                if reference is not None and beyond_bps(price, reference, config.price_band_bps):
                    return PRICE_BAND
        if buy and not order.pooled:
            more = _cash_more(order, remaining, price, stop, sym)
            if more > 0 and more > self.ledger.cash.available(order.owner):
                return INSUFFICIENT_FUNDS
        return None

    def amend_cash(self, order: OrderRisk, cmd: AmendOrder) -> int:
        """What more the amendment makes a buy reserve (check 5's `more`; 0 or less: nothing more, or
        an amendment the engine will refuse anyway): what R1 extends its ticket by first."""
        if order.side is not BUY or order.pooled:
            return 0
        values = _amend_values(order, cmd)
        if values is None:
            return 0
        remaining, price, stop = values
        return _cash_more(order, remaining, price, stop, self.symbols.get(order.symbol))


def _amend_values(order: OrderRisk, cmd: AmendOrder) -> tuple[int, int | None, int | None] | None:
    """An amendment's (remaining lots, new price, new stop price) for the checks, None when the
    engine will refuse it anyway (bad values, nothing left)."""
    # Untyped reads, as in the engine's book.py: compiled, a typed read of a wrongly typed field
    # would raise before the engine could reject it with a reason.
    raw_qty: object = getattr(cmd, "qty")  # noqa: B009
    raw_price: object = getattr(cmd, "price")  # noqa: B009
    raw_stop: object = getattr(cmd, "stop_price")  # noqa: B009
    if not (_int_or_none(raw_qty) and _int_or_none(raw_price) and _int_or_none(raw_stop)):
        return None
    qty = order.qty if raw_qty is None else cast(int, raw_qty)
    price = cast("int | None", raw_price)
    stop = cast("int | None", raw_stop)
    remaining = order.remaining + qty - order.qty
    if remaining <= 0 or qty > MAX_UNITS or (price is not None and (order.price is None or not
                                                                   0 < price <= MAX_UNITS)):
        return None
    if stop is not None and not 0 < stop <= MAX_UNITS:
        return None
    return remaining, price, stop


def _cash_more(order: OrderRisk, remaining: int, price: int | None, stop: int | None,
               sym: SymbolRisk | None) -> int:
    """What a buy's amended reservation exceeds what it holds (check 5 for an amendment)."""
    unit = lot_unit(order.price if price is None else price, order.stop_price if stop is None else stop)
    return remaining * unit * (1 if sym is None else sym.cash_per_tick_lot) - order.reserved


def funding(cmd: NewOrder, cash_per_tick_lot: int) -> int | None:
    """What a balance shard holds for a new order before its matching shard sees it (R1): a buy's
    reservation as check 5 computes it, from the order alone (qty x limit price, x stop price for a
    stop, x protection price for a market buy), times cash_per_tick_lot; a sell, and a malformed buy, 0.
    None for a market buy without a protection price, whose cost only the book can tell."""
    if cmd.side is not BUY:
        return 0
    # Untyped reads (see _amend_values): a malformed order holds nothing, and the checks refuse it.
    qty: object = getattr(cmd, "qty")  # noqa: B009
    unit: object = getattr(cmd, "stop_price" if cmd.order_type is STOP else "price")
    if unit is None:
        return None
    if type(qty) is not int or type(unit) is not int or qty <= 0 or unit <= 0:
        return 0
    return qty * unit * cash_per_tick_lot


# What a market buy that names no protection price may pay above its reference when it is funded ahead
# of the book, if its instrument has no price band.
DEFAULT_PROTECTION_BPS: Final = 500


def protection(reference: int | None, band_bps: int | None) -> int:
    """A market buy's protection price when it names none (ticks): its reference (the best ask, else
    the last price) plus the instrument's price band (else DEFAULT_PROTECTION_BPS), rounded up; 1 tick
    with no reference at all (an empty book: nothing to buy). The embedded default's R1 and the web
    tier's, for a balance shard, both derive it here."""
    if not reference:
        return 1
    band = DEFAULT_PROTECTION_BPS if band_bps is None else band_bps
    return -(-reference * (10_000 + band) // 10_000)


def lot_unit(price: int | None, stop_price: int | None) -> int:
    """The price (ticks) a resting or pending buy reserves at: its limit price, else (a stop order)
    its stop price."""
    if price is not None:
        return price
    return 0 if stop_price is None else stop_price


def _int_or_none(value: object) -> bool:
    return value is None or type(value) is int
