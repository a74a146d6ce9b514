"""Admin for the projection. Rows mirror the engine, so nothing here adds, edits or deletes them: orders,
trades and the audit trail are read-only (viewable; no Save, no Delete). Prices and quantities show as
decimals of their instrument (139.75, not 13975 ticks)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from exchange.api import lookups
from exchange.marketmaker.accounts import USERNAME as MARKET_MAKER
from exchange.models import Instrument
from matching.models import AuditEvent, Order, Trade


class _ProjectedAdmin(admin.ModelAdmin):
    """Rows written only by the projector: shown, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [*self.fields] if self.fields else [f.name for f in self.model._meta.fields]


def _instrument(symbol: str) -> Instrument | None:
    return lookups.instrument_get(symbol)  # cached in process memory: one query per symbol, not per row


def _price(symbol: str, ticks: int | None) -> Decimal | None:
    """Ticks as the instrument's price (139.75); the bare number when the instrument is gone."""
    if ticks is None:
        return None
    instrument = _instrument(symbol)
    return Decimal(ticks) if instrument is None else instrument.ticks_to_price(ticks)


def _quantity(symbol: str, lots: int) -> Decimal:
    instrument = _instrument(symbol)
    return Decimal(lots) if instrument is None else instrument.lots_to_qty(lots)


class MarketMakerFilter(admin.SimpleListFilter):
    """Hide (or show only) the demo market maker's orders, which otherwise fill the list."""

    title = "market maker"
    parameter_name = "market_maker"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("hide", "Hide its orders"), ("only", "Only its orders")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "hide":
            return queryset.exclude(user__username=MARKET_MAKER)
        if self.value() == "only":
            return queryset.filter(user__username=MARKET_MAKER)
        return queryset


class OrderDisplay:
    """An order's prices and quantities in its instrument's units (lists and the change form)."""

    @admin.display(description="price", ordering="price_ticks")
    def price(self, obj: Order) -> Decimal | None:
        return _price(obj.symbol, obj.price_ticks)

    @admin.display(description="stop price", ordering="stop_price_ticks")
    def stop_price(self, obj: Order) -> Decimal | None:
        return _price(obj.symbol, obj.stop_price_ticks)

    @admin.display(description="quantity", ordering="qty_lots")
    def quantity(self, obj: Order) -> Decimal:
        return _quantity(obj.symbol, obj.qty_lots)

    @admin.display(description="filled", ordering="filled_lots")
    def filled(self, obj: Order) -> Decimal:
        return _quantity(obj.symbol, obj.filled_lots)

    @admin.display(description="remaining", ordering="remaining_lots")
    def remaining(self, obj: Order) -> Decimal:
        return _quantity(obj.symbol, obj.remaining_lots)

    @admin.display(description="canceled", ordering="canceled_lots")
    def canceled(self, obj: Order) -> Decimal:
        return _quantity(obj.symbol, obj.canceled_lots)

    @admin.display(description="average price")
    def average_price(self, obj: Order) -> Decimal | None:
        average = obj.average_price_ticks
        instrument = _instrument(obj.symbol)
        if average is None or instrument is None:
            return average
        places = min(0, int(instrument.tick_size.normalize().as_tuple().exponent))
        return (average * instrument.tick_size).quantize(Decimal(1).scaleb(places - 2))


ORDER_LIST = ("order_id", "user", "symbol", "side", "order_type", "tif", "status", "price", "quantity",
              "filled", "remaining", "client_order_id", "updated_at")
ORDER_FIELDS = ("order_id", "user", "symbol", "side", "order_type", "tif", "status", "price", "stop_price",
                "quantity", "filled", "remaining", "canceled", "average_price", "post_only", "stp",
                "expire_at", "client_order_id", "reject_reason", "cancel_reason", "created_seq",
                "updated_seq", "created_at", "updated_at")


@admin.register(Order)
class OrderAdmin(OrderDisplay, _ProjectedAdmin):
    list_display = ORDER_LIST
    list_filter = (MarketMakerFilter, "status", "symbol", "side", "order_type")
    search_fields = ("=order_id", "client_order_id", "user__username")
    list_select_related = ("user",)
    ordering = ("-created_seq",)
    fields = ORDER_FIELDS


@admin.register(Trade)
class TradeAdmin(_ProjectedAdmin):
    list_display = ("symbol", "trade_id", "price", "quantity", "taker_side", "taker_order_id",
                    "maker_order_id", "taker_user", "maker_user", "executed_at")
    list_filter = ("symbol", "taker_side")
    search_fields = ("=taker_order_id", "=maker_order_id", "taker_user__username", "maker_user__username")
    list_select_related = ("taker_user", "maker_user")
    ordering = ("-seq", "-id")
    fields = ("symbol", "trade_id", "price", "quantity", "taker_side", "taker_order_id", "maker_order_id",
              "taker_user", "maker_user", "seq", "executed_at")

    @admin.display(description="price", ordering="price_ticks")
    def price(self, obj: Trade) -> Decimal | None:
        return _price(obj.symbol, obj.price_ticks)

    @admin.display(description="quantity", ordering="qty_lots")
    def quantity(self, obj: Trade) -> Decimal:
        return _quantity(obj.symbol, obj.qty_lots)


PRICE_KEYS = frozenset({"price", "stop_price", "last_price"})
QUANTITY_KEYS = frozenset({"qty", "remaining", "canceled_qty", "reduced_qty", "taker_remaining",
                           "maker_remaining"})
PLUMBING_KEYS = frozenset({"order_id", "owner", "symbol", "timestamp", "taker_owner", "maker_owner"})


@admin.register(AuditEvent)
class AuditEventAdmin(_ProjectedAdmin):
    """Order events (projected) and admin commands (actor: who sent them), never changed or deleted."""

    list_display = ("at", "seq", "kind", "order_id", "user", "symbol", "actor", "details")
    list_filter = ("kind", "symbol", ("user", admin.RelatedOnlyFieldListFilter),
                   ("actor", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=order_id", "=seq", "user__username", "actor__username", "symbol")
    list_select_related = ("user", "actor")
    date_hierarchy = "at"
    ordering = ("-seq", "-id")

    @admin.display(description="details")
    def details(self, obj: AuditEvent) -> str:
        """An order event's fields with prices and quantities in the instrument's units (price=139.75,
        qty=10); an admin command's detail as recorded."""
        detail = obj.detail if isinstance(obj.detail, dict) else {}
        if obj.kind not in AuditEvent.Kind.values:
            return ", ".join(f"{key}={value}" for key, value in detail.items())
        shown = []
        for key, value in detail.items():
            if key in PLUMBING_KEYS or value is None:
                continue
            if key in PRICE_KEYS and isinstance(value, int):
                value = _price(obj.symbol, value)
            elif key in QUANTITY_KEYS and isinstance(value, int):
                value = _quantity(obj.symbol, value)
            shown.append(f"{key}={value}")
        return ", ".join(shown)
