"""Admin for risk: limits (staff view them, superusers change them), accounts and positions (projected,
read-only; superusers deposit or withdraw cash), the held-order queue and the alerts.

Every change here is a command to the matcher's risk stage (risk/services.py), so it applies without a
restart and is journaled. When the matcher does not take it (unavailable, or it refuses), the admin
says so and nothing is saved.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from exchange.admin import PlainDecimalsForm, plain_column
from exchange.templatetags.decimals import plain
from exchange.users import signed_in_user
from matching.admin import MarketMakerFilter, OrderAdmin, OrderDisplay
from matching.engine.types import OrderStatus
from matching.worker.bus import Unavailable
from risk import services
from risk.config import CASH_QUANTUM
from risk.models import Account, HeldOrder, Position, RiskAlert, RiskLimit, UserRiskLimit

NOT_TAKEN = (Unavailable, services.RiskCommandRejected)


def _staff(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_staff


class _StaffViewAdmin(admin.ModelAdmin):
    """Staff see these; only superusers add, change or delete them."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return _staff(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser


class _CommandAdmin(_StaffViewAdmin):
    """Saves and deletes that must reach the matcher: a failure rolls the change back (the admin's
    transaction) and comes back as an error message, never a 500."""

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except NOT_TAKEN as exc:
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, object_id: str,
                    extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except NOT_TAKEN as exc:
            self.message_user(request, f"Not deleted: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each confirmed by the matcher
        return actions


@admin.register(RiskLimit)
class RiskLimitAdmin(_CommandAdmin):
    form = PlainDecimalsForm
    list_display = ("instrument", plain_column("max_position"), plain_column("max_order_size"),
                    plain_column("price_band_pct", "price band %"),
                    plain_column("hold_volume_pct", "hold volume %"),
                    plain_column("reference_daily_volume"), plain_column("reference_price"),
                    plain_column("circuit_move_pct", "circuit move %"), "circuit_window_seconds",
                    "circuit_halt_seconds", "updated_at")
    search_fields = ("instrument__symbol",)
    list_select_related = ("instrument",)

    def get_readonly_fields(self, request: HttpRequest, obj: RiskLimit | None = None) -> tuple[str, ...]:
        return ("instrument",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: RiskLimit, form: forms.Form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.risk_limit_changed(instrument=obj.instrument, admin=signed_in_user(request))

    def delete_model(self, request: HttpRequest, obj: RiskLimit) -> None:
        super().delete_model(request, obj)
        services.risk_limit_changed(instrument=obj.instrument, admin=signed_in_user(request))


@admin.register(UserRiskLimit)
class UserRiskLimitAdmin(_CommandAdmin):
    form = PlainDecimalsForm
    list_display = ("user", "instrument", plain_column("max_position"), plain_column("max_order_size"),
                    "updated_at")
    list_filter = ("instrument",)
    search_fields = ("user__username", "instrument__symbol")
    list_select_related = ("user", "instrument")
    autocomplete_fields = ("user",)

    def get_readonly_fields(self, request: HttpRequest, obj: UserRiskLimit | None = None) -> tuple[str, ...]:
        return ("user", "instrument") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: UserRiskLimit, form: forms.Form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.user_limit_changed(user=obj.user, instrument=obj.instrument, admin=signed_in_user(request))

    def delete_model(self, request: HttpRequest, obj: UserRiskLimit) -> None:
        super().delete_model(request, obj)
        services.user_limit_changed(user=obj.user, instrument=obj.instrument, admin=signed_in_user(request))


class _ProjectedAdmin(_StaffViewAdmin):
    """Rows the projector writes: shown, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class AdjustCashForm(forms.Form):
    username = forms.CharField(max_length=150)
    amount = forms.DecimalField(max_digits=20, decimal_places=4,
                                help_text="positive deposits, negative withdraws (at most 4 decimal places)")

    def clean_username(self) -> Any:
        user = get_user_model().objects.filter(username=self.cleaned_data["username"]).first()
        if user is None:
            raise forms.ValidationError("no such user")
        return user

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("give a non-zero amount")
        return amount


@admin.register(Account)
class AccountAdmin(_ProjectedAdmin):
    list_display = ("user", "cash", "reserved", "available", "stp_default", "seq", "updated_at")
    search_fields = ("user__username",)
    list_select_related = ("user",)
    ordering = ("user__username",)
    change_list_template = "admin/risk/account/change_list.html"

    @admin.display(description="available")
    def available(self, obj: Account) -> Decimal:
        return obj.available

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.adjust_cash_view)
        return [path("adjust-cash/", view, name="risk_account_adjust_cash"), *super().get_urls()]

    def adjust_cash_view(self, request: HttpRequest) -> HttpResponse:
        """Deposit or withdraw cash for one user (superusers): an AdjustCash command to the matcher."""
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers adjust cash.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:risk_account_changelist"))
        form = AdjustCashForm(request.POST or None, initial={"username": request.GET.get("username", "")})
        if request.method == "POST" and form.is_valid():
            user, amount = form.cleaned_data["username"], form.cleaned_data["amount"]
            try:
                reply = services.adjust_cash(user=user, amount=amount, admin=signed_in_user(request))
            except NOT_TAKEN as exc:
                self.message_user(request, f"Not done: {exc}", messages.ERROR)
            else:
                verb = "Deposited" if amount > 0 else "Withdrew"
                self.message_user(request, f"{verb} {abs(amount).quantize(CASH_QUANTUM)} for {user} "
                                           f"(matcher seq {reply.seq}).", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:risk_account_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Deposit or withdraw cash"}
        return TemplateResponse(request, "admin/risk/account/adjust_cash.html", context)


@admin.register(Position)
class PositionAdmin(_ProjectedAdmin):
    list_display = ("user", "instrument", "quantity", "cost", "average_price", "realised", "seq",
                    "updated_at")
    list_filter = ("instrument",)
    search_fields = ("user__username", "instrument__symbol")
    list_select_related = ("user", "instrument")
    fields = ("user", "instrument", "quantity", "cost", "average_price", "realised", "seq", "updated_at")
    readonly_fields = fields

    @admin.display(description="quantity", ordering="qty")
    def quantity(self, obj: Position) -> str:
        """At the instrument's lot precision: 10, not 10.00000000."""
        lot = obj.instrument.lot_size.normalize()
        exponent = lot.as_tuple().exponent
        places = min(0, exponent) if isinstance(exponent, int) else 0
        return plain(obj.qty) if places == 0 else f"{obj.qty.quantize(Decimal(1).scaleb(places)):f}"

    @admin.display(description="average price")
    def average_price(self, obj: Position) -> Decimal | None:
        average = obj.average_price
        return None if average is None else average.quantize(obj.instrument.tick_size.normalize() / 10_000)


def _decide(request: HttpRequest, app_perm: str) -> bool:
    return request.user.is_superuser or (_staff(request) and request.user.has_perm(app_perm))


@admin.register(HeldOrder)
class HeldOrderAdmin(OrderDisplay, _ProjectedAdmin):
    """Orders the hold rule kept back (large against the daily volume): release sends them on to the
    book (checked again first), reject refuses them. Superusers, or staff with risk.change_heldorder."""

    list_display = OrderAdmin.list_display
    list_filter = (MarketMakerFilter, "symbol", "side", "order_type")
    fields = OrderAdmin.fields
    readonly_fields = OrderAdmin.fields
    search_fields = OrderAdmin.search_fields
    list_select_related = ("user",)
    ordering = ("created_seq",)
    actions = ("release", "reject")

    def get_queryset(self, request: HttpRequest) -> QuerySet[HeldOrder]:
        return super().get_queryset(request).filter(status=OrderStatus.HELD)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return _decide(request, "risk.change_heldorder")

    @admin.action(description="Release selected held orders to the book", permissions=["decide"])
    def release(self, request: HttpRequest, queryset: QuerySet[HeldOrder]) -> None:
        self._each(request, queryset, services.release_held_order, "Released")

    @admin.action(description="Reject selected held orders", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[HeldOrder]) -> None:
        self._each(request, queryset, services.reject_held_order, "Rejected")

    def _each(self, request: HttpRequest, queryset: QuerySet[HeldOrder], service: Any, done: str) -> None:
        ok = []
        for order_id in queryset.values_list("order_id", flat=True):
            try:
                service(order_id=order_id, admin=signed_in_user(request))
            except NOT_TAKEN as exc:
                self.message_user(request, f"#{order_id}: {exc}", messages.ERROR)
            else:
                ok.append(order_id)
        if ok:
            self.message_user(request, f"{done} {', '.join(f'#{i}' for i in ok)} (the list updates as the "
                                       "matcher's events are projected).", messages.SUCCESS)


@admin.register(RiskAlert)
class RiskAlertAdmin(_ProjectedAdmin):
    list_display = ("created_at", "seq", "kind", "user", "instrument", "detail", "acknowledged",
                    "acknowledged_by")
    list_filter = ("acknowledged", "kind", "instrument")
    search_fields = ("user__username", "instrument__symbol", "detail")
    list_select_related = ("user", "instrument", "acknowledged_by")
    date_hierarchy = "created_at"
    actions = ("acknowledge",)

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return _decide(request, "risk.change_riskalert")

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[RiskAlert]) -> None:
        count = services.alerts_acknowledge(alert_ids=list(queryset.values_list("pk", flat=True)),
                                            admin=signed_in_user(request))
        self.message_user(request, f"Acknowledged {count} alert(s).")


class AccountInline(admin.StackedInline):
    """A user's balances on their admin page (read-only: the matcher's risk stage owns them)."""

    model = Account
    fields = ("cash", "reserved", "stp_default", "seq", "updated_at")
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class UserWithAccountAdmin(UserAdmin):
    inlines = (*UserAdmin.inlines, AccountInline)
