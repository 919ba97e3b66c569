"""Views of the core: compliance's door to the audit trail (the firm's own chain, with hashes,
audited) and the API schema."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import permissions, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from . import audit
from .api import IsFirmMember, TenantAPIView
from .roles import Role
from .scope import current_firm
from .tenancy import role_of


class AuditExportView(TenantAPIView):
    permission_classes = [permissions.IsAuthenticated, IsFirmMember]

    @extend_schema(responses=inline_serializer("AuditExport", {
        "chain": serializers.CharField(),
        "events": serializers.ListField(child=serializers.DictField()),
        "verified": serializers.BooleanField(help_text="the chain's hashes verify"),
    }))
    def get(self, request: Request) -> Response:
        if role_of(request.user) not in (Role.COMPLIANCE, Role.FIRM_ADMIN):
            raise PermissionDenied("only compliance officers and firm admins export the trail")
        firm = current_firm()
        rows = audit.export_for_firm(firm=firm, actor=request.user)
        return Response({"chain": audit.chain_key(firm), "events": rows,
                         "verified": audit.verify_chain(audit.chain_key(firm)) is None})


class SchemaView(SpectacularAPIView):
    """``/api/schema/``: the OpenAPI document for any logged-in user, firm member or not.

    The schema is the same for every firm and for none (it is generated without a firm in
    scope, see SPECTACULAR_SETTINGS). An anonymous request is a 401 in the one error body,
    as JSON: the schema's own renderers would answer an error in YAML.
    """

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
