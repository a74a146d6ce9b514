"""The balance stage as a matching shard's risk sees it: R1 (reserve) and R2 (settle) of the orders it
matches, against a `BalanceShard` (balances.py) in this process.

The matching shard's risk (`RiskEngine`, `Ledger`) keeps positions and each order's reservation
(what it holds, how a fill or a cancel releases it), and no cash: every change of money is a command
to the balance shard, made at the moment it happens, so a check later in the same command reads the
cash as it is then. Each settlement line is its own `Settle` of the next sequence number (the shard's
cursor), so the balance shard's books are always in step.

Here the balance shard is local: the embedded default (one balance shard, one matching shard, one
thread) and, until balance shards run as processes of their own, each production matching shard.
What it answers becomes the risk core's own vocabulary: a refused reservation the order's
`insufficient_funds`, and after every command an `AccountUpdate` for each account it changed or
opened, with final values (the balance shard's own events are not passed on).
"""

from __future__ import annotations

from typing import Final

from risk.core.balances import (
    Adjust,
    AdjustRefused,
    BalanceRefusal,
    BalanceShard,
    Extend,
    Extended,
    Open,
    Reserve,
    Reserved,
    Settle,
    SettleLine,
)
from risk.core.commands import SetDefaultCash
from risk.core.events import AccountUpdate

_new: Final = tuple.__new__
ACCOUNT_UPDATE: Final = AccountUpdate


class CashStage:
    """R1 and R2 for one matching shard, on a local balance shard."""

    __slots__ = ("balances", "matching_shard", "touched", "ts")

    def __init__(self, balances: BalanceShard, matching_shard: int = 0) -> None:
        self.balances = balances
        self.matching_shard = matching_shard
        self.ts = 0  # the current command's time: the balance commands carry it
        # What the current command changed: owner -> (cash, reserved) before it (None: opened by it).
        self.touched: dict[int, tuple[int, int] | None] = {}

    # ---- reads --------------------------------------------------------------------------------

    @property
    def default_cash(self) -> int:
        return self.balances.default_cash

    def available(self, owner: int) -> int:
        return self.balances.available(owner)

    def account(self, owner: int) -> tuple[int, int] | None:
        """(cash, reserved), None before the account opened."""
        return self.balances.account(owner)

    # ---- R1 -----------------------------------------------------------------------------------

    def open(self, owner: int) -> None:
        """Open the owner's account with the default cash, if it is not open yet."""
        if self.balances.accounts.get(owner) is None:
            self._touch(owner)
            self.balances.apply(Open(owner, self.ts))

    def reserve(self, owner: int, amount: int) -> int | None:
        """Hold `amount` for a new order: its ticket, or None (not enough available cash)."""
        self._touch(owner)
        for event in self.balances.apply(Reserve(owner, amount, self.matching_shard, self.ts)):
            if type(event) is Reserved:
                return event.ticket
        return None

    def extend(self, owner: int, ticket: int, amount: int) -> bool:
        """Hold `amount` more under an order's ticket (an amendment); False if refused."""
        self._touch(owner)
        events = self.balances.apply(Extend(owner, ticket, amount, self.ts))
        return any(type(event) is Extended for event in events)

    # ---- R2 -----------------------------------------------------------------------------------

    def settle(self, owner: int, ticket: int | None, cash: int, release: int, order_id: int,
               done: bool) -> None:
        """One settlement line, applied now (its own sequence number)."""
        self._touch(owner)
        seq = self.balances.cursor(self.matching_shard) + 1
        line = SettleLine(owner, ticket, cash, release, order_id, done)
        self.balances.apply(Settle(self.matching_shard, seq, (line,), self.ts))

    # ---- admin --------------------------------------------------------------------------------

    def adjust(self, owner: int, amount: int) -> BalanceRefusal | None:
        """A deposit (> 0) or withdrawal (< 0); the refusal, if any. 0 changes nothing (and opens
        the account, as any admin adjustment does)."""
        self._touch(owner)
        if amount == 0:
            self.open(owner)
            return None
        for event in self.balances.apply(Adjust(owner, amount, "", self.ts)):
            if type(event) is AdjustRefused:
                return event.reason
        return None

    def set_default_cash(self, amount: int) -> None:
        self.balances.apply(SetDefaultCash(amount, self.ts))

    # ---- one command's changes ----------------------------------------------------------------

    def _touch(self, owner: int) -> None:
        if owner not in self.touched:
            self.touched[owner] = self.balances.account(owner)

    def flush(self, ts: int, out: list) -> None:
        """AccountUpdate for every account the command changed or opened, by owner, final values."""
        touched = self.touched
        if not touched:
            return
        for owner in sorted(touched):
            now = self.balances.account(owner)
            if now is not None and now != touched[owner]:
                out.append(_new(ACCOUNT_UPDATE, (owner, now[0], now[1], ts)))
        self.touched = {}
