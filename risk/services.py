"""Admin changes to risk, as commands to the matcher's risk stage (journaled, applied in sequence, no
restart): limits, halts, held orders, cash. Each waits for the matcher's answer, records an
`AuditEvent` of who sent it and what came of it, and raises when it did not apply:
`matching.worker.bus.Unavailable` (no answer: it may still apply) or `RiskCommandRejected`.

Nothing here writes balances, positions, alerts or instrument status: the projector does, from the
events (`risk/projection.py`). Written here: a user's own `stp_default`, an alert's acknowledgement.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from exchange.models import Instrument
from matching.engine.types import STPMode
from matching.models import AuditEvent, Order
from matching.services import balance_mode, balance_shard_of, command_bus
from matching.timestamps import to_datetime
from matching.worker.matcher import Reply
from matching.worker.redis_bus import RedisBus
from risk import selectors
from risk.config import cash_to_units, instrument_risk, no_user_limit, user_limit
from risk.core import (
    AdjustCash,
    AdminCommand,
    AdminRejected,
    HaltInstrument,
    RejectHeld,
    ReleaseHeld,
    ResumeInstrument,
    SetInstrumentRisk,
    SetUserLimit,
)
from risk.core.balances import Adjust
from risk.models import Account, RiskAlert, RiskLimit, UserRiskLimit

Kind = AuditEvent.AdminKind


class RiskCommandRejected(Exception):
    """The risk stage refused an admin command (it changed nothing): `reason`, `detail` as it said."""

    def __init__(self, event: AdminRejected) -> None:
        what = f"{event.reason}" + (f" ({event.detail})" if event.detail else "")
        super().__init__(f"the matcher refused {event.kind} {event.key}: {what}")
        self.reason = str(event.reason)
        self.detail = event.detail


def risk_limit_changed(*, instrument: Instrument, admin: User | None = None) -> Reply:
    """Send the instrument's risk configuration as the database now has it (no `RiskLimit`: no limits)."""
    limit = RiskLimit.objects.filter(instrument=instrument).first()
    cmd = SetInstrumentRisk(instrument_risk(instrument, limit))
    return _send(cmd, Kind.RISK_LIMIT_SET, admin, symbol=instrument.symbol)


def user_limit_changed(*, user: User, instrument: Instrument,
                       admin: User | None = None) -> Reply:
    """Send the user's override for the instrument as the database now has it (none: removed)."""
    override = UserRiskLimit.objects.filter(user=user, instrument=instrument).first()
    if override is None:
        limit = no_user_limit(user_id=user.pk, symbol=instrument.symbol)
    else:
        limit = user_limit(override)
    return _send(SetUserLimit(limit), Kind.USER_LIMIT_SET, admin, user=user, symbol=instrument.symbol)


def halt_instrument(*, symbol: str, reason: str, admin: User | None = None) -> Reply:
    """Stop new orders and amends on `symbol` until resumed (cancels stay allowed)."""
    return _send(HaltInstrument(symbol, reason), Kind.HALT, admin, symbol=symbol)


def resume_instrument(*, symbol: str, admin: User | None = None) -> Reply:
    return _send(ResumeInstrument(symbol), Kind.RESUME, admin, symbol=symbol)


def release_held_order(*, order_id: int, admin: User) -> Reply:
    """Send a held order on to the book (risk checks it again first)."""
    order = Order.objects.filter(order_id=order_id).select_related("user").first()
    return _send(ReleaseHeld(order_id), Kind.HELD_RELEASE, admin, order=order, order_id=order_id)


def reject_held_order(*, order_id: int, admin: User) -> Reply:
    """Refuse a held order: its owner sees it rejected (held_rejected), its cash is released."""
    order = Order.objects.filter(order_id=order_id).select_related("user").first()
    return _send(RejectHeld(order_id), Kind.HELD_REJECT, admin, order=order, order_id=order_id)


def adjust_cash(*, user: User, amount: Decimal, admin: User) -> Reply:
    """Deposit (amount > 0) or withdraw (< 0); a withdrawal below what open orders reserve is refused."""
    units = cash_to_units(amount)
    if units == 0:
        raise ValueError("the amount must not be zero")
    return _send(AdjustCash(user.pk, units), Kind.CASH_ADJUST, admin, user=user, amount=str(amount))


def account_set_stp_default(*, user: User, stp: STPMode) -> Account:
    """The user's own setting (not the matcher's): self-trade prevention for orders that name none."""
    try:
        return _set_stp_default(user, stp)
    finally:
        selectors.stp_default_changed(user_id=user.pk)  # the orders' cached default (risk.selectors)


def _set_stp_default(user: User, stp: STPMode) -> Account:
    if Account.objects.filter(user=user).update(stp_default=stp.value):
        return Account.objects.get(user=user)
    try:
        with transaction.atomic():
            return Account.objects.create(user=user, cash=0, stp_default=stp.value)  # no balance reported yet
    except IntegrityError:  # projected meanwhile
        Account.objects.filter(user=user).update(stp_default=stp.value)
        return Account.objects.get(user=user)


def alerts_acknowledge(*, alert_ids: list[int], admin: User) -> int:
    return RiskAlert.objects.filter(pk__in=alert_ids, acknowledged=False).update(acknowledged=True,
                                                                                  acknowledged_by=admin)


def _send(cmd: AdminCommand, kind: str, admin: User | None, *,
          user: User | None = None, symbol: str = "", order: Order | None = None,
          order_id: int = 0, **detail: Any) -> Reply:
    if isinstance(cmd, AdjustCash) and balance_mode():  # the account lives in the user's balance shard
        bus = command_bus()
        assert isinstance(bus, RedisBus)
        reply = bus.submit_balance(Adjust(cmd.owner, cmd.amount), balance_shard_of(cmd.owner),
                                   settings.MATCHER_TIMEOUT)
    else:
        reply = command_bus().submit(cmd, timeout=settings.MATCHER_TIMEOUT)
    rejected = next((e for e in reply.events if isinstance(e, AdminRejected)), None)
    applied = reply.command if reply.command is not None else cmd
    record = {"command": _plain(dataclasses.asdict(applied)),
              "outcome": "applied" if rejected is None else "rejected",
              "events": [type(e).__name__ for e in reply.events], **detail}
    if rejected is not None:
        record.update(reason=str(rejected.reason), reason_detail=rejected.detail)
    AuditEvent.objects.create(
        seq=reply.seq, kind=kind, order_id=order_id,
        user=order.user if order is not None else user, actor=admin,
        symbol=order.symbol if order is not None else symbol, detail=record,
        at=to_datetime(applied.timestamp) if applied.timestamp else timezone.now(),
    )
    if rejected is not None:
        raise RiskCommandRejected(rejected)
    return reply


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)  # enums as their values
    return value
