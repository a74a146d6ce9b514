"""Reads of accounts and positions (the projection). A user sees only their own; staff anyone's."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from exchange.local_cache import LocalCache
from matching.engine.types import STPMode
from risk.config import account_shares, units_to_cash
from risk.models import Account, Balance, Position


def account_get(*, user: User) -> Account:
    """The user's account: what the shards reported (the sum of the user's balances), plus the share
    of the starting cash that each shard the user has not traded on yet still holds (all of it, for
    a user who never traded; the embedded default has one shard; with balance shards, the user's one
    balance shard holds it all). Returned unsaved."""
    account = Account.objects.filter(user=user).first() or Account(user=user, cash=0, reserved=Decimal(0))
    reported = set(Balance.objects.filter(user=user).values_list("shard", flat=True))
    unreported = sum(units for shard, units in account_shares(user.pk).items() if shard not in reported)
    account.cash += units_to_cash(unreported)
    return account


def position_list(*, user: User) -> QuerySet[Position]:
    """Every instrument the user has traded, flat ones included (their realised P&L stays)."""
    return Position.objects.filter(user=user).select_related("instrument").order_by("instrument__symbol")


# user id -> STPMode, read on every order that names no stp. Invalidated by `stp_default_changed`
# (risk.services) and when an Account row is saved or deleted through the ORM (the admin); see
# exchange.local_cache for the TTL.
STP_DEFAULTS = LocalCache("stp defaults", 5.0)


def stp_default(*, user_id: int) -> STPMode:
    return STP_DEFAULTS.load(user_id, lambda: _stp_mode(
        Account.objects.filter(user_id=user_id).values_list("stp_default", flat=True).first()))


def stp_default_changed(*, user_id: int) -> None:
    STP_DEFAULTS.invalidate(user_id)


def _stp_mode(value: str | None) -> STPMode:
    return STPMode.CANCEL_NEWEST if value is None else STPMode(value)


@receiver(post_save, sender=Account, dispatch_uid="stp-default-account-saved")
@receiver(post_delete, sender=Account, dispatch_uid="stp-default-account-deleted")
def _account_changed(sender: type, instance: Account, **kwargs: object) -> None:
    STP_DEFAULTS.invalidate(instance.user_id)
