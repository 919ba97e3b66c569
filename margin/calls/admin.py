"""The desk's read-only views of calls, restrictions and call policies: staff read them here;
every change goes through the services (the admin edits nothing)."""

from django.contrib import admin, messages

from brokerage.admin_base import ReadOnlyTenantAdmin
from brokerage.errors import DomainError

from .models import CallPolicy, CallSatisfaction, MarginCall, Restriction
from .services import start_liquidation


class SatisfactionInline(admin.TabularInline):
    model = CallSatisfaction
    extra = 0
    can_delete = False
    fields = ("manner", "amount", "received_on", "ledger_entry", "note", "recorded_by")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MarginCall)
class MarginCallAdmin(ReadOnlyTenantAdmin):
    list_display = ("id", "account", "kind", "status", "amount", "amount_due", "as_of",
                    "due_date", "rule_source", "cancel_reason")
    list_filter = ("kind", "status")
    search_fields = ("account__number",)
    list_select_related = ("account",)
    ordering = ("due_date", "id")
    inlines = [SatisfactionInline]
    actions = ["liquidate_selected"]

    @admin.action(description="Start the liquidation of the selected overdue calls")
    def liquidate_selected(self, request, queryset) -> None:
        for call in queryset.order_by("pk"):
            try:
                start_liquidation(call=call, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"call #{call.pk}: {exc.message}", messages.ERROR)


@admin.register(Restriction)
class RestrictionAdmin(ReadOnlyTenantAdmin):
    list_display = ("account", "kind", "state", "starts_on", "ends_on", "cause", "closed_on")
    list_filter = ("kind", "state")
    search_fields = ("account__number",)
    list_select_related = ("account",)


@admin.register(CallPolicy)
class CallPolicyAdmin(ReadOnlyTenantAdmin):
    list_display = ("version", "status", "reason", "created_by", "decided_by", "decided_at")
