"""Reads of accounts and positions (the projection). A user sees only their own; staff anyone's."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from matching.engine.types import STPMode
from risk.config import starting_cash
from risk.models import Account, Position


def account_get(*, user: AbstractBaseUser) -> Account:
    """The user's account; one not projected yet (never traded) is the starting cash, nothing reserved
    (returned unsaved)."""
    account = Account.objects.filter(user=user).first()
    if account is None:
        account = Account(user=user, cash=starting_cash(), reserved=Decimal(0))
    return account


def position_list(*, user: AbstractBaseUser) -> QuerySet[Position]:
    """Every instrument the user has traded, flat ones included (their realised P&L stays)."""
    return Position.objects.filter(user=user).select_related("instrument").order_by("instrument__symbol")


def stp_default(*, user_id: int) -> STPMode:
    value = Account.objects.filter(user_id=user_id).values_list("stp_default", flat=True).first()
    return STPMode.CANCEL_NEWEST if value is None else STPMode(value)
