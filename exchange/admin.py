from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from exchange.models import Instrument
from exchange.services import instruments_set_status

admin.site.site_header = "Exchange simulator administration"
admin.site.site_title = "Exchange simulator"


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name", "tick_size", "lot_size", "status")
    list_filter = ("status",)
    search_fields = ("symbol", "name")
    actions = ("halt", "resume")

    @admin.action(description="Halt trading in selected instruments")
    def halt(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        changed = instruments_set_status(instruments=queryset, status=Instrument.Status.HALTED)
        self.message_user(request, f"Halted {changed} instrument(s).")

    @admin.action(description="Resume trading in selected instruments")
    def resume(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        changed = instruments_set_status(instruments=queryset, status=Instrument.Status.OPEN)
        self.message_user(request, f"Resumed {changed} instrument(s).")
