"""The balance stage as a matching shard's risk sees it: R1 (reserve) and R2 (settle) of the orders it
matches, against a `BalanceShard` (balances.py) in this process.

The matching shard's risk (`RiskEngine`, `Ledger`) keeps positions and each order's reservation
(what it holds, how a fill or a cancel releases it), and no cash: every change of money is a command
to the balance shard, made at the moment it happens, so a check later in the same command reads the
cash as it is then. Each settlement line is its own `Settle` of the next sequence number (the shard's
cursor), so the balance shard's books are always in step.

Here the balance shard is local: the embedded default (one balance shard, one matching shard, one
thread) and, until balance shards run as processes of their own, each production matching shard.
It calls the balance shard's effect methods (`hold`, `settle_next`, ...: what its commands do, without
building a command and its events for each; `BalanceShard.apply` runs the same methods), and what they
answer becomes the risk core's own vocabulary: a refused reservation the order's `insufficient_funds`,
and after every command an `AccountUpdate` for each account it changed or opened, with final values.
"""

from __future__ import annotations

from typing import Final

from risk.core.balances import TICKET_STRIDE, BalanceRefusal, BalanceShard, SettleLine
from risk.core.events import AccountUpdate, Settlement

_new: Final = tuple.__new__
ACCOUNT_UPDATE: Final = AccountUpdate


class BalanceStage:
    """What the matching shard's risk asks of the balance stage (both kinds below)."""

    __slots__ = ("matching_shard", "ts")

    def __init__(self, matching_shard: int) -> None:
        self.matching_shard = matching_shard
        self.ts = 0  # the current command's time: the balance commands carry it

    @property
    def local(self) -> bool:
        """Whether R1 can happen here (a reservation, an extension): the balance shard is in-process."""
        return False

    @property
    def default_cash(self) -> int:
        return 0

    @property
    def changed(self) -> bool:
        """Whether the current command has something to report so far."""
        return False

    def available(self, owner: int) -> int:
        return 0

    def account(self, owner: int) -> tuple[int, int] | None:
        return None

    def open(self, owner: int) -> None:
        return None

    def reserve(self, owner: int, amount: int) -> int | None:
        return None

    def extend(self, owner: int, ticket: int, amount: int) -> bool:
        return False

    def settle(self, owner: int, ticket: int | None, cash: int, release: int, order_id: int,
               done: bool) -> None:
        raise NotImplementedError

    def confirm(self, owner: int, ticket: int, order_id: int) -> None:
        """A funded order arrived and holds its ticket here (nothing to say to a local balance shard)."""
        return None

    def adjust(self, owner: int, amount: int) -> BalanceRefusal | None:
        return BalanceRefusal.INVALID_VALUE

    def set_default_cash(self, amount: int) -> None:
        return None

    def flush(self, ts: int, out: list) -> None:
        return None


class CashStage(BalanceStage):
    """R1 and R2 for one matching shard, on a local balance shard."""

    __slots__ = ("balances",)

    def __init__(self, balances: BalanceShard, matching_shard: int = 0) -> None:
        super().__init__(matching_shard)
        self.balances = balances

    @property
    def local(self) -> bool:
        return True

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
        self.balances.open_account(owner)

    def reserve(self, owner: int, amount: int) -> int | None:
        """Hold `amount` for a new order: its ticket, or None (not enough available cash)."""
        return self.balances.hold(owner, amount, self.matching_shard) or None

    def extend(self, owner: int, ticket: int, amount: int) -> bool:
        """Hold `amount` more under an order's ticket (an amendment); False if refused."""
        return self.balances.hold_more(owner, ticket, amount) is None

    # ---- R2 -----------------------------------------------------------------------------------

    def settle(self, owner: int, ticket: int | None, cash: int, release: int, order_id: int,
               done: bool) -> None:
        """One settlement line, applied now as the matching shard's next sequence number."""
        self.balances.settle_next(self.matching_shard, owner, ticket, cash, release, order_id, done, self.ts)

    # ---- admin --------------------------------------------------------------------------------

    def adjust(self, owner: int, amount: int) -> BalanceRefusal | None:
        """A deposit (> 0) or withdrawal (< 0); the refusal, if any. 0 changes nothing (and opens
        the account, as any admin adjustment does)."""
        if amount == 0:
            self.open(owner)
            return None
        return self.balances.deposit(owner, amount)

    def set_default_cash(self, amount: int) -> None:
        self.balances.default_cash = amount  # validated by the caller (risk's admin)

    # ---- one command's changes ----------------------------------------------------------------

    def flush(self, ts: int, out: list) -> None:
        """AccountUpdate for every account the command changed or opened, by owner, final values (the
        balance shard keeps what changed; its own events are not passed on, see the module)."""
        balances = self.balances
        touched = balances.touched
        if not touched:
            return
        accounts = balances.accounts
        for owner in sorted(touched):
            now = accounts[owner]
            before = touched[owner]
            if before is None or before[0] != now.cash or before[1] != now.reserved:
                out.append(_new(ACCOUNT_UPDATE, (owner, now.cash, now.reserved, ts)))
        balances.forget_changes()

    @property
    def changed(self) -> bool:
        """Whether the current command has changed or opened an account so far."""
        return bool(self.balances.touched)


