"""Reads of accounts and positions (the projection). A user sees only their own; staff anyone's."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from matching.engine.types import STPMode
from risk.config import shard_shares, units_to_cash
from risk.models import Account, Balance, Position


def account_get(*, user: AbstractBaseUser) -> Account:
    """The user's account: what the shards reported (the sum of the user's balances), plus the share
    of the starting cash that each shard the user has not traded on yet still holds (all of it, for
    a user who never traded; the embedded default has one shard). Returned unsaved."""
    account = Account.objects.filter(user=user).first() or Account(user=user, cash=0, reserved=Decimal(0))
    reported = set(Balance.objects.filter(user=user).values_list("shard", flat=True))
    unreported = sum(units for shard, units in shard_shares().items() if shard not in reported)
    account.cash += units_to_cash(unreported)
    return account


def position_list(*, user: AbstractBaseUser) -> QuerySet[Position]:
    """Every instrument the user has traded, flat ones included (their realised P&L stays)."""
    return Position.objects.filter(user=user).select_related("instrument").order_by("instrument__symbol")


def stp_default(*, user_id: int) -> STPMode:
    value = Account.objects.filter(user_id=user_id).values_list("stp_default", flat=True).first()
    return STPMode.CANCEL_NEWEST if value is None else STPMode(value)
