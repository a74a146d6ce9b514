"""Admin for instruments, and what every admin module here shares: decimals shown as people write
them (0.01 and 139.75, not 0.01000000), in lists and in forms."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from exchange.models import Instrument
from exchange.templatetags.decimals import plain
from exchange.users import signed_in_user
from matching.worker.bus import Unavailable
from risk import services as risk_services

admin.site.site_header = "Exchange simulator administration"
admin.site.site_title = "Exchange simulator"


def plain_column(name: str, description: str | None = None) -> Callable[[Any], str]:
    """A list column showing the decimal field `name` as people write it: 0.01, 100, 139.75."""

    @admin.display(description=description or name.replace("_", " "), ordering=name)
    def column(obj: Model) -> str:
        value = getattr(obj, name)
        return admin.site.empty_value_display if value is None else plain(value)

    column.__name__ = name  # the list's CSS class: field-<name>
    return column


class PlainDecimalsForm(forms.ModelForm):
    """A model form whose decimal fields start as people write them (0.01, not 0.01000000)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            value = self.initial.get(name)
            if isinstance(field, forms.DecimalField) and isinstance(value, Decimal) and value.is_finite():
                self.initial[name] = plain(value)


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    """Status, halt reason and end come from the matcher (risk.projection): halt and resume are commands
    to it, applied at once and journaled; the list shows the new status as soon as it is projected."""

    form = PlainDecimalsForm
    list_display = ("symbol", "name", plain_column("tick_size", "tick size"),
                    plain_column("lot_size", "lot size"), "status", "halt_reason", "halted_until")
    list_filter = ("status",)
    search_fields = ("symbol", "name")
    readonly_fields = ("status", "halt_reason", "halted_until", "status_seq")
    actions = ("halt", "resume")

    def save_model(self, request: HttpRequest, obj: Instrument, form: object, change: bool) -> None:
        """Saved, then sent to the matcher as the instrument's risk configuration: a new instrument
        gets its book there at once (through the log, so a replay sees it too), a new tick or lot size
        its cash per tick and lot. If the matcher cannot take it now, its next start sends it."""
        super().save_model(request, obj, form, change)
        try:
            risk_services.risk_limit_changed(instrument=obj, admin=signed_in_user(request))
        except (Unavailable, risk_services.RiskCommandRejected) as exc:
            self.message_user(request, f"{obj.symbol} saved; the matcher takes it at its next start ({exc})",
                              messages.WARNING)

    def has_halt_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or request.user.has_perm("exchange.change_instrument")

    @admin.action(description="Halt trading in selected instruments", permissions=["halt"])
    def halt(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        reason = f"halted by {request.user.get_username()}"
        self._each(request, queryset, "Halt", lambda symbol: risk_services.halt_instrument(
            symbol=symbol, reason=reason, admin=signed_in_user(request)))

    @admin.action(description="Resume trading in selected instruments", permissions=["halt"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        self._each(request, queryset, "Resume", lambda symbol: risk_services.resume_instrument(
            symbol=symbol, admin=signed_in_user(request)))

    def _each(self, request: HttpRequest, queryset: QuerySet[Instrument], what: str,
              send: Callable[[str], object]) -> None:
        done = []
        for symbol in queryset.values_list("symbol", flat=True):
            try:
                send(symbol)
            except (Unavailable, risk_services.RiskCommandRejected) as exc:
                self.message_user(request, f"{what} {symbol}: {exc}", messages.ERROR)
            else:
                done.append(symbol)
        if done:
            self.message_user(request, f"{what} sent to the matcher for {', '.join(done)}.", messages.SUCCESS)
