"""R1 -> ME -> R2 across several balance and matching shards, in one process and one thread.

The shape the production processes take (docs/ARCHITECTURE.md, "Accounts across shards"), with the
transport replaced by calls: a new order goes to its owner's balance shard (owner modulo the number of
balance shards), which holds its cash under a ticket (`Reserve`, the amount from `checks.funding`) or
refuses it (then it goes on with the ticket `REFUSED`, for its matching shard to number and reject); the
funded order goes to its symbol's matching shard (`FundedOrder`, whose risk checks the
symbol and never the cash, and emits `Settlement` events); each Settlement goes back to its balance
shard as `Settle(matching shard, seq, lines)`, seq counting that matching shard's commands. An
amendment that raises a buy's reservation goes through R1 too (`Extend` on the order's ticket, then
`FundedAmend`). Cancels, other amendments, time and per-symbol admin commands go straight to the
matching shard; deposits and the default cash to the balance shards. A balance shard that restarts fences its
unconfirmed tickets on each matching shard (`recover`): the `Voids` answer, applied after every
confirmation sent before it, releases the reservations of orders that never arrived.

Pure and deterministic like its parts: the same commands give the same books in any process. The
tests drive it beside a single `RiskEngine` with all symbols and its balance shard in-process (one
ledger) and check that every account comes out the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matching.engine.commands import AmendOrder, Command, NewOrder
from matching.engine.engine import MatchingEngine
from matching.engine.events import AmendRejected, OrderRejected
from matching.engine.types import RejectReason
from risk.core.balances import (
    Adjust,
    AdjustRefused,
    BalanceShard,
    Extend,
    Extended,
    Reserve,
    Reserved,
    Settle,
    Void,
)
from risk.core.cash import SettlementOutbox
from risk.core.checks import funding
from risk.core.commands import (
    REFUSED,
    AdminCommand,
    Fence,
    FundedAmend,
    FundedOrder,
    SetDefaultCash,
    SetInstrumentRisk,
)
from risk.core.engine import RiskEngine
from risk.core.events import Settlement, Voids


class Pipeline:
    """Balance shards by user, matching shards by symbol, and the routes between them."""

    def __init__(self, symbols: Mapping[int, Sequence[str]], balance_shards: int) -> None:
        """`symbols`: each matching shard's symbols."""
        self.balances = {b: BalanceShard(b) for b in range(balance_shards)}
        self.matching = {m: RiskEngine(MatchingEngine(list(names)), stage=SettlementOutbox(balance_shards, m))
                         for m, names in symbols.items()}
        self.shard_of = {name: m for m, names in symbols.items() for name in names}
        self.seqs = dict.fromkeys(symbols, 0)  # commands each matching shard has applied
        self.cash_per_tick_lot: dict[str, int] = {}  # as configured (1 until then, as in risk)

    def balance_shard(self, owner: int) -> BalanceShard:
        return self.balances[owner % len(self.balances)]

    # ---- orders ------------------------------------------------------------------------------------

    def submit(self, cmd: NewOrder) -> list[Any]:
        """R1, then (funded) the symbol's matching shard, then R2: the matching shard's events, or
        the refusal of R1 as the order's rejection."""
        funded = self.reserve(cmd)
        if not isinstance(funded, FundedOrder):
            return funded
        return self.on_shard(self.shard_of[cmd.symbol], funded)

    def reserve(self, cmd: NewOrder) -> FundedOrder | list[Any]:
        """R1 alone: the funded order to send on, or the order's rejection."""
        ts, owner = cmd.timestamp, cmd.owner
        shard = self.shard_of.get(cmd.symbol)
        amount = funding(cmd, self.cash_per_tick_lot.get(cmd.symbol, 1)) if shard is not None else 0
        if shard is None or amount is None:  # an unknown symbol; an unprotected market buy
            reason = RejectReason.UNKNOWN_SYMBOL if shard is None else RejectReason.INVALID_PRICE
            return [OrderRejected(cmd.order_id, owner, cmd.symbol, reason, ts)]
        answer = self.balance_shard(owner).apply(Reserve(owner, amount, shard, ts))
        ticket = next((event.ticket for event in answer if type(event) is Reserved), None)
        if ticket is None:  # refused: on to the matching shard all the same, to be numbered and rejected
            return FundedOrder(cmd, REFUSED, 0)
        return FundedOrder(cmd, ticket, amount)

    def amend(self, cmd: AmendOrder, ticket: int, needed: int) -> list[Any]:
        """An amendment, through R1 if it raises a buy's reservation: `needed` is what the amended order
        will reserve (what the caller knows of it: the web tier from its projection), `ticket` the
        order's; the balance shard holds the difference more (refused: the amendment is, with
        insufficient_funds) and the matching shard gets it with the amendment (`FundedAmend`)."""
        shard = self.shard_of[cmd.symbol]
        balances = self.balance_shard(cmd.owner)
        held = balances.reservation(ticket)
        extra = 0 if held is None else max(0, needed - held.amount)
        if extra:
            answer = balances.apply(Extend(cmd.owner, ticket, extra, cmd.timestamp))
            if not any(type(event) is Extended for event in answer):
                return [AmendRejected(cmd.order_id, cmd.owner, cmd.symbol, RejectReason.INSUFFICIENT_FUNDS,
                                      cmd.timestamp)]
            return self.on_shard(shard, FundedAmend(cmd, ticket, extra))
        return self.on_shard(shard, cmd)

    def recover(self, balance_shard: int, ts: int) -> None:
        """What a restarted balance shard does: fence its unconfirmed tickets on each matching shard,
        whose answers void those that never arrived."""
        shard = self.balances[balance_shard]
        for matching_shard in self.matching:
            tickets = shard.unconfirmed(matching_shard)
            if tickets:
                self.on_shard(matching_shard, Fence(balance_shard, tickets, ts))

    def on_shard(self, shard: int, cmd: Command | FundedOrder | FundedAmend | Fence | AdminCommand
                 ) -> list[Any]:
        """One command through a matching shard, and its settlements to the balance shards."""
        if isinstance(cmd, SetInstrumentRisk):
            self.cash_per_tick_lot[cmd.config.symbol] = cmd.config.cash_per_tick_lot
        events = self.matching[shard].apply(cmd)
        seq = self.seqs[shard] = self.seqs[shard] + 1
        for event in events:
            if type(event) is Settlement:
                self.balances[event.balance_shard].apply(Settle(shard, seq, event.lines, event.timestamp))
            elif type(event) is Voids:
                self.balances[event.balance_shard].apply(Void(shard, event.tickets, event.timestamp))
        return events

    def to_symbol(self, symbol: str, cmd: Command | FundedOrder | AdminCommand) -> list[Any]:
        return self.on_shard(self.shard_of[symbol], cmd)

    # ---- cash --------------------------------------------------------------------------------------

    def set_default_cash(self, amount: int, ts: int) -> None:
        for shard in self.balances.values():
            shard.apply(SetDefaultCash(amount, ts))

    def adjust(self, owner: int, amount: int, ts: int) -> bool:
        """A deposit or withdrawal at the owner's balance shard; False if refused."""
        events = self.balance_shard(owner).apply(Adjust(owner, amount, "", ts))
        return not any(type(event) is AdjustRefused for event in events)

    def account(self, owner: int) -> tuple[int, int] | None:
        """(cash, reserved) at the owner's balance shard; None before it opened."""
        return self.balance_shard(owner).account(owner)
