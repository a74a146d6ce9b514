"""The demo market maker's user, its limits and its cash (docs/ARCHITECTURE.md, "Demo market maker").

- The user `marketmaker` has no usable password (it never logs in; the runner calls
  `matching.services` as it). `ensure_demo_users` creates it, and so does the runner if it is missing.
- Its limits are `UserRiskLimit` overrides, one per instrument (a larger position limit; the order size
  stays the instrument's). Written before the matcher starts (`ensure_demo_users` in scripts/run.sh),
  they are part of the risk configuration the matcher takes at start-up (`risk.config.worker_config`);
  when the runner has to create one itself, it sends it at once (`risk.services.user_limit_changed`),
  in the transaction that wrote the row, so a matcher that does not answer leaves no row behind and
  the next attempt sends it again.
- Its cash: one deposit of `FUNDING` through `risk.services.adjust_cash` (an `AdjustCash` in the log,
  with its `AuditEvent`, actor empty: the system), made by the runner on its first step because that
  needs the matcher. The applied deposit's `AuditEvent` is what makes it happen only once.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from exchange.models import Instrument
from matching.models import AuditEvent
from risk.models import UserRiskLimit

USERNAME = "marketmaker"
MAX_POSITION_LOTS = 20_000  # its position limit in every instrument (the seeded ones allow 5,000-10,000)
FUNDING = Decimal(10_000_000)  # deposited once, on top of the starting cash every account opens with


def ensure_user() -> User:
    """The `marketmaker` user, created without a usable password if missing."""
    users = get_user_model().objects
    user, created = users.get_or_create(username=USERNAME)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def missing_limits(user: User) -> list[Instrument]:
    have = set(UserRiskLimit.objects.filter(user=user).values_list("instrument_id", flat=True))
    return [i for i in Instrument.objects.order_by("symbol") if i.pk not in have]


def create_limit(user: User, instrument: Instrument) -> UserRiskLimit:
    return UserRiskLimit.objects.create(user=user, instrument=instrument,
                                        max_position=instrument.lots_to_qty(MAX_POSITION_LOTS))


def ensure_limits(user: User, *, send: bool) -> list[str]:
    """Create the overrides the user lacks; with `send`, each goes to the running matcher in the
    transaction that wrote it (raises `Unavailable` or `RiskCommandRejected`, leaving no row).
    Returns the symbols created."""
    created = []
    for instrument in missing_limits(user):
        if send:
            from risk.services import user_limit_changed  # imports the matcher's glue

            with transaction.atomic():
                create_limit(user, instrument)
                user_limit_changed(user=user, instrument=instrument)
        else:
            create_limit(user, instrument)
        created.append(instrument.symbol)
    return created


def is_funded(user: User) -> bool:
    return AuditEvent.objects.filter(kind=AuditEvent.AdminKind.CASH_ADJUST, user=user,
                                     detail__outcome="applied").exists()


def ensure_funded(user: User) -> bool:
    """Deposit `FUNDING` unless a deposit for the user was applied before; whether this one did."""
    if is_funded(user):
        return False
    from risk.services import adjust_cash

    adjust_cash(user=user, amount=FUNDING, admin=None)  # type: ignore[arg-type]  # the system, no admin
    return True
