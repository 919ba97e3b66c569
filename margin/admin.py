from django.contrib import admin

from brokerage.admin_base import SharedReferenceAdmin

from .models import ImpliedVolatility, PriceObservation, RiskFreeRate


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
