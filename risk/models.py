"""Risk configuration (edited in the admin, sent to the matcher as commands) and the accounts side of
the matcher's risk stage, projected (written only from its events, see `risk/projection.py`).

Quantities and prices are `Decimal`s in the instrument's units here; `risk/config.py` turns them into
the integer lots, ticks, basis points and nanoseconds of `risk.core`. Empty (null) means no limit.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from enum import Enum
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from exchange.models import Instrument
from matching.engine.types import STPMode
from matching.models import Order
from risk.core import CIRCUIT_BREAKER, AlertKind


def _choices(enum: type[Enum]) -> list[tuple[str, str]]:
    return [(m.value, m.name.lower().replace("_", " ")) for m in enum]


_NON_NEGATIVE = MinValueValidator(Decimal(0))
_PCT = (MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100)))


def _quantity(help_text: str, **options: Any) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=8, validators=[_NON_NEGATIVE],
                               help_text=help_text, **options)


def _pct(help_text: str, **options: Any) -> models.DecimalField:
    return models.DecimalField(max_digits=5, decimal_places=2, validators=list(_PCT), help_text=help_text,
                               **options)


def _money(**options: Any) -> models.DecimalField:
    # 4 places: risk.core.CASH_DECIMALS
    return models.DecimalField(max_digits=20, decimal_places=4, **options)


class RiskLimit(models.Model):
    """One instrument's pre-trade limits. An instrument without one trades without limits."""

    instrument = models.OneToOneField(Instrument, on_delete=models.CASCADE, related_name="risk_limit")
    max_position = _quantity("largest absolute position (open orders count as filled); empty: none",
                             null=True, blank=True)
    max_order_size = _quantity("largest quantity of one order; empty: none", null=True, blank=True)
    price_band_pct = _pct("limit prices at most this % from the last trade (or the reference price)",
                          null=True, blank=True)
    hold_volume_pct = _pct("orders above this % of the daily volume wait in the held queue for an admin",
                           null=True, blank=True, default=Decimal(5))
    reference_daily_volume = _quantity("the hold rule uses the larger of this and today's volume",
                                       default=Decimal(0))
    reference_price = models.DecimalField(max_digits=20, decimal_places=8, null=True, blank=True,
                                          validators=[MinValueValidator(Decimal(0))],
                                          help_text="the price band's reference before the first trade")
    circuit_move_pct = _pct("a move larger than this % within the window halts trading", null=True,
                            blank=True)
    circuit_window_seconds = models.PositiveIntegerField(null=True, blank=True)
    circuit_halt_seconds = models.PositiveIntegerField(null=True, blank=True,
                                                       help_text="how long a circuit-breaker halt lasts")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("instrument__symbol",)

    def __str__(self) -> str:
        return f"risk limits of {self.instrument_id and self.instrument.symbol}"

    def clean(self) -> None:
        super().clean()
        from risk.config import ConfigError, instrument_risk  # risk.config imports this module

        window, halt = self.circuit_window_seconds, self.circuit_halt_seconds
        if self.circuit_move_pct is not None and not (window and halt):
            raise ValidationError({"circuit_move_pct": "give the window and the halt length too"})
        if self.instrument_id is None:
            return
        try:
            instrument_risk(self.instrument, self)
        except ConfigError as exc:
            raise ValidationError({exc.field: str(exc)}) from None


