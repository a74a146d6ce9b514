"""Risk's admin commands, applied in sequence like orders (so a replay rebuilds the same state).

Each answers with an acknowledgement: `AdminApplied(kind, key)`, or for halts, resumes and held orders
their own events (InstrumentHalted, InstrumentResumed, HeldOrderReleased + the order's events,
OrderRejected(held_rejected)); or `AdminRejected(kind, key, reason, detail)` when it cannot apply, in
which case it changed nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from risk.core.commands import (
    AdjustCash,
    AdminCommand,
    HaltInstrument,
    ReleaseHeld,
    ResumeInstrument,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
)
from risk.core.events import AdminApplied, AdminRejected, InstrumentHalted, InstrumentResumed
from risk.core.limits import InstrumentRisk, UserLimit
from risk.core.types import AdminKind, AdminRejectReason

if TYPE_CHECKING:
    from risk.core.engine import RiskEngine

INVALID: Final = AdminRejectReason.INVALID_VALUE


def apply_admin(risk: RiskEngine, cmd: AdminCommand, out: list) -> None:
    ts = cmd.timestamp
    if isinstance(cmd, SetInstrumentRisk):
        set_instrument_risk(risk, cmd.config, ts, out)
    elif isinstance(cmd, SetUserLimit):
        set_user_limit(risk, cmd.limit, ts, out)
    elif isinstance(cmd, SetDefaultCash):
        if type(cmd.amount) is not int or cmd.amount < 0:
            out.append(AdminRejected(AdminKind.SET_DEFAULT_CASH, "", INVALID, "amount", ts))
            return
        risk.cash.set_default_cash(cmd.amount)
        out.append(AdminApplied(AdminKind.SET_DEFAULT_CASH, "", ts))
    elif isinstance(cmd, AdjustCash):
        adjust_cash(risk, cmd.owner, cmd.amount, ts, out)
    elif isinstance(cmd, HaltInstrument):
        if cmd.symbol not in risk.engine.books:
            out.append(AdminRejected(AdminKind.HALT, str(cmd.symbol), AdminRejectReason.UNKNOWN_SYMBOL, "",
                                     ts))
            return
        risk.symbol(cmd.symbol).halt(cmd.reason, None)  # an admin halt (also over a timed one)
        risk.update_deadline()
        out.append(InstrumentHalted(cmd.symbol, cmd.reason, None, ts))
    elif isinstance(cmd, ResumeInstrument):
        sym = risk.symbols.get(cmd.symbol)
        if sym is None or not sym.halted:
            out.append(AdminRejected(AdminKind.RESUME, str(cmd.symbol), AdminRejectReason.NOT_HALTED, "", ts))
            return
        sym.resume()
        risk.update_deadline()
        out.append(InstrumentResumed(cmd.symbol, ts))
    elif isinstance(cmd, ReleaseHeld):
        if not risk.release(cmd.order_id, ts, out):
            out.append(AdminRejected(AdminKind.RELEASE_HELD, str(cmd.order_id),
                                     AdminRejectReason.UNKNOWN_HELD_ORDER, "", ts))
    elif not risk.reject_held(cmd.order_id, ts, out):
        out.append(AdminRejected(AdminKind.REJECT_HELD, str(cmd.order_id),
                                 AdminRejectReason.UNKNOWN_HELD_ORDER, "", ts))


def set_instrument_risk(risk: RiskEngine, config: InstrumentRisk, ts: int, out: list) -> None:
    """Limits apply to orders from now on; positions already beyond a lowered limit raise alerts.
    A changed cash_per_tick_lot applies to later trades and reservations (set it once, really)."""
    key = str(config.symbol)
    error = config.error()
    if error is not None:
        out.append(AdminRejected(AdminKind.SET_INSTRUMENT_RISK, key, INVALID, error, ts))
        return
    risk.symbol(config.symbol).configure(InstrumentRisk.from_state(config.state()))  # a copy
    out.append(AdminApplied(AdminKind.SET_INSTRUMENT_RISK, key, ts))
    accounts = risk.ledger.accounts
    for owner in sorted(accounts):
        position = accounts[owner].positions.get(config.symbol)
        if position is not None and position.qty:
            risk.check_position(owner, config.symbol, position, ts)


def set_user_limit(risk: RiskEngine, limit: UserLimit, ts: int, out: list) -> None:
    key = f"{limit.owner}:{limit.symbol}"
    error = limit.error()
    if error is not None:
        out.append(AdminRejected(AdminKind.SET_USER_LIMIT, key, INVALID, error, ts))
        return
    if limit.is_empty():
        risk.user_limits.pop((limit.owner, limit.symbol), None)
    else:
        risk.user_limits[(limit.owner, limit.symbol)] = UserLimit.from_state(limit.state())
    out.append(AdminApplied(AdminKind.SET_USER_LIMIT, key, ts))
    account = risk.ledger.accounts.get(limit.owner)
    position = None if account is None else account.positions.get(limit.symbol)
    if position is not None and position.qty:
        risk.check_position(limit.owner, limit.symbol, position, ts)


def adjust_cash(risk: RiskEngine, owner: int, amount: int, ts: int, out: list) -> None:
    """Deposits always apply; a withdrawal may not leave cash below what open orders reserve."""
    key = str(owner)
    if type(owner) is not int or type(amount) is not int:
        out.append(AdminRejected(AdminKind.ADJUST_CASH, key, INVALID,
                                 "amount" if type(owner) is int else "owner", ts))
        return
    if risk.cash.adjust(owner, amount) is not None:  # below_reserved: the only refusal of valid values
        out.append(AdminRejected(AdminKind.ADJUST_CASH, key, AdminRejectReason.BELOW_RESERVED, "", ts))
        return
    risk.ledger.account(owner)
    out.append(AdminApplied(AdminKind.ADJUST_CASH, key, ts))


def config_changes(risk: RiskEngine, commands: list[AdminCommand]) -> list[AdminCommand]:
    """The configuration commands among `commands` that would change something (others are kept):
    what a restarting worker needs to send so the log holds no repeats of an unchanged config."""
    out: list[AdminCommand] = []
    for cmd in commands:
        if isinstance(cmd, SetDefaultCash):
            changed = cmd.amount != risk.cash.default_cash
        elif isinstance(cmd, SetInstrumentRisk):
            sym = risk.symbols.get(cmd.config.symbol)
            changed = sym is None or sym.config is None or sym.config.state() != cmd.config.state()
        elif isinstance(cmd, SetUserLimit):
            current = risk.user_limits.get((cmd.limit.owner, cmd.limit.symbol))
            if cmd.limit.is_empty():
                changed = current is not None
            else:
                changed = current is None or current.state() != cmd.limit.state()
        else:
            changed = True
        if changed:
            out.append(cmd)
    return out
