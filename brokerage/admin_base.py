"""Admin classes scoped to the staff member's firm.

Tenant staff hold no global model permission: what they may do comes from their role
(`brokerage.roles.can`). Querysets come from the scoped default manager, so another firm's
object is simply not found (404). Platform users (a PlatformRole, no firm) see nothing and
change nothing here: their cross-firm reads go through the audited compliance export. Times
show in the firm's zone (TenantScopeMiddleware activates it).
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404

from .roles import can
from .scope import current_firm_or_none
from .tenancy import role_of


class TenantAdmin(admin.ModelAdmin):
    readonly_fields: tuple[str, ...] = ()
    exclude = ("firm",)

    def _allowed(self, request, action: str) -> bool:
        if current_firm_or_none() is None:
            return False
        return can(role_of(request.user), self.model._meta.label_lower, action)

    def has_module_permission(self, request) -> bool:
        return self._allowed(request, "view")

    def has_view_permission(self, request, obj=None) -> bool:
        return self._allowed(request, "view")

    def has_add_permission(self, request) -> bool:
        return self._allowed(request, "add")

    def has_change_permission(self, request, obj=None) -> bool:
        return self._allowed(request, "change")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        if current_firm_or_none() is None:
            # No firm, no tenant rows: a clean 403 rather than the scope's NoFirmInScope (500).
            raise PermissionDenied("the desk shows a firm's data to that firm's staff only")
        return self.model._default_manager.get_queryset()

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Another firm's object (or a missing one) is a 404, never a hint that it exists.
        raise Http404(f"no {opts.verbose_name} with id {object_id!r} in your firm")

    def save_model(self, request, obj, form, change) -> None:
        if not change and hasattr(obj, "firm_id") and obj.firm_id is None:
            obj.firm = current_firm_or_none()
        super().save_model(request, obj, form, change)


class ReadOnlyTenantAdmin(TenantAdmin):
    """Append-only records: the admin shows them and never edits them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class SharedReferenceAdmin(TenantAdmin):
    """Market reference data: every staff member reads it; changes come through loaders."""

    exclude = ()

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
