"""RiskEngine: pre-trade risk in front of the matching engine, settlement behind it.

The matcher calls `RiskEngine.apply(command)` instead of `MatchingEngine.apply`: engine commands
(NewOrder, CancelOrder, AmendOrder, AdvanceTime) and risk's admin commands alike. A new order is
checked (checks.py) and rejected, held, or handed to the engine with its cash reserved; the engine's
events are then settled: trades move cash and positions, cancels and fills release reservations,
prices feed the daily volume and the circuit breaker. Deterministic like the engine: no clock, no
randomness, time from `cmd.timestamp`, anything emitted for several accounts or symbols sorted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from hashlib import sha256
from typing import Any, Final, cast

from matching.engine.book import OrderBook
from matching.engine.commands import AdvanceTime, AmendOrder, CancelOrder, Command, NewOrder
from matching.engine.engine import MatchingEngine
from matching.engine.events import (
    AmendRejected,
    BookDelta,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    StopTriggered,
    Trade,
)
from matching.engine.types import CancelReason, OrderType, RejectReason, Side
from risk.core.accounts import Account, Ledger, OrderRisk, Position
from risk.core.admin import apply_admin, config_changes
from risk.core.balances import TICKET_STRIDE, BalanceShard
from risk.core.cash import BalanceStage, CashStage, LocalSettlement, SettlementOutbox
from risk.core.checks import PreTradeChecks, funding, lot_unit, protection
from risk.core.commands import (
    REFUSED,
    AdminCommand,
    Fence,
    FundedAmend,
    FundedOrder,
    copy_order,
    order_from_state,
    order_state,
)
from risk.core.events import (
    HeldOrderReleased,
    InstrumentHalted,
    InstrumentResumed,
    OrderHeld,
    RiskAlert,
    RiskEvent,
    Voids,
)
from risk.core.limits import UserLimit
from risk.core.symbols import SymbolRisk
from risk.core.types import CIRCUIT_BREAKER, AlertKind, Verdict

PASS: Final = Verdict.PASS
HOLD: Final = Verdict.HOLD
MALFORMED: Final = Verdict.MALFORMED
BUY: Final = Side.BUY


class RiskEngine:
    __slots__ = ("cash", "checks", "deadline", "engine", "fenced", "held", "ledger", "r1", "symbols",
                 "tripped", "user_limits")

    def __init__(self, engine: MatchingEngine, balances: BalanceShard | None = None,
                 matching_shard: int = 0, stage: BalanceStage | None = None) -> None:
        self.engine = engine
        # The balance stage (cash.py): a balance shard in this process, which holds every account's cash,
        # or (`stage`, a SettlementOutbox) balance shards elsewhere, which fund the orders and take the
        # settlements this shard emits.
        self.cash: BalanceStage = stage if stage is not None else CashStage(
            BalanceShard(0) if balances is None else balances, matching_shard)
        # With a LocalSettlement stage (the embedded default), R1 happens here, before the checks.
        self.r1: LocalSettlement | None = stage if isinstance(stage, LocalSettlement) else None
        self.ledger = Ledger(self.cash)
        self.fenced: dict[int, int] = {}  # balance shard -> its highest fenced ticket
        self.symbols: dict[str, SymbolRisk] = {}
        self.user_limits: dict[tuple[int, str], UserLimit] = {}
        self.held: dict[int, NewOrder] = {}  # held orders by id, in arrival order
        self.deadline: int | None = None  # the earliest end of a timed halt
        self.tripped: list[str] = []  # symbols whose circuit breaker tripped in the current command
        self.checks = PreTradeChecks(engine, self.ledger, self.symbols, self.user_limits)

    # ---- the entry point ----------------------------------------------------------------------

    def apply(self, cmd: Command | FundedOrder | FundedAmend | Fence | AdminCommand
              ) -> list[Event | RiskEvent]:
        """Apply one command; its events in order (see risk/core/events.py for the order)."""
        out: list[Event | RiskEvent] = []
        ts = cmd.timestamp
        self.cash.ts = ts
        if self.deadline is not None and ts >= self.deadline:
            self._lift_halts(ts, out)
        kind = type(cmd)
        if kind is NewOrder:
            if self.r1 is None:
                self._new(cast(NewOrder, cmd), out, None)
            else:
                self._fund_new(self.r1, cast(NewOrder, cmd), out)
        elif kind is FundedOrder:
            funded = cast(FundedOrder, cmd)
            if funded.ticket == REFUSED:  # its balance shard would not hold the cash: numbered, rejected
                self._unfunded_rejection(funded.order, out)
            elif funded.ticket > self.fenced.get(funded.ticket // TICKET_STRIDE, 0):
                self._new(funded.order, out, funded)
        elif kind is Fence:
            self._fence(cast(Fence, cmd), out)
        elif kind is CancelOrder:
            self._cancel(cast(CancelOrder, cmd), out)
        elif kind is AmendOrder:
            if self.r1 is None:
                self._amend(cast(AmendOrder, cmd), out, None)
            else:
                self._fund_amend(self.r1, cast(AmendOrder, cmd), out)
        elif kind is FundedAmend:
            funded_amend = cast(FundedAmend, cmd)
            self._amend(funded_amend.amend, out, funded_amend)
        elif isinstance(cmd, AdvanceTime):
            self.settle(self.engine.apply(cmd), out)
        else:
            apply_admin(self, cast(AdminCommand, cmd), out)
        self._finish(ts, out)
        return out

    def check_new(self, cmd: NewOrder, hold_rule: bool = True) -> tuple[RejectReason | Verdict, int]:
        """The whole pre-trade check of a new order, without changing anything (see checks.py)."""
        return self.checks.check_new(cmd, hold_rule)

    # ---- reads --------------------------------------------------------------------------------

    @property
    def balances(self) -> BalanceShard:
        """The balance shard in this process (a RiskEngine with a local balance stage only)."""
        cash = self.cash
        if isinstance(cash, LocalSettlement):
            return cash.balances
        if not isinstance(cash, CashStage):
            raise TypeError("the balance shards of this matching shard run elsewhere")
        return cash.balances

    def account(self, owner: int) -> Account | None:
        """The owner's cash (the balance stage's) and a copy of their positions here (None before the
        owner was first seen)."""
        holdings = self.ledger.accounts.get(owner)
        cash = self.cash.account(owner)
        if holdings is None and cash is None:
            return None
        positions = {} if holdings is None else {s: p.copy() for s, p in holdings.positions.items()}
        funds = (self.cash.default_cash, 0) if cash is None else cash
        return Account(owner, funds[0], funds[1], positions)

    def position(self, owner: int, symbol: str) -> Position | None:
        """A copy of the owner's position in the symbol (None if the owner never had an order in it)."""
        account = self.ledger.accounts.get(owner)
        position = None if account is None else account.positions.get(symbol)
        return None if position is None else position.copy()

    def held_orders(self) -> list[NewOrder]:
        """Copies of the held orders, oldest first."""
        return [copy_order(cmd, cmd.timestamp) for cmd in self.held.values()]

    def is_halted(self, symbol: str) -> bool:
        sym = self.symbols.get(symbol)
        return sym is not None and sym.halted

    def config_changes(self, commands: list[AdminCommand]) -> list[AdminCommand]:
        """Those of the configuration `commands` that would change something (see admin.py)."""
        return config_changes(self, commands)

    def next_deadline(self) -> int | None:
        """The earliest time a timed halt ends: the worker should apply an AdvanceTime then."""
        return self.deadline

    # ---- order commands -----------------------------------------------------------------------

    def _new(self, cmd: NewOrder, out: list, funded: FundedOrder | None) -> None:
        """A new order: checked, then reserved for (R1 here), or (`funded`) reserved for already by its
        balance shard, whose ticket is released whole if the order goes no further."""
        ts, order_id, owner, symbol = cmd.timestamp, cmd.order_id, cmd.owner, cmd.symbol
        self.ledger.account(owner)
        book = self.engine.books.get(symbol)
        if book is None:
            self.settle(self.engine.apply(cmd), out)  # the engine rejects the unknown symbol
            self._unfund(funded)
            return
        self._expire_due(book, ts, out)
        if order_id in self.ledger.orders:  # held under this id (the engine knows live ones itself)
            out.append(OrderRejected(order_id, owner, symbol, RejectReason.DUPLICATE_ORDER_ID, ts))
            self._unfund(funded)
            return
        verdict, reserve = self.checks.check_new(cmd, True, funded is None)
        if verdict is PASS or verdict is HOLD:
            if funded is None:
                ticket = self.cash.reserve(owner, reserve)
            elif funded.reserved >= reserve:
                ticket, reserve = funded.ticket, funded.reserved
            else:  # its balance shard holds less than the order needs
                ticket = None
            if ticket is None:
                out.append(OrderRejected(order_id, owner, symbol, RejectReason.INSUFFICIENT_FUNDS, ts))
                self._unfund(funded)
                return
            self.ledger.open(order_risk(cmd, reserve, ticket))
            if funded is not None:
                self.cash.confirm(owner, ticket, order_id)
        if verdict is PASS:
            self.settle(self.engine.apply(cmd), out)
        elif verdict is HOLD:
            self.held[order_id] = copy_order(cmd, ts)
            out.append(OrderHeld(order_id, owner, symbol, cmd.side, cmd.qty, cmd.price, ts))
        elif verdict is MALFORMED:
            self.settle(self.engine.apply(cmd), out)
            self._unfund(funded)
        else:
            out.append(OrderRejected(order_id, owner, symbol, verdict, ts))
            self._unfund(funded)

    def _fund_new(self, r1: LocalSettlement, cmd: NewOrder, out: list) -> None:
        """R1 in this process, as a balance shard does for a `Place`: hold what the order alone needs
        (`checks.funding`; a market buy without a protection price gets one first, `checks.protection`),
        then check and match it as the `FundedOrder` it makes. An unknown symbol goes no further."""
        book = self.engine.books.get(cmd.symbol)
        if book is None:
            self._new(cmd, out, None)
            return
        sym = self.symbols.get(cmd.symbol)
        if cmd.side is BUY and cmd.order_type is OrderType.MARKET and cmd.price is None:
            cmd.price = market_protection(book, sym)
        amount = funding(cmd, 1 if sym is None else sym.cash_per_tick_lot) or 0
        ticket = r1.fund(cmd.owner, amount)
        if ticket is None:  # as a balance shard's refusal (REFUSED): the symbol's checks never see it
            self._unfunded_rejection(cmd, out)
            return
        self._new(cmd, out, FundedOrder(cmd, ticket, amount))

    @staticmethod
    def _unfunded_rejection(cmd: NewOrder, out: list) -> None:
        """R1 would not hold the order's cash (here, or at its balance shard): rejected, nothing held."""
        out.append(OrderRejected(cmd.order_id, cmd.owner, cmd.symbol, RejectReason.INSUFFICIENT_FUNDS,
                                 cmd.timestamp))

    def _fund_amend(self, r1: LocalSettlement, cmd: AmendOrder, out: list) -> None:
        """R1 for an amendment: a buy that will hold more is extended on its ticket first (refused:
        the amendment is, for insufficient funds), then applied as the `FundedAmend` it makes."""
        record = self.ledger.orders.get(cmd.order_id)
        extra = 0 if record is None or record.owner != cmd.owner or cmd.order_id in self.held else \
            self.checks.amend_cash(record, cmd)
        if extra <= 0:
            self._amend(cmd, out, None)
            return
        assert record is not None
        if not r1.fund_more(cmd.owner, record.ticket, extra):
            out.append(AmendRejected(cmd.order_id, cmd.owner, cmd.symbol, RejectReason.INSUFFICIENT_FUNDS,
                                     cmd.timestamp))
            return
        self._amend(cmd, out, FundedAmend(cmd, record.ticket, extra))

    def _fence(self, cmd: Fence, out: list) -> None:
        """A restarted balance shard's unconfirmed tickets: void from now on (see Fence)."""
        shard = cmd.balance_shard
        tickets = tuple(sorted(t for t in cmd.tickets if type(t) is int and t // TICKET_STRIDE == shard))
        if tickets:
            self.fenced[shard] = max(self.fenced.get(shard, 0), tickets[-1])
        out.append(Voids(shard, tickets, cmd.timestamp))

    def unfunded(self, funded: FundedOrder) -> list[Event | RiskEvent]:
        """Turn a funded order away before it is applied (a retried client_order_id): its ticket is
        released whole; the Settlement that says so."""
        out: list[Event | RiskEvent] = []
        self.cash.ts = funded.order.timestamp
        self._unfund(funded)
        self.cash.flush(funded.order.timestamp, out)
        return out

    def _unfund(self, funded: FundedOrder | None) -> None:
        """Release a funded order's ticket whole: the order was refused before it held anything here."""
        if funded is not None and funded.ticket != REFUSED:
            order = funded.order
            self.cash.settle(order.owner, funded.ticket, 0, funded.reserved, order.order_id, True)

    def release(self, order_id: int, ts: int, out: list) -> bool:
        """Send a held order to the engine, re-checked like a new order except for the hold rule
        (the halt, the limits and the funds may have changed while it waited); False if not held."""
        held = self.held.pop(order_id, None)
        if held is None:
            return False
        record = self.ledger.orders[order_id]
        if not self.cash.local:  # funded: the reservation stays with its ticket at the balance shard
            return self._release_funded(record, copy_order(held, ts), out)
        self.ledger.close(record)  # its own lots and cash no longer count
        cmd = copy_order(held, ts)
        out.append(HeldOrderReleased(order_id, cmd.owner, cmd.symbol, ts))
        self._expire_due(self.engine.books[cmd.symbol], ts, out)
        verdict, reserve = self.checks.check_new(cmd, hold_rule=False)
        ticket = None if isinstance(verdict, RejectReason) else self.cash.reserve(cmd.owner, reserve)
        if ticket is None:
            reason = verdict if isinstance(verdict, RejectReason) else RejectReason.INSUFFICIENT_FUNDS
            out.append(OrderRejected(order_id, cmd.owner, cmd.symbol, reason, ts))
            return True
        if verdict is PASS:  # always, in fact: it was well formed when held, and the hold rule is off
            self.ledger.open(order_risk(cmd, reserve, ticket))
        self.settle(self.engine.apply(cmd), out)
        return True

    def _release_funded(self, record: OrderRisk, cmd: NewOrder, out: list) -> bool:
        """Release a held funded order: re-checked like a new order except for the hold rule and the
        cash (held at R1 all along); what it reserves goes on with it, or is released if refused."""
        ts, order_id = cmd.timestamp, cmd.order_id
        ticket, reserved = record.ticket, record.reserved
        self.ledger.close(record, False)  # its own lots no longer count
        out.append(HeldOrderReleased(order_id, cmd.owner, cmd.symbol, ts))
        self._expire_due(self.engine.books[cmd.symbol], ts, out)
        verdict, reserve = self.checks.check_new(cmd, False, False)
        if isinstance(verdict, RejectReason) or reserve > reserved:
            reason = verdict if isinstance(verdict, RejectReason) else RejectReason.INSUFFICIENT_FUNDS
            out.append(OrderRejected(order_id, cmd.owner, cmd.symbol, reason, ts))
            self.cash.settle(cmd.owner, ticket, 0, reserved, order_id, True)
            return True
        if verdict is PASS:
            self.ledger.open(order_risk(cmd, reserved, ticket))
        self.settle(self.engine.apply(cmd), out)
        if verdict is not PASS:  # malformed (never, in fact: it was checked when held)
            self.cash.settle(cmd.owner, ticket, 0, reserved, order_id, True)
        return True

    def reject_held(self, order_id: int, ts: int, out: list) -> bool:
        held = self.held.pop(order_id, None)
        if held is None:
            return False
        self.ledger.close(self.ledger.orders[order_id])
        out.append(OrderRejected(order_id, held.owner, held.symbol, RejectReason.HELD_REJECTED, ts))
        return True

    def _cancel(self, cmd: CancelOrder, out: list) -> None:
        held = self.held.get(cmd.order_id)
        if held is not None and held.owner == cmd.owner and held.symbol == cmd.symbol:
            del self.held[cmd.order_id]
            order = self.ledger.orders[cmd.order_id]
            qty = order.remaining
            self.ledger.close(order)
            out.append(OrderCanceled(cmd.order_id, cmd.owner, cmd.symbol, qty, CancelReason.USER,
                                     cmd.timestamp))
            return
        self.settle(self.engine.apply(cmd), out)  # cancels pass even when the symbol is halted

    def _amend(self, cmd: AmendOrder, out: list, funded: FundedAmend | None) -> None:
        """An amendment, checked for what it adds; `funded`: with extra cash its balance shard holds on
        the order's ticket already, counted in the order's reservation here and released again if the
        amendment is refused (an accepted one releases what it does not need)."""
        order_id, owner = cmd.order_id, cmd.owner
        record = self.ledger.orders.get(order_id)
        extra = 0
        if funded is not None:
            if record is None or record.owner != owner or record.ticket != funded.ticket or funded.extra < 0:
                if funded.extra > 0:  # nothing here to hold it: back to the owner at once
                    self.cash.settle(owner, funded.ticket, 0, funded.extra, order_id, False)
                record = None
            else:
                extra = funded.extra
                record.reserved += extra
        if not self._amend_checked(cmd, out) and extra and self.ledger.orders.get(order_id) is record:
            assert record is not None
            record.reserved -= extra  # refused: the extra goes back
            self.cash.settle(owner, record.ticket, 0, extra, order_id, False)

    def _amend_checked(self, cmd: AmendOrder, out: list) -> bool:
        """Check and apply an amendment; whether the engine amended the order."""
        order_id, owner, symbol, ts = cmd.order_id, cmd.owner, cmd.symbol, cmd.timestamp
        book = self.engine.books.get(symbol)
        if book is not None:
            self._expire_due(book, ts, out)
            held = self.held.get(order_id)
            if held is not None and held.owner == owner and held.symbol == symbol:
                out.append(AmendRejected(order_id, owner, symbol, RejectReason.NOT_AMENDABLE, ts))
                return False
            if self.is_halted(symbol):
                out.append(AmendRejected(order_id, owner, symbol, RejectReason.HALTED, ts))
                return False
            order = self.ledger.orders.get(order_id)
            if order is not None and order.owner == owner and order.symbol == symbol:
                reason = self.checks.check_amend(order, cmd)
                if reason is not None:
                    out.append(AmendRejected(order_id, owner, symbol, reason, ts))
                    return False
        events = self.engine.apply(cmd)
        self.settle(events, out)
        return any(type(event) is OrderAmended for event in events)

    def _expire_due(self, book: OrderBook, ts: int, out: list) -> None:
        """Expire the book's DAY/GTD orders due at `ts` before risk checks a command on its symbol.

        The engine does this first thing on every command for the symbol, before it matches; risk's
        checks run before the engine, so without it they would read a book and open orders that are
        gone by the time the order runs: a market buy reserving the cost of asks that expire under it
        (and overrunning its reservation when it walks to the dearer asks behind them), the cash and
        lots of expiring orders still counting against the new one. The events are the ones the
        engine would have emitted, in the same place; the engine then finds nothing left to expire.
        """
        expiries = book.expiries
        if expiries and expiries[0][0] <= ts:
            expired: list[Event] = []
            book.expire(ts, expired)
            self.settle(expired, out)

    # ---- settlement of the engine's events ----------------------------------------------------

    def settle(self, events: list[Event], out: list) -> None:
        """Pass the engine's events on and follow them in the ledger and the symbols."""
        out.extend(events)
        ledger = self.ledger
        for event in events:
            kind = type(event)
            if kind is BookDelta or kind is OrderAccepted:
                continue
            if kind is Trade:
                self._trade(cast(Trade, event))
            elif kind is OrderCanceled:
                canceled = cast(OrderCanceled, event)
                ledger.take_away(canceled.order_id, canceled.canceled_qty)
            elif kind is OrderExpired:
                expired = cast(OrderExpired, event)
                ledger.take_away(expired.order_id, expired.canceled_qty)
            elif kind is OrderReduced:
                reduced = cast(OrderReduced, event)
                ledger.take_away(reduced.order_id, reduced.reduced_qty)
            elif kind is OrderRejected:
                order = ledger.orders.get(cast(OrderRejected, event).order_id)
                if order is not None:  # the order just opened (risk refuses ids it already tracks)
                    ledger.close(order)
            elif kind is OrderAmended:
                amended = cast(OrderAmended, event)
                sym = self.symbols.get(amended.symbol)
                unit = lot_unit(amended.price, amended.stop_price)
                ledger.amended(amended, unit * (1 if sym is None else sym.cash_per_tick_lot))
            elif kind is StopTriggered:
                ledger.triggered(cast(StopTriggered, event).order_id)

    def _trade(self, trade: Trade) -> None:
        sym = self.symbol(trade.symbol)
        self.ledger.settle(trade, sym.cash_per_tick_lot)
        if sym.record_trade(trade.timestamp, trade.price, trade.qty) and trade.symbol not in self.tripped:
            self.tripped.append(trade.symbol)

    def symbol(self, symbol: str) -> SymbolRisk:
        sym = self.symbols.get(symbol)
        if sym is None:
            sym = self.symbols[symbol] = SymbolRisk(symbol)
        return sym

    # ---- the end of every command -------------------------------------------------------------

    def _finish(self, ts: int, out: list) -> None:
        ledger = self.ledger
        if not (self.cash.changed or ledger.traded or ledger.alerts or self.tripped):
            return
        if ledger.traded:
            for (owner, symbol), position in sorted(ledger.traded.items()):
                self.check_position(owner, symbol, position, ts)
        ledger.flush(ts, out)
        if ledger.alerts:
            out.extend(sorted(ledger.alerts, key=_alert_key))
            ledger.alerts = []
        if self.tripped:
            for symbol in sorted(self.tripped):
                sym = self.symbols[symbol]
                until = ts + (0 if sym.config is None else sym.config.circuit_halt_ns)
                sym.halt(CIRCUIT_BREAKER, until)
                out.append(InstrumentHalted(symbol, CIRCUIT_BREAKER, until, ts))
            self.tripped = []
            self.update_deadline()

    def check_position(self, owner: int, symbol: str, position: Position, ts: int) -> None:
        """A RiskAlert when a position is beyond its limit (fills cannot be refused, only reported)."""
        sym = self.symbols.get(symbol)
        config = None if sym is None else sym.config
        if config is None and not self.user_limits:
            return
        max_position = self.checks.limits(owner, symbol, config)[1]
        qty = position.qty
        if max_position is not None and (qty > max_position or -qty > max_position):
            self.ledger.alerts.append(RiskAlert(owner, symbol, AlertKind.POSITION_LIMIT,
                                                f"position {qty} beyond the limit {max_position}", ts))

    def _lift_halts(self, ts: int, out: list) -> None:
        for symbol in sorted(self.symbols):
            sym = self.symbols[symbol]
            if sym.halted and sym.halt_until is not None and sym.halt_until <= ts:
                sym.resume()
                out.append(InstrumentResumed(symbol, ts))
        self.update_deadline()

    def update_deadline(self) -> None:
        deadline: int | None = None
        for sym in self.symbols.values():
            until = sym.halt_until
            if until is not None and (deadline is None or until < deadline):
                deadline = until
        self.deadline = deadline

    # ---- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything risk decides by, as plain JSON-able values (the engine's state is separate)."""
        cash = self.cash
        stage: dict[str, Any]
        if isinstance(cash, LocalSettlement):
            stage = {"local_balances": [cash.matching_shard, cash.balances.state()]}
        elif isinstance(cash, CashStage):
            stage = {"balances": cash.balances.state()}
        else:
            stage = {"outbox": [cast(SettlementOutbox, cash).balance_shards, cash.matching_shard]}
        return {
            "ledger": self.ledger.state(),
            "fenced": [[shard, self.fenced[shard]] for shard in sorted(self.fenced)],
            **stage,
            "symbols": [self.symbols[symbol].state() for symbol in sorted(self.symbols)],
            "user_limits": [self.user_limits[key].state() for key in sorted(self.user_limits)],
            "held": [order_state(cmd) for cmd in self.held.values()],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], engine: MatchingEngine) -> RiskEngine:
        """Rebuild from `state()` (also after a JSON round trip) around the restored engine."""
        ledger, balances, outbox = state["ledger"], state.get("balances"), state.get("outbox")
        local = state.get("local_balances")
        if local is not None:
            risk = cls(engine, stage=LocalSettlement(BalanceShard.from_state(local[1]), local[0]))
        elif outbox is not None:
            risk = cls(engine, stage=SettlementOutbox(outbox[0], outbox[1]))
        else:
            if balances is None:  # written before the balance stage: the ledger held the cash
                ledger, balances = ledger_state_before_balances(ledger)
            risk = cls(engine, BalanceShard.from_state(balances))
        risk.ledger = Ledger.from_state(ledger, risk.cash)
        risk.fenced = {shard: ticket for shard, ticket in state.get("fenced", [])}
        for values in state["symbols"]:
            sym = SymbolRisk.from_state(values)
            risk.symbols[sym.symbol] = sym
        for values in state["user_limits"]:
            limit = UserLimit.from_state(values)
            risk.user_limits[(limit.owner, limit.symbol)] = limit
        for values in state["held"]:
            cmd = order_from_state(values)
            risk.held[cmd.order_id] = cmd
        risk.checks = PreTradeChecks(engine, risk.ledger, risk.symbols, risk.user_limits)
        risk.update_deadline()
        return risk

    def state_hash(self) -> str:
        """SHA-256 over risk's state and the engine's: equal states hash equal in any process."""
        return sha256((repr(self.state()) + self.engine.state_hash()).encode()).hexdigest()


def market_protection(book: OrderBook, sym: SymbolRisk | None) -> int:
    """`checks.protection` from what this shard knows: the best ask, else the last or reference price,
    and the instrument's price band."""
    reference = book.best_ask()
    if reference is None and sym is not None:
        reference = sym.reference_price()
    config = None if sym is None else sym.config
    return protection(reference, None if config is None else config.price_band_bps)


def order_risk(cmd: NewOrder, reserve: int, ticket: int) -> OrderRisk:
    """Risk's record of a new order that passed the checks with `reserve` cash units held (`ticket`)."""
    pooled = cmd.order_type is OrderType.MARKET
    lot_reserve = 0 if pooled or cmd.side is not BUY else reserve // cmd.qty
    return OrderRisk(cmd.order_id, cmd.owner, cmd.symbol, cmd.side, cmd.order_type, cmd.qty, cmd.qty,
                     cmd.price, cmd.stop_price, lot_reserve, reserve, pooled, ticket)


def ledger_state_before_balances(old: Sequence) -> tuple[list, dict[str, Any]]:
    """A ledger's state from before the balance stage ([default_cash, accounts with cash, orders]) as
    today's ledger state and a balance shard's: the cash moves to the balance shard, each order's
    reservation becomes a ticket there (numbered in order id order, confirmed)."""
    default_cash, accounts, orders = old
    tickets = {values[0]: number for number, values in enumerate(sorted(orders), start=1)}
    balances = {
        "shard": 0, "default_cash": default_cash, "next_ticket": len(tickets) + 1,
        "accounts": [[owner, cash, reserved] for owner, cash, reserved, _ in accounts],
        "reservations": [[tickets[v[0]], v[1], 0, v[10], True, v[0]] for v in sorted(orders)],
        "cursors": [],
    }
    ledger = [[[owner, positions] for owner, _, _, positions in accounts],
              [[*v[:12], tickets[v[0]]] for v in orders]]
    return ledger, balances


def _alert_key(alert: RiskAlert) -> tuple[int, str]:
    return alert.owner, alert.symbol
