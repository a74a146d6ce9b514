"""Pre-trade risk and accounts around the matching engine: pure Python, no Django, no I/O, no clock.

Read in this order: types (codes), limits (configuration), commands (admin input), events (output),
accounts (cash, positions, reservations), symbols (last price, volume, circuit breaker, halts),
checks (the pre-trade checks), engine (RiskEngine: apply(command) -> events), admin.
The rules are in docs/RISK.md.
"""

from risk.core.accounts import CASH_DECIMALS, Account, OrderRisk, Position
from risk.core.commands import (
    REFUSED,
    AdjustCash,
    AdminCommand,
    Fence,
    FundedAmend,
    FundedOrder,
    HaltInstrument,
    RejectHeld,
    ReleaseHeld,
    ResumeInstrument,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
)
from risk.core.engine import RiskEngine
from risk.core.events import (
    AccountUpdate,
    AdminApplied,
    AdminRejected,
    HeldOrderReleased,
    InstrumentHalted,
    InstrumentResumed,
    OrderHeld,
    PositionUpdate,
    RiskAlert,
    RiskEvent,
)
from risk.core.limits import InstrumentRisk, UserLimit
from risk.core.symbols import DAY_NS
from risk.core.types import CIRCUIT_BREAKER, AdminKind, AdminRejectReason, AlertKind, Verdict

__all__ = [
    "CASH_DECIMALS",
    "CIRCUIT_BREAKER",
    "DAY_NS",
    "REFUSED",
    "Account",
    "AccountUpdate",
    "AdjustCash",
    "AdminApplied",
    "AdminCommand",
    "AdminKind",
    "AdminRejectReason",
    "AdminRejected",
    "AlertKind",
    "Fence",
    "FundedAmend",
    "FundedOrder",
    "HaltInstrument",
    "HeldOrderReleased",
    "InstrumentHalted",
    "InstrumentResumed",
    "InstrumentRisk",
    "OrderHeld",
    "OrderRisk",
    "Position",
    "PositionUpdate",
    "RejectHeld",
    "ReleaseHeld",
    "ResumeInstrument",
    "RiskAlert",
    "RiskEngine",
    "RiskEvent",
    "SetDefaultCash",
    "SetInstrumentRisk",
    "SetUserLimit",
    "UserLimit",
    "Verdict",
]
