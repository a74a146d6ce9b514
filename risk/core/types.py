"""Codes the risk core speaks in, as short lowercase strings (like matching/engine/types.py).

Order rejections reuse the engine's `RejectReason` (risk appended its own members there:
position_limit, order_size, price_band, insufficient_funds, halted, held_rejected), so the API
and the projection see one set of reasons. The enums here are risk's own.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """What the pre-trade check decided about a new order when it did not reject it."""

    PASS = "pass"  # hand it to the engine, its cash reserved
    HOLD = "hold"  # keep it in the held queue for an admin, its cash reserved
    MALFORMED = "malformed"  # the engine will reject it with its own reason: nothing to check or reserve


class AdminKind(StrEnum):
    """Which admin command an `AdminApplied` / `AdminRejected` answers."""

    SET_INSTRUMENT_RISK = "set_instrument_risk"
    SET_USER_LIMIT = "set_user_limit"
    SET_DEFAULT_CASH = "set_default_cash"
    ADJUST_CASH = "adjust_cash"
    HALT = "halt"
    RESUME = "resume"
    RELEASE_HELD = "release_held"
    REJECT_HELD = "reject_held"


class AdminRejectReason(StrEnum):
    INVALID_VALUE = "invalid_value"  # a negative amount, a zero cash_per_tick_lot ...
    BELOW_RESERVED = "below_reserved"  # a withdrawal would leave cash below what open orders reserve
    UNKNOWN_HELD_ORDER = "unknown_held_order"
    UNKNOWN_SYMBOL = "unknown_symbol"  # halting a symbol the engine has no book for
    NOT_HALTED = "not_halted"


class AlertKind(StrEnum):
    """Post-trade findings: nothing is undone (trades stand), someone should look."""

    POSITION_LIMIT = "position_limit"  # a position beyond its limit (a lowered limit, an amend race)
    RESERVATION_OVERRUN = "reservation_overrun"  # fills cost more than the order had reserved


CIRCUIT_BREAKER = "circuit_breaker"
"""The `reason` of a halt the circuit breaker started (admin halts carry the admin's text)."""
