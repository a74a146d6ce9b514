"""Tradable instruments and the conversion between Decimal prices/quantities and integer ticks/lots."""

from decimal import Decimal, DecimalException, Inexact, localcontext

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from risk.core import CASH_DECIMALS  # the risk stage counts cash in units of 10**-CASH_DECIMALS

# Ticks and lots travel as signed 64-bit integers (database columns, journal records).
MAX_UNITS = 2**63 - 1
# Enough digits for any product of MAX_UNITS and a stored size (15 digits), so arithmetic stays exact.
_EXACT_DIGITS = 40


def validate_positive(value: Decimal) -> None:
    if not value > 0:
        raise ValidationError("Must be greater than zero.", code="not_positive")


class Instrument(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        HALTED = "halted", "Halted"

    symbol = models.CharField(
        max_length=12,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Z][A-Z0-9.]*\Z", "Use uppercase letters, digits and dots, starting with a letter."
            )
        ],
    )
    name = models.CharField(max_length=100)
    # At most 15 digits: SQLite keeps decimals as doubles, which hold 15 significant digits exactly.
    tick_size = models.DecimalField(max_digits=15, decimal_places=8, validators=[validate_positive])
    lot_size = models.DecimalField(max_digits=15, decimal_places=8, validators=[validate_positive])
    # Trading status as the matcher's risk stage last reported it (risk.projection.apply_halt): halts and
    # resumes are commands to the matcher (risk.services), never edits of these fields.
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    halt_reason = models.CharField(max_length=200, blank=True, default="")
    halted_until = models.DateTimeField(null=True, blank=True, help_text="empty: until resumed")
    status_seq = models.BigIntegerField(default=0, help_text="the matcher seq of the last status change")

    class Meta:
        ordering = ("symbol",)
        constraints = (
            models.CheckConstraint(condition=models.Q(tick_size__gt=0), name="instrument_tick_size_positive"),
            models.CheckConstraint(condition=models.Q(lot_size__gt=0), name="instrument_lot_size_positive"),
        )

    def __str__(self) -> str:
        return self.symbol

    def clean(self) -> None:
        super().clean()
        # one tick times one lot must be a whole number of cash units
        if self.tick_size and self.lot_size and self.tick_size > 0 and self.lot_size > 0:
            value = self.tick_size * self.lot_size * 10**CASH_DECIMALS
            if value != value.to_integral_value():
                raise ValidationError(
                    f"tick size x lot size must be a multiple of {Decimal(1).scaleb(-CASH_DECIMALS)} "
                    "(the smallest amount of cash an account holds)"
                )

    def price_to_ticks(self, price: Decimal) -> int:
        """Whole ticks in `price`; ValueError unless it is a positive finite multiple of the tick size."""
        return _to_units(price, self.tick_size, "price")

    def qty_to_lots(self, qty: Decimal) -> int:
        """Whole lots in `qty`; ValueError unless it is a positive finite multiple of the lot size."""
        return _to_units(qty, self.lot_size, "quantity")

    def ticks_to_price(self, ticks: int) -> Decimal:
        return _from_units(ticks, self.tick_size)

    def lots_to_qty(self, lots: int) -> Decimal:
        return _from_units(lots, self.lot_size)


def _to_units(value: Decimal, unit: Decimal, what: str) -> int:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be positive and finite, got {value}")
    with localcontext() as ctx:
        ctx.prec = _EXACT_DIGITS
        ctx.traps[Inexact] = True
        try:
            units = value / unit
        except DecimalException:  # needs more digits than any valid count has, or overflows
            raise ValueError(f"{what} {value} is not a whole multiple of {_plain(unit)} within range"
                             ) from None
    if units != units.to_integral_value():
        raise ValueError(f"{what} {value} is not a whole multiple of {_plain(unit)}")
    if units > MAX_UNITS:
        raise ValueError(f"{what} {value} is too large")
    return int(units)


def _plain(unit: Decimal) -> str:
    """A size as people write it: 0.01 (not 0.01000000), 10 (not 1E+1)."""
    return format(unit.normalize(), "f")


def _from_units(units: int, unit: Decimal) -> Decimal:
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"expected an int, not {type(units).__name__}")
    if abs(units) > MAX_UNITS:
        raise ValueError(f"{units} is out of range")
    exponent = unit.normalize().as_tuple().exponent  # 0.01000000 -> -2, 1.00000000 -> 0
    if not isinstance(exponent, int):  # "n", "N" or "F": a NaN or an infinity has no places
        raise ValueError(f"{unit} is not a finite unit")
    places = min(0, exponent)
    with localcontext() as ctx:
        ctx.prec = _EXACT_DIGITS
        ctx.traps[Inexact] = True
        return (units * unit).quantize(Decimal(1).scaleb(places))
