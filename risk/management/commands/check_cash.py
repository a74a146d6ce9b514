"""`manage.py check_cash`: is the exchange's money where it should be? From the projection (run it when
the shards are idle, or stopped, so that it has caught up):

    held      every account's cash as projected, plus the starting cash of users not seen by any shard
    expected  the starting cash of every user, plus every deposit and withdrawal applied
              (the audit trail's cash_adjust records)

Trades only move cash between accounts, so the two are equal; the command prints both and exits with
status 1 if they differ. Run before and after any change of the shard layout (MATCHER_SHARDS,
BALANCE_SHARDS): the total must not move (docs/ARCHITECTURE.md, "Accounts across shards").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Sum

from matching.models import AuditEvent
from risk.config import account_shares, starting_cash, units_to_cash
from risk.models import Account, Balance


def cash_totals() -> tuple[Decimal, Decimal]:
    """(held, expected), in the currency. A user's account is what the shards reported plus the share
    of the starting cash a shard that never saw the user still holds (risk.selectors.account_get)."""
    users = get_user_model().objects.count()
    reported: dict[int, set[int]] = {}
    for user_id, shard in Balance.objects.values_list("user_id", "shard"):
        reported.setdefault(user_id, set()).add(shard)
    held = Account.objects.filter(user_id__in=reported).aggregate(total=Sum("cash"))["total"] or Decimal(0)
    for user_id, shards in reported.items():
        held += units_to_cash(sum(units for shard, units in account_shares(user_id).items()
                                  if shard not in shards))
    held += starting_cash() * (users - len(reported))
    deposits = sum((Decimal(detail.get("amount", "0")) for detail in AuditEvent.objects.filter(
        kind=AuditEvent.AdminKind.CASH_ADJUST).values_list("detail", flat=True)
        if detail.get("outcome") == "applied"), Decimal(0))
    return held, starting_cash() * users + deposits


class Command(BaseCommand):
    help = "Check that the accounts hold the starting cash of every user plus the deposits: nothing more."

    def handle(self, *args: Any, **options: Any) -> None:
        held, expected = cash_totals()
        self.stdout.write(f"held {held}, expected {expected}")
        if held != expected:
            raise CommandError(f"the accounts hold {held - expected:+} more than they should")
        self.stdout.write("ok")
