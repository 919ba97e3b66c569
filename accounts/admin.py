from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied

from brokerage.admin_base import ReadOnlyTenantAdmin, SharedReferenceAdmin, TenantAdmin
from brokerage.scope import current_firm

from . import services
from .models import Account, Client, Instrument, LedgerEntry, Position, RiskDisclosure


class ServiceAdmin(TenantAdmin):
    """Writes go through services (audited); plain admin saves are refused."""

    def save_model(self, request, obj, form, change):
        raise PermissionDenied("use the service actions for this record")


class ClientAdminForm(forms.ModelForm):
    class Meta:
        model = Client
        fields = services.CLIENT_WRITABLE_FIELDS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "portal_user" in self.fields:
            # Only the firm's own client users not linked elsewhere: a foreign id posted anyway
            # is "not one of the available choices", and the service refuses it too.
            self.fields["portal_user"].queryset = services.portal_user_choices(
                client=self.instance if self.instance.pk else None)


@admin.register(Client)
class ClientAdmin(TenantAdmin):
    form = ClientAdminForm
    list_display = ("name", "kind", "email", "options_approval_level", "years_trading_options",
                    "net_worth", "portal_user")
    search_fields = ("name", "email")
    list_filter = ("kind", "options_approval_level", "investment_objective")
    list_select_related = ("portal_user",)

    def save_model(self, request, obj, form, change):
        if change:
            services.update_client(client=obj, actor=request.user,
                                   **{f: form.cleaned_data[f] for f in form.changed_data})
        else:
            data = {f: form.cleaned_data[f] for f in services.CLIENT_WRITABLE_FIELDS
                    if f in form.cleaned_data}
            created = services.create_client(firm=current_firm(), actor=request.user, **data)
            obj.pk = created.pk


@admin.register(RiskDisclosure)
class RiskDisclosureAdmin(ReadOnlyTenantAdmin):
    list_display = ("client", "document", "version", "delivered_at", "acknowledged_at")
    list_filter = ("document",)


class PositionInline(admin.TabularInline):
    model = Position
    fields = ("instrument", "quantity", "cost_basis")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return Position.objects.select_related("instrument")


@admin.register(Account)
class AccountAdmin(ReadOnlyTenantAdmin):
    list_display = ("number", "client", "registration", "margin_type", "status", "opened_on")
    list_filter = ("margin_type", "status", "registration")
    search_fields = ("number", "client__name")
    inlines = [PositionInline]


@admin.register(Position)
class PositionAdmin(ReadOnlyTenantAdmin):
    list_display = ("account", "instrument", "quantity", "cost_basis")
    search_fields = ("account__number", "instrument__symbol")
    list_select_related = ("account", "instrument")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyTenantAdmin):
    list_display = ("account", "kind", "amount", "currency", "effective_at", "memo")
    list_filter = ("kind",)
    search_fields = ("account__number",)
    list_select_related = ("account",)


@admin.register(Instrument)
class InstrumentAdmin(SharedReferenceAdmin):
    list_display = ("symbol", "kind", "product_class", "class_group", "product_group",
                    "multiplier", "strike", "right", "expiry")
    list_filter = ("kind", "product_class")
    search_fields = ("symbol",)
