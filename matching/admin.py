"""Admin for the projection. Rows mirror the engine, so nothing here adds or edits them: orders and
trades are read-mostly (viewable, deletable by those allowed), audit events strictly read-only."""

from django.contrib import admin
from django.http import HttpRequest

from matching.models import AuditEvent, Order, Trade


class _ProjectedAdmin(admin.ModelAdmin):
    """Rows written only by the projector: shown, never added or edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]


@admin.register(Order)
class OrderAdmin(_ProjectedAdmin):
    list_display = ("order_id", "user", "symbol", "side", "order_type", "tif", "status", "price_ticks",
                    "qty_lots", "filled_lots", "remaining_lots", "client_order_id", "updated_at")
    list_filter = ("status", "symbol", "side", "order_type")
    search_fields = ("=order_id", "client_order_id", "user__username")
    list_select_related = ("user",)
    ordering = ("-created_seq",)


@admin.register(Trade)
class TradeAdmin(_ProjectedAdmin):
    list_display = ("symbol", "trade_id", "price_ticks", "qty_lots", "taker_side", "taker_order_id",
                    "maker_order_id", "taker_user", "maker_user", "executed_at")
    list_filter = ("symbol", "taker_side")
    search_fields = ("=taker_order_id", "=maker_order_id", "taker_user__username", "maker_user__username")
    list_select_related = ("taker_user", "maker_user")
    ordering = ("-seq", "-id")


@admin.register(AuditEvent)
class AuditEventAdmin(_ProjectedAdmin):
    """Order events (projected) and admin commands (actor: who sent them), never changed or deleted."""

    list_display = ("at", "seq", "kind", "order_id", "user", "symbol", "actor")
    list_filter = ("kind", "symbol", ("user", admin.RelatedOnlyFieldListFilter),
                   ("actor", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=order_id", "=seq", "user__username", "actor__username", "symbol")
    list_select_related = ("user", "actor")
    date_hierarchy = "at"
    ordering = ("-seq", "-id")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
