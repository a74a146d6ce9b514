"""One balance shard: the cash of the users it owns, reserved before matching and settled after.

Symbols are sharded across matching shards; a user's cash lives in one balance shard (owner %
BALANCE_SHARDS), so one account backs orders on every symbol. After exchange-core's pipeline, an
order goes:

- R1, here: `Reserve` holds the order's cash (0 for a sell) under a *ticket*, a number this shard
  gives out in increasing order from shard x TICKET_STRIDE + 1 (so a ticket names its shard). The
  order travels on carrying its ticket.
- ME, its symbol's matching shard: symbol checks, matching, positions. Every sequence number it
  logs yields settlement lines for the parties of what happened (fills, cancels, rejections).
- R2, here again: `Settle` applies one matching-shard sequence number's lines for this shard's
  owners: cash moves, the ticket's reservation shrinks (`release`) or ends (`done`).

Idempotence: per matching shard a cursor keeps the highest sequence number settled; a batch at or
below it is skipped (`SettleSkipped`), so redelivery after a crash of either side never applies
twice. Batches must therefore arrive in sequence order per matching shard (gaps are normal: sequence
numbers without lines for this shard are never sent); a late lower batch is skipped, not applied.

Recovery: a reservation is unconfirmed until a line from its matching shard names its ticket. A
crash between R1 and ME can leave reservations the matching shard never received: the recovery asks
it about `unconfirmed(matching_shard)`; it answers with the tickets it never saw (and must refuse them
from then on), and `Void` releases those. A confirmed ticket is never voided: its matching shard owns
its end.

Overruns: trades are facts, a settlement is never refused. A line that spends more cash than it
frees from its ticket (a market or stop buy beyond its budget, a line whose ticket is unknown) still
applies; the owner's available cash drops by the excess, maybe below zero, and `OverrunAlert` says so.

Every command's effect depends only on the state and the command (no clock: time is the command's
`timestamp`), so replaying this shard's log rebuilds its state; `state()` / `from_state()` are its
snapshots. A refused command changes nothing. Integers only, in cash units (see accounts.py).

`Extend` (an amendment raising a buy's reservation) and `Open` (show an account before it holds
anything) complete R1.

Events of one command, in order: its answer (`Reserved` / `ReserveRefused`, `Extended` /
`ExtendRefused`, `Adjusted` /
`AdjustRefused`, `AdminApplied` / `AdminRejected` for `SetDefaultCash`, `SettleSkipped`,
`ReservationVoided` by ticket), then `BalanceUpdate` for every account it changed or opened, by owner,
with final values, then `OverrunAlert`s by owner (in line order for one owner). NamedTuples compare
as tuples: `Reserved` and `ReservationVoided` share a layout, so compare event types too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from typing import Any, Final, NamedTuple

from risk.core.commands import SetDefaultCash
from risk.core.events import AdminApplied, AdminRejected
from risk.core.types import AdminKind, AdminRejectReason


class BalanceRefusal(StrEnum):
    """Why a Reserve or an Adjust changed nothing (the strings of the risk core's own reasons)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"  # a reservation above the available cash
    BELOW_RESERVED = "below_reserved"  # a withdrawal would leave less cash than is reserved
    INVALID_VALUE = "invalid_value"  # a negative, zero or non-integer amount, a non-integer id


INSUFFICIENT: Final = BalanceRefusal.INSUFFICIENT_FUNDS
# Tickets are numbered from shard x TICKET_STRIDE + 1, so a ticket names its balance shard (as an order
# id names its matching shard: matching.worker.matcher.ORDER_ID_STRIDE).
TICKET_STRIDE: Final = 10**12
INVALID: Final = BalanceRefusal.INVALID_VALUE


# ---- commands ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Reserve:
    """R1: hold `amount` cash units of `owner` for an order on its way to `matching_shard`. A sell
    reserves 0 and still gets a ticket, so its settlements are tracked like a buy's. Accepted if
    amount is 0 (a sell is never blocked, even by an overdrawn account) or at most the available cash."""

    owner: int
    amount: int
    matching_shard: int
    timestamp: int = 0


@dataclass(slots=True)
class Extend:
    """R1 for an amendment that raises a buy's reservation: hold `amount` (> 0) more under the owner's
    live `ticket`. Refused like a Reserve (above the available cash), or if the ticket is not the
    owner's live one."""

    owner: int
    ticket: int
    amount: int
    timestamp: int = 0


@dataclass(slots=True)
class Open:
    """Open the owner's account with the default cash if it is not open (a first order, even one that
    the matching shard refuses, shows the account); nothing if it is."""

    owner: int
    timestamp: int = 0


@dataclass(slots=True)
class SettleLine:
    """What one event of the matching shard means for one owner of this shard.

    `cash`: the cash delta (a buyer's cost < 0, a seller's proceeds > 0). `release`: what this line
    takes off the ticket's reservation (a fill's share of it, clamped to what it holds); a fill's
    release belongs on the fill's own line, since a line spending more than it frees raises an
    OverrunAlert. `order_id`: the id the matching shard gave the order (any line naming the ticket
    confirms it). `done`: the order ended, whatever the ticket still holds is released and the
    ticket forgotten. `ticket` None: an order this shard holds nothing for (cash only).
    """

    owner: int
    ticket: int | None
    cash: int
    release: int
    order_id: int | None = None
    done: bool = False


@dataclass(slots=True)
class Settle:
    """R2: the lines of one matching-shard sequence number for this shard's owners (the router drops
    the others), applied once: skipped if `seq` is at or below the matching shard's cursor."""

    matching_shard: int
    seq: int
    lines: Sequence[SettleLine]
    timestamp: int = 0


@dataclass(slots=True)
class Adjust:
    """Deposit (amount > 0) or withdraw (amount < 0) cash units; a withdrawal may not leave less cash
    than is reserved, and 0 is refused as malformed. `ref` (the caller's reference, e.g. a transfer
    id) is echoed in the answer."""

    owner: int
    amount: int
    ref: str = ""
    timestamp: int = 0


@dataclass(slots=True)
class Void:
    """The matching shard declares these tickets never seen (found on recovery): each one sent there
    and still unconfirmed is released and forgotten; confirmed, foreign or unknown ones are left."""

    matching_shard: int
    tickets: Sequence[int]
    timestamp: int = 0


# `SetDefaultCash` is the risk core's own command (the cash an account opens with from now on; existing
# accounts keep theirs), answered as RiskEngine answers it: AdminApplied / AdminRejected.
BalanceCommand = Reserve | Extend | Open | Settle | Adjust | Void | SetDefaultCash


# ---- events -----------------------------------------------------------------------------------


class Reserved(NamedTuple):
    ticket: int
    owner: int
    amount: int
    matching_shard: int
    timestamp: int


class Extended(NamedTuple):
    ticket: int
    owner: int
    amount: int  # added
    timestamp: int


class ExtendRefused(NamedTuple):
    ticket: int
    owner: int
    amount: int
    reason: BalanceRefusal
    available: int
    timestamp: int


class ReserveRefused(NamedTuple):
    """No ticket was given; `available` is the owner's available cash (the default cash of an
    account not opened yet)."""

    owner: int
    amount: int
    matching_shard: int
    reason: BalanceRefusal
    available: int
    timestamp: int


class Adjusted(NamedTuple):
    owner: int
    amount: int
    ref: str
    timestamp: int


class AdjustRefused(NamedTuple):
    owner: int
    amount: int
    ref: str
    reason: BalanceRefusal
    available: int
    timestamp: int


class SettleSkipped(NamedTuple):
    """A batch at or below the matching shard's cursor (a redelivery): nothing applied."""

    matching_shard: int
    seq: int
    cursor: int
    timestamp: int


class ReservationVoided(NamedTuple):
    """A Void released `amount` cash units held by `ticket` and forgot it."""

    ticket: int
    owner: int
    amount: int
    matching_shard: int
    timestamp: int


class BalanceUpdate(NamedTuple):
    """An account after a command that changed or opened it (available = cash - reserved)."""

    owner: int
    cash: int
    reserved: int
    timestamp: int


class OverrunAlert(NamedTuple):
    """A settlement line spent `excess` cash units more than it freed from its ticket: the owner's
    available cash dropped by that much (the trade stands)."""

    owner: int
    ticket: int | None
    order_id: int | None
    excess: int
    timestamp: int


BalanceEvent = (
    Reserved
    | ReserveRefused
    | Extended
    | ExtendRefused
    | Adjusted
    | AdjustRefused
    | SettleSkipped
    | ReservationVoided
    | BalanceUpdate
    | OverrunAlert
    | AdminApplied
    | AdminRejected
)


# ---- the books --------------------------------------------------------------------------------


@dataclass(slots=True)
class Balance:
    owner: int
    cash: int
    reserved: int  # the sum of the owner's reservations


@dataclass(slots=True)
class Reservation:
    ticket: int
    owner: int
    matching_shard: int
    amount: int  # still reserved
    confirmed: bool  # a line from the matching shard named the ticket: it has the order
    order_id: int | None

    def copy(self) -> Reservation:
        return Reservation(self.ticket, self.owner, self.matching_shard, self.amount, self.confirmed,
                           self.order_id)


class BalanceShard:
    """One balance shard's accounts, reservations and settlement cursors; changed only by `apply`."""

    __slots__ = ("accounts", "alerts", "cursors", "default_cash", "next_ticket", "reservations", "shard",
                 "touched")

    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.default_cash = 0
        self.next_ticket = shard * TICKET_STRIDE + 1
        self.accounts: dict[int, Balance] = {}
        self.reservations: dict[int, Reservation] = {}  # by ticket
        self.cursors: dict[int, int] = {}  # matching shard -> highest sequence number settled
        # What the current command changed: owner -> (cash, reserved) before it (None: opened by it),
        # and the overrun alerts it found.
        self.touched: dict[int, tuple[int, int] | None] = {}
        self.alerts: list[OverrunAlert] = []

    def apply(self, cmd: BalanceCommand) -> list[BalanceEvent]:
        """Apply one command; its events in order (see the module)."""
        out: list[BalanceEvent] = []
        if isinstance(cmd, Reserve):
            self._reserve(cmd, out)
        elif isinstance(cmd, Extend):
            self._extend(cmd, out)
        elif isinstance(cmd, Open):
            if type(cmd.owner) is int:
                self.open_account(cmd.owner)
        elif isinstance(cmd, Settle):
            self._settle(cmd, out)
        elif isinstance(cmd, Adjust):
            self._adjust(cmd, out)
        elif isinstance(cmd, Void):
            self._void(cmd, out)
        elif isinstance(cmd, SetDefaultCash):
            self._set_default_cash(cmd, out)
        else:
            raise TypeError(f"not a balance shard command: {type(cmd).__name__}")
        if self.touched:
            self._flush(cmd.timestamp, out)
        return out

    # ---- reads --------------------------------------------------------------------------------

    def account(self, owner: int) -> tuple[int, int] | None:
        """(cash, reserved) of the owner's account; None before it opened."""
        balance = self.accounts.get(owner)
        return None if balance is None else (balance.cash, balance.reserved)

    def available(self, owner: int) -> int:
        """What a Reserve of the owner may take now (the default cash if the account is not open)."""
        balance = self.accounts.get(owner)
        return self.default_cash if balance is None else balance.cash - balance.reserved

    def reservation(self, ticket: int) -> Reservation | None:
        """A copy of a live reservation; None once released by `done` or voided (or never given)."""
        reservation = self.reservations.get(ticket)
        return None if reservation is None else reservation.copy()

    def unconfirmed(self, matching_shard: int) -> list[int]:
        """The tickets sent to the matching shard that it has not confirmed yet, in order: exactly
        what a recovery asks it about."""
        return sorted(ticket for ticket, r in self.reservations.items()
                      if r.matching_shard == matching_shard and not r.confirmed)

    def cursor(self, matching_shard: int) -> int:
        """The highest sequence number of the matching shard settled here (0: none)."""
        return self.cursors.get(matching_shard, 0)

    def total_cash(self) -> int:
        return sum(balance.cash for balance in self.accounts.values())

    def total_reserved(self) -> int:
        return sum(balance.reserved for balance in self.accounts.values())

    def check(self) -> list[str]:
        """What is wrong with the books (empty if nothing): each account's reserved must be the sum of
        its reservations, no amount negative, every ticket below next_ticket with an open account."""
        errors: list[str] = []
        held: dict[int, int] = {}
        for ticket, r in self.reservations.items():
            if r.ticket != ticket or not self.shard * TICKET_STRIDE < ticket < self.next_ticket:
                errors.append(f"ticket {ticket}: numbered {r.ticket}, next_ticket {self.next_ticket}")
            if r.amount < 0:
                errors.append(f"ticket {ticket}: reserves {r.amount}")
            if r.owner not in self.accounts:
                errors.append(f"ticket {ticket}: owner {r.owner} has no account")
            held[r.owner] = held.get(r.owner, 0) + r.amount
        for owner, balance in self.accounts.items():
            tickets_hold = held.get(owner, 0)
            if balance.owner != owner or balance.reserved != tickets_hold or balance.reserved < 0:
                errors.append(f"owner {owner}: reserved {balance.reserved}, tickets hold {tickets_hold}")
        if self.touched or self.alerts:
            errors.append("changes of a command left unflushed")
        return errors

    # ---- commands -----------------------------------------------------------------------------

    def _reserve(self, cmd: Reserve, out: list) -> None:
        owner, amount, matching_shard, ts = cmd.owner, cmd.amount, cmd.matching_shard, cmd.timestamp
        if (type(owner) is not int or type(amount) is not int or amount < 0
                or type(matching_shard) is not int or matching_shard < 0):
            available = self.available(owner) if type(owner) is int else 0
            out.append(ReserveRefused(owner, amount, matching_shard, INVALID, available, ts))
            return
        ticket = self.hold(owner, amount, matching_shard)
        if not ticket:
            out.append(ReserveRefused(owner, amount, matching_shard, INSUFFICIENT, self.available(owner), ts))
            return
        out.append(Reserved(ticket, owner, amount, matching_shard, ts))

    # ---- the commands' effects, for valid values (a local stage calls these directly: cash.py) ---

    def hold(self, owner: int, amount: int, matching_shard: int) -> int:
        """Reserve's effect: the new ticket, or 0 (more than the available cash; nothing changed)."""
        balance = self.accounts.get(owner)
        available = self.default_cash if balance is None else balance.cash - balance.reserved
        if amount and amount > available:
            return 0
        if balance is None:
            balance = self._open(owner)
        if amount:
            self._touch(balance)
            balance.reserved += amount
        ticket = self.next_ticket
        self.next_ticket = ticket + 1
        self.reservations[ticket] = Reservation(ticket, owner, matching_shard, amount, False, None)
        return ticket

    def hold_more(self, owner: int, ticket: int, amount: int) -> BalanceRefusal | None:
        """Extend's effect (amount > 0): None, or why nothing changed."""
        reservation = self.reservations.get(ticket)
        if reservation is None or reservation.owner != owner:
            return INVALID
        balance = self.accounts[owner]
        if amount > balance.cash - balance.reserved:
            return INSUFFICIENT
        self._touch(balance)
        balance.reserved += amount
        reservation.amount += amount
        return None

    def open_account(self, owner: int) -> None:
        """Open's effect: the account with the default cash, if it is not open."""
        if owner not in self.accounts:
            self._open(owner)

    def settle_next(self, matching_shard: int, owner: int, ticket: int | None, cash: int, release: int,
                    order_id: int | None, done: bool, ts: int) -> None:
        """One line (SettleLine's fields) as the matching shard's next sequence number (a local stage
        settles each line as it happens): the cursor moves on by one."""
        cursors = self.cursors
        cursors[matching_shard] = cursors.get(matching_shard, 0) + 1
        self._settle_fields(matching_shard, owner, ticket, cash, release, order_id, done, ts)

    def deposit(self, owner: int, amount: int) -> BalanceRefusal | None:
        """Adjust's effect (amount != 0): None, or why nothing changed (a withdrawal below reserved)."""
        balance = self.accounts.get(owner)
        cash = self.default_cash if balance is None else balance.cash
        reserved = 0 if balance is None else balance.reserved
        if amount < 0 and cash + amount < reserved:
            return BalanceRefusal.BELOW_RESERVED
        if balance is None:
            balance = self._open(owner)
        self._touch(balance)
        balance.cash += amount
        return None

    def forget_changes(self) -> None:
        """Drop the current command's bookkeeping (touched accounts, alerts) without emitting it: for a
        local stage that reports the accounts itself."""
        if self.touched:
            self.touched = {}
        if self.alerts:
            self.alerts = []

    def _extend(self, cmd: Extend, out: list) -> None:
        owner, ticket, amount, ts = cmd.owner, cmd.ticket, cmd.amount, cmd.timestamp
        valid = type(owner) is int and type(ticket) is int and type(amount) is int and amount > 0
        refused = self.hold_more(owner, ticket, amount) if valid else INVALID
        if refused is not None:
            available = self.available(owner) if type(owner) is int else 0
            out.append(ExtendRefused(ticket, owner, amount, refused, available, ts))
            return
        out.append(Extended(ticket, owner, amount, ts))

    def _settle(self, cmd: Settle, out: list) -> None:
        matching_shard, seq, ts = cmd.matching_shard, cmd.seq, cmd.timestamp
        cursor = self.cursors.get(matching_shard, 0)
        if seq <= cursor:
            out.append(SettleSkipped(matching_shard, seq, cursor, ts))
            return
        self.cursors[matching_shard] = seq
        for line in cmd.lines:
            self._settle_line(matching_shard, line, ts)

    def _settle_line(self, matching_shard: int, line: SettleLine, ts: int) -> None:
        self._settle_fields(matching_shard, line.owner, line.ticket, line.cash, line.release, line.order_id,
                            line.done, ts)

    def _settle_fields(self, matching_shard: int, owner: int, ticket: int | None, cash: int, release: int,
                       order_id: int | None, done: bool, ts: int) -> None:
        balance = self.accounts.get(owner)
        if balance is None:
            balance = self._open(owner)
        self._touch(balance)
        freed = 0
        reservation = None if ticket is None else self.reservations.get(ticket)
        # A ticket of another owner or another matching shard is a routing error: its cash still moves
        # (trades are facts), but nobody else's reservation is touched.
        if (reservation is not None and reservation.owner == owner
                and reservation.matching_shard == matching_shard):
            reservation.confirmed = True
            if order_id is None:
                order_id = reservation.order_id
            else:
                reservation.order_id = order_id
            held = reservation.amount
            freed = held if done or release >= held else (release if release > 0 else 0)
            reservation.amount = held - freed
            balance.reserved -= freed
            if done:
                del self.reservations[reservation.ticket]
        balance.cash += cash
        excess = -cash - freed
        if excess > 0:
            self.alerts.append(OverrunAlert(owner, ticket, order_id, excess, ts))

    def _adjust(self, cmd: Adjust, out: list) -> None:
        owner, amount, ref, ts = cmd.owner, cmd.amount, cmd.ref, cmd.timestamp
        if type(owner) is not int or type(amount) is not int or amount == 0:
            available = self.available(owner) if type(owner) is int else 0
            out.append(AdjustRefused(owner, amount, ref, INVALID, available, ts))
            return
        available = self.available(owner)
        refused = self.deposit(owner, amount)
        if refused is not None:
            out.append(AdjustRefused(owner, amount, ref, refused, available, ts))
            return
        out.append(Adjusted(owner, amount, ref, ts))

    def _void(self, cmd: Void, out: list) -> None:
        matching_shard, ts = cmd.matching_shard, cmd.timestamp
        for ticket in sorted(set(cmd.tickets)):
            reservation = self.reservations.get(ticket)
            if reservation is None or reservation.confirmed or reservation.matching_shard != matching_shard:
                continue
            del self.reservations[ticket]
            if reservation.amount:
                balance = self.accounts[reservation.owner]
                self._touch(balance)
                balance.reserved -= reservation.amount
            out.append(ReservationVoided(ticket, reservation.owner, reservation.amount, matching_shard, ts))

    def _set_default_cash(self, cmd: SetDefaultCash, out: list) -> None:
        amount, ts = cmd.amount, cmd.timestamp
        if type(amount) is not int or amount < 0:
            out.append(AdminRejected(AdminKind.SET_DEFAULT_CASH, "", AdminRejectReason.INVALID_VALUE,
                                     "amount", ts))
            return
        self.default_cash = amount
        out.append(AdminApplied(AdminKind.SET_DEFAULT_CASH, "", ts))

    # ---- one command's changes ----------------------------------------------------------------

    def _open(self, owner: int) -> Balance:
        balance = self.accounts[owner] = Balance(owner, self.default_cash, 0)
        self.touched[owner] = None
        return balance

    def _touch(self, balance: Balance) -> None:
        if balance.owner not in self.touched:
            self.touched[balance.owner] = (balance.cash, balance.reserved)

    def _flush(self, ts: int, out: list) -> None:
        """BalanceUpdate for every account the command changed or opened, by owner, with final values;
        then the overrun alerts, by owner."""
        touched, accounts = self.touched, self.accounts
        for owner in sorted(touched):
            balance = accounts[owner]
            before = touched[owner]
            if before is None or before[0] != balance.cash or before[1] != balance.reserved:
                out.append(BalanceUpdate(owner, balance.cash, balance.reserved, ts))
        self.touched = {}
        if self.alerts:
            out.extend(sorted(self.alerts, key=_alert_owner))  # stable: line order within an owner
            self.alerts = []

    # ---- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the shard decides by, as plain JSON-able values, sorted."""
        accounts = [self.accounts[owner] for owner in sorted(self.accounts)]
        reservations = [self.reservations[ticket] for ticket in sorted(self.reservations)]
        return {
            "shard": self.shard,
            "default_cash": self.default_cash,
            "next_ticket": self.next_ticket,
            "accounts": [[b.owner, b.cash, b.reserved] for b in accounts],
            "reservations": [[r.ticket, r.owner, r.matching_shard, r.amount, r.confirmed, r.order_id]
                             for r in reservations],
            "cursors": [[ms, self.cursors[ms]] for ms in sorted(self.cursors)],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BalanceShard:
        """Rebuild from `state()` (also after a JSON round trip)."""
        shard = cls(state["shard"])
        shard.default_cash = state["default_cash"]
        shard.next_ticket = state["next_ticket"]
        for owner, cash, reserved in state["accounts"]:
            shard.accounts[owner] = Balance(owner, cash, reserved)
        for ticket, owner, matching_shard, amount, confirmed, order_id in state["reservations"]:
            shard.reservations[ticket] = Reservation(ticket, owner, matching_shard, amount, confirmed,
                                                     order_id)
        for matching_shard, seq in state["cursors"]:
            shard.cursors[matching_shard] = seq
        return shard

    def state_hash(self) -> str:
        """SHA-256 of the state: equal states hash equal in any process."""
        return sha256(repr(self.state()).encode()).hexdigest()


def _alert_owner(alert: OverrunAlert) -> int:
    return alert.owner
