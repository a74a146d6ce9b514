"""The read side: the engine's events projected into the database (see `matching/projector.py`).

Nothing but the projector writes these tables. Prices are integer ticks and quantities integer
lots, as in the engine; `exchange.models.Instrument` converts them to `Decimal` at the edge.
Choices come from the engine's enums, so the strings are defined once.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

from django.conf import settings
from django.db import models

from matching.engine.types import (
    CancelReason,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    STPMode,
    TimeInForce,
)

# The API must refuse longer values before they reach the matcher: the projector stores what it is given.
SYMBOL_MAX_LENGTH = 12  # as exchange.models.Instrument.symbol
CLIENT_ORDER_ID_MAX_LENGTH = 64


def _choices(enum: type[Enum]) -> list[tuple[str, str]]:
    return [(m.value, m.name.lower().replace("_", " ")) for m in enum]


class Order(models.Model):
    """One engine order as of the last projected event (`updated_seq`).

    Accounting, as in the engine: qty_lots == filled_lots + remaining_lots + canceled_lots for
    every accepted order (canceled counts canceled, expired and self-trade-reduced lots). A rejected
    order keeps the quantity it asked for, with nothing filled, remaining or canceled.
    """

    order_id = models.BigIntegerField(unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    symbol = models.CharField(max_length=SYMBOL_MAX_LENGTH, db_index=True)
    side = models.CharField(max_length=4, choices=_choices(Side))
    order_type = models.CharField(max_length=10, choices=_choices(OrderType))
    tif = models.CharField(max_length=3, choices=_choices(TimeInForce))
    status = models.CharField(max_length=16, choices=_choices(OrderStatus))
    price_ticks = models.BigIntegerField(null=True, blank=True)
    stop_price_ticks = models.BigIntegerField(null=True, blank=True)
    qty_lots = models.BigIntegerField()
    filled_lots = models.BigIntegerField(default=0)
    remaining_lots = models.BigIntegerField(default=0)
    canceled_lots = models.BigIntegerField(default=0)
    # Sum of price * qty over the order's fills: up to 10^30, beyond a 64-bit integer. Exact on
    # PostgreSQL; SQLite reads decimals back with 15 significant digits.
    notional_ticks_lots = models.DecimalField(max_digits=38, decimal_places=0, default=Decimal(0))
    client_order_id = models.CharField(max_length=CLIENT_ORDER_ID_MAX_LENGTH, null=True, blank=True)
    # With balance shards (issue 13): the ticket under which the user's balance shard holds the order's
    # cash; an amendment that needs more names it
    ticket = models.BigIntegerField(null=True, blank=True)
    post_only = models.BooleanField(default=False)
    stp = models.CharField(max_length=16, choices=_choices(STPMode))
    expire_at = models.BigIntegerField(null=True, blank=True, help_text="ns since the epoch (DAY/GTD)")
    reject_reason = models.CharField(max_length=24, blank=True, default="", choices=_choices(RejectReason))
    cancel_reason = models.CharField(max_length=16, blank=True, default="", choices=_choices(CancelReason))
    created_seq = models.BigIntegerField()
    updated_seq = models.BigIntegerField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=("user", "symbol", "client_order_id"),
                condition=models.Q(client_order_id__isnull=False),
                name="order_unique_client_order_id",
            ),
        )
        indexes = (
            models.Index(fields=("user", "status"), name="order_user_status"),
            models.Index(fields=("user", "symbol"), name="order_user_symbol"),
        )

    def __str__(self) -> str:
        return f"#{self.order_id} {self.side} {self.qty_lots} {self.symbol}"

    @property
    def average_price_ticks(self) -> Decimal | None:
        """The quantity-weighted average fill price in ticks (None before the first fill)."""
        if not self.filled_lots:
            return None
        return Decimal(self.notional_ticks_lots) / self.filled_lots


class Trade(models.Model):
    symbol = models.CharField(max_length=SYMBOL_MAX_LENGTH)
    trade_id = models.BigIntegerField(help_text="counts 1, 2, 3 ... per symbol")
    price_ticks = models.BigIntegerField()
    qty_lots = models.BigIntegerField()
    taker_order_id = models.BigIntegerField(db_index=True)
    maker_order_id = models.BigIntegerField(db_index=True)
    taker_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    maker_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    taker_side = models.CharField(max_length=4, choices=_choices(Side))
    seq = models.BigIntegerField()
    executed_at = models.DateTimeField()

    class Meta:
        # Its index also serves "the symbol's latest trades" (symbol, trade_id desc): read backwards.
        constraints = (models.UniqueConstraint(fields=("symbol", "trade_id"), name="trade_unique_symbol_id"),)

    def __str__(self) -> str:
        return f"{self.symbol} #{self.trade_id} {self.qty_lots} @ {self.price_ticks}"

    @property
    def maker_side(self) -> str:
        return Side.SELL.value if self.taker_side == Side.BUY else Side.BUY.value


class AuditEvent(models.Model):
    """Append-only: one row per order event, with the event's fields as plain JSON values, and one per
    admin command (risk limits, halts, held orders, cash: `actor` is the staff member who sent it,
    `user` the account it concerns, `order_id` 0 unless it is about an order)."""

    class Kind(models.TextChoices):
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        CANCELED = "canceled"
        EXPIRED = "expired"
        FILLED = "filled"
        PARTIALLY_FILLED = "partially_filled"
        AMENDED = "amended"
        REDUCED = "reduced"
        STOP_TRIGGERED = "stop_triggered"
        CANCEL_REJECTED = "cancel_rejected"
        AMEND_REJECTED = "amend_rejected"
        HELD = "held"  # kept for an admin's review by the risk stage (5% of daily volume)
        RELEASED = "released"  # a held order released into the book by an admin

    class AdminKind(models.TextChoices):
        """Admin commands to the matcher's risk stage (risk/services.py), recorded by whoever sent them."""

        RISK_LIMIT_SET = "risk_limit_set"
        USER_LIMIT_SET = "user_limit_set"
        HALT = "halt"
        RESUME = "resume"
        HELD_RELEASE = "held_release"
        HELD_REJECT = "held_reject"
        CASH_ADJUST = "cash_adjust"

    seq = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices + AdminKind.choices)
    order_id = models.BigIntegerField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="the staff member behind an admin command",
    )
    symbol = models.CharField(max_length=SYMBOL_MAX_LENGTH)
    detail = models.JSONField(default=dict)
    at = models.DateTimeField()

    class Meta:
        indexes = (
            models.Index(fields=("order_id", "seq"), name="audit_order"),
            models.Index(fields=("user", "-at"), name="audit_user_recent"),
            models.Index(fields=("-at",), name="audit_recent"),
        )

    def __str__(self) -> str:
        return f"seq {self.seq} {self.kind} #{self.order_id}"


class ProjectionCursor(models.Model):
    """The last command seq projected from one stream (a matcher shard): replies at or below it
    are skipped, so handing the projector the same replies again (a journal replay) is harmless."""

    name = models.CharField(max_length=64, unique=True)
    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seq}"