class UserRiskLimit(models.Model):
    """One user's override of an instrument's limits; an empty field inherits the instrument's."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="risk_limits")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="user_risk_limits")
    max_position = _quantity("largest absolute position for this user; empty: the instrument's",
                             null=True, blank=True)
    max_order_size = _quantity("largest order for this user; empty: the instrument's", null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("user__username", "instrument__symbol")
        constraints = (models.UniqueConstraint(fields=("user", "instrument"), name="user_risk_limit_unique"),)

    def __str__(self) -> str:
        return f"limits of user {self.user_id} in {self.instrument_id and self.instrument.symbol}"

    def clean(self) -> None:
        super().clean()
        from risk.config import ConfigError, user_limit

        if self.max_position is None and self.max_order_size is None:
            raise ValidationError("set at least one limit (delete the override to inherit both)")
        if self.instrument_id is None or self.user_id is None:
            return
        try:
            user_limit(self)
        except ConfigError as exc:
            raise ValidationError({exc.field: str(exc)}) from None


class Account(models.Model):
    """A user's cash as the matcher's risk stage last reported it (available = cash - reserved).

    Cash and reserved are projections (`risk.projection`): the sums of the user's `Balance` rows, one
    per shard. `stp_default` is the user's own setting. A user without a row has not traded yet:
    their account is the starting cash, nothing reserved.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    cash = _money()
    reserved = _money(default=Decimal(0), help_text="held back for open buy orders")
    stp_default = models.CharField(max_length=16, choices=_choices(STPMode),
                                   default=STPMode.CANCEL_NEWEST.value,
                                   help_text="self-trade prevention for orders that do not name one")
    seq = models.BigIntegerField(default=0, help_text="the seq of the last update written (of its shard)")
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"account of user {self.user_id}"

    @property
    def available(self) -> Decimal:
        return self.cash - self.reserved


class Balance(models.Model):
    """A user's cash on one matcher shard, as that shard's risk stage last reported it.

    Symbols are sharded and each shard's risk stage keeps its own ledger, so a user's cash is split
    across the shards (the starting cash evenly; deposits on the lowest shard: docs/RISK.md). `Account`
    holds the sum, which trades conserve. The embedded default has one shard, so one row."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="balances")
    shard = models.PositiveSmallIntegerField()
    cash = _money()
    reserved = _money(default=Decimal(0))
    seq = models.BigIntegerField(default=0, help_text="the shard's seq of the last update written")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=("user", "shard"), name="balance_user_shard"),)

    def __str__(self) -> str:
        return f"user {self.user_id} on shard {self.shard}"


class Position(models.Model):
    """A user's position in one instrument at average cost, as the risk stage last reported it.

    `cost` is what the open position cost (signed like `qty`: average price x qty), `realised` the
    profit taken by reducing it; cost - realised is the net cash spent on the instrument.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="positions")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="positions")
    qty = models.DecimalField(max_digits=20, decimal_places=8, help_text="signed: short below zero")
    cost = _money()
    realised = _money(default=Decimal(0))
    seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("user_id", "instrument__symbol")
        constraints = (models.UniqueConstraint(fields=("user", "instrument"), name="position_unique"),)

    def __str__(self) -> str:
        return f"{self.instrument_id and self.instrument.symbol} position of user {self.user_id}"

    @property
    def average_price(self) -> Decimal | None:
        """Cost per unit of the open position (None when flat)."""
        if not self.qty:
            return None
        with localcontext() as ctx:
            ctx.prec = 40
            return self.cost / self.qty

    def market_value(self, last_price: Decimal) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 40
            return self.qty * last_price

    def unrealised(self, last_price: Decimal) -> Decimal:
        """Profit if the open position were closed at `last_price` (short positions gain as it falls)."""
        with localcontext() as ctx:
            ctx.prec = 40
            return self.qty * last_price - self.cost


class RiskAlert(models.Model):
    """Something an admin should look at: a position beyond its limit, fills above a reservation, a
    circuit breaker that halted an instrument. Trades stand; nothing here undoes anything."""

    KINDS = (*_choices(AlertKind), (CIRCUIT_BREAKER, "circuit breaker"))

    seq = models.BigIntegerField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    instrument = models.ForeignKey(Instrument, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    kind = models.CharField(max_length=24, choices=KINDS)
    detail = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(help_text="engine time of the event")
    acknowledged = models.BooleanField(default=False)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ("-seq", "-id")
        indexes = (models.Index(fields=("acknowledged", "-seq"), name="risk_alert_open"),)

    def __str__(self) -> str:
        return f"{self.kind} at seq {self.seq}"


class HeldOrder(Order):
    """The held-order queue: orders the hold rule kept back for an admin to release or reject."""

    class Meta:
        proxy = True
        verbose_name = "held order"
