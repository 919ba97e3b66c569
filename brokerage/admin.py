from django.contrib import admin

from . import audit
from .admin_base import ReadOnlyTenantAdmin
from .models import AuditEvent, Membership
from .scope import current_firm


@admin.register(Membership)
class MembershipAdmin(ReadOnlyTenantAdmin):
    list_display = ("user", "role", "created_at")
    list_filter = ("role",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyTenantAdmin):
    list_display = ("seq", "created_at", "event_type", "actor", "actor_role", "object_type",
                    "object_id", "request_id")
    list_filter = ("event_type",)
    search_fields = ("object_id", "request_id")
    exclude = ()

    def get_queryset(self, request):
        return audit.events_for(current_firm())
