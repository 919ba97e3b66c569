from django.contrib import admin
from django.utils.html import format_html

from brokerage.admin_base import ReadOnlyTenantAdmin, SharedReferenceAdmin

from .explain import explain_snapshot
from .models import (
    ImpliedVolatility,
    MarginSnapshot,
    OracleRejection,
    PriceObservation,
    RiskFreeRate,
    RiskParameterSet,
)


@admin.register(PriceObservation)
class PriceObservationAdmin(SharedReferenceAdmin):
    list_display = ("instrument", "price", "source", "observed_at", "loaded_at")
    list_filter = ("source",)
    search_fields = ("instrument__symbol",)
    list_select_related = ("instrument",)


@admin.register(ImpliedVolatility)
class ImpliedVolatilityAdmin(SharedReferenceAdmin):
    list_display = ("instrument", "volatility", "source", "observed_at")
    search_fields = ("instrument__symbol",)


@admin.register(RiskFreeRate)
class RiskFreeRateAdmin(SharedReferenceAdmin):
    list_display = ("currency", "tenor_days", "rate", "observed_on")


@admin.register(MarginSnapshot)
class MarginSnapshotAdmin(ReadOnlyTenantAdmin):
    """What staff read to explain a requirement: the numbers and the engine's own breakdown."""

    list_display = ("account", "computed_at", "margin_type", "equity", "requirement", "excess",
                    "pm_requirement", "regt_maintenance", "collateral_effective_value")
    list_filter = ("margin_type",)
    search_fields = ("account__number",)
    list_select_related = ("account",)
    exclude = ("result",)
    readonly_fields = ("explanation",)

    @admin.display(description="Explanation")
    def explanation(self, obj: MarginSnapshot) -> str:
        return format_html('<pre class="explanation">{}</pre>',
                           explain_snapshot(obj))


@admin.register(RiskParameterSet)
class RiskParameterSetAdmin(ReadOnlyTenantAdmin):
    list_display = ("version", "status", "base", "created_by", "created_at", "decided_by",
                    "decided_at")
    list_filter = ("status",)
    list_select_related = ("created_by", "decided_by")


@admin.register(OracleRejection)
class OracleRejectionAdmin(SharedReferenceAdmin):
    list_display = ("instrument", "round_id", "failed_check", "message", "rejected_at")
    list_filter = ("failed_check",)

from .calls import admin as calls_admin  # noqa: E402,F401  (calls, restrictions, policies)