class SettlementOutbox(BalanceStage):
    """The balance stage when balance shards run elsewhere: the orders come funded (R1 done: a
    `FundedOrder` with its ticket), and each command's settlement lines leave as one `Settlement`
    event per balance shard (the ticket names it: balances.TICKET_STRIDE; a line without a ticket,
    an order risk never saw, goes by its owner: owner modulo `balance_shards`). Nothing can be
    reserved here: an order that comes unfunded, or an amendment that needs more cash, is refused
    (`available` is 0), and cash adjustments belong to the balance shards."""

    __slots__ = ("balance_shards", "lines")

    def __init__(self, balance_shards: int, matching_shard: int = 0) -> None:
        super().__init__(matching_shard)
        self.balance_shards = balance_shards
        self.lines: dict[int, list[SettleLine]] = {}  # the current command's, by balance shard

    @property
    def changed(self) -> bool:
        return bool(self.lines)

    def settle(self, owner: int, ticket: int | None, cash: int, release: int, order_id: int,
               done: bool) -> None:
        shard = owner % self.balance_shards if ticket is None else ticket // TICKET_STRIDE
        lines = self.lines.get(shard)
        if lines is None:
            lines = self.lines[shard] = []
        lines.append(SettleLine(owner, ticket, cash, release, order_id, done))

    def confirm(self, owner: int, ticket: int, order_id: int) -> None:
        """A line that moves nothing and names the ticket, so its balance shard knows the order arrived
        (a `Void` after a fence then leaves it alone)."""
        self.settle(owner, ticket, 0, 0, order_id, False)

    def flush(self, ts: int, out: list) -> None:
        """One Settlement for each balance shard the command settled with, by shard."""
        lines = self.lines
        if not lines:
            return
        for shard in sorted(lines):
            out.append(Settlement(shard, tuple(lines[shard]), ts))
        self.lines = {}


class LocalSettlement(SettlementOutbox):
    """The embedded default's balance stage: the production path (R1, then the matching shard's risk
    with a `SettlementOutbox`, then R2) with its one balance shard in this process and thread.

    The risk engine funds each new order here before checking it (`RiskEngine` R1: `reserve`, the
    amount from `checks.funding`, exactly what a balance shard holds for a `Place`) and extends an
    amendment's ticket before applying it, so orders reach the symbol checks as `FundedOrder` and
    `FundedAmend`, as on a production matching shard. The settlement lines of each command then go to
    the balance shard at its end (`flush`) instead of leaving as `Settlement` events, and come out as
    `AccountUpdate` like the rest of the embedded default's outcomes. Admin cash commands and account
    reads go to the balance shard, as the web tier sends them to the balance shards in production.
    Everything is in one journal, so nothing between the stages can be lost (no fences)."""

    __slots__ = ("bank",)

    def __init__(self, balances: BalanceShard, matching_shard: int = 0) -> None:
        super().__init__(1, matching_shard)
        self.bank = CashStage(balances, matching_shard)

    @property
    def balances(self) -> BalanceShard:
        return self.bank.balances

    @property
    def default_cash(self) -> int:
        return self.bank.default_cash

    @property
    def changed(self) -> bool:
        return bool(self.lines) or self.bank.changed

    def account(self, owner: int) -> tuple[int, int] | None:
        return self.bank.account(owner)

    def adjust(self, owner: int, amount: int) -> BalanceRefusal | None:
        return self.bank.adjust(owner, amount)

    def set_default_cash(self, amount: int) -> None:
        self.bank.set_default_cash(amount)

    # ---- R1, before the matching shard's risk sees the command ----------------------------------

    def fund(self, owner: int, amount: int) -> int | None:
        """Hold `amount` for a new order (a sell: 0, still a ticket): its ticket, or None if refused."""
        return self.bank.reserve(owner, amount)

    def fund_more(self, owner: int, ticket: int, amount: int) -> bool:
        """Hold `amount` more under an order's ticket before its amendment; False if refused."""
        return self.bank.extend(owner, ticket, amount)

    # ---- R2 -------------------------------------------------------------------------------------

    def flush(self, ts: int, out: list) -> None:
        """The command's settlement lines into the balance shard, in order, then the AccountUpdate of
        every account the command changed."""
        lines = self.lines
        if lines:
            balances, matching_shard = self.bank.balances, self.matching_shard
            for shard in sorted(lines):
                for line in lines[shard]:
                    balances.settle_next(matching_shard, line.owner, line.ticket, line.cash, line.release,
                                         line.order_id, line.done, ts)
            self.lines = {}
        self.bank.flush(ts, out)
