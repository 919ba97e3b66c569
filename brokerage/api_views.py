"""Views of the core: compliance's door to the audit trail (the firm's own chain, with hashes,
audited), the API schema and the firm admins' API tokens."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import mixins, permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from . import audit, tokens
from .api import (
    InputSerializer,
    IsFirmAdmin,
    IsFirmMember,
    NoInput,
    TenantAPIView,
    TenantViewSet,
    username,
    validated,
)
from .api_actions import ServiceActions
from .errors import NotFound
from .models import ApiToken
from .roles import Role
from .scope import current_firm
from .tenancy import firm_users, role_of


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


# API tokens ------------------------------------------------------------------------------------

class ApiTokenSerializer(serializers.ModelSerializer):
    user = username(allow_null=False)
    created_by = username()
    revoked_by = username()

    class Meta:
        model = ApiToken
        fields = ["id", "prefix", "user", "read_only", "expires_at", "created_by", "created_at",
                  "revoked_at", "revoked_by", "last_used_at", "last_used_from"]
        read_only_fields = fields


class IssuedTokenSerializer(ApiTokenSerializer):
    token = serializers.SerializerMethodField(help_text="the secret: shown this once, stored "
                                                        "only as its sha256")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, row: ApiToken) -> str:
        return self.context["secret"]


class ApiTokenInput(InputSerializer):
    user = serializers.CharField(max_length=150, required=False,
                                 help_text="the username the token acts as (default: you)")
    read_only = serializers.BooleanField(default=False)
    expires_days = serializers.IntegerField(min_value=1, max_value=tokens.MAX_EXPIRES_DAYS,
                                            required=False, allow_null=True, default=None,
                                            help_text="null or absent: the token never expires")


class ApiTokenViewSet(ServiceActions, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                      TenantViewSet):
    """The firm's API tokens (never their secrets): its firm admins list, create and revoke
    them. A token acts as its user, with that user's role; `Authorization: Bearer <token>`."""

    serializer_class = ApiTokenSerializer
    permission_classes = [permissions.IsAuthenticated, IsFirmAdmin]

    def scoped_queryset(self) -> QuerySet:
        return ApiToken.objects.select_related("user", "created_by", "revoked_by")

    @extend_schema(request=ApiTokenInput, responses={201: IssuedTokenSerializer})
    def create(self, request: Request) -> Response:
        data = validated(ApiTokenInput, request)
        user = request.user
        if data.get("user") is not None:
            user = firm_users(current_firm()).filter(username=data["user"]).first()
            if user is None:
                raise NotFound(f"no user {data['user']!r} in your firm", field="user")
        issued = tokens.create_api_token(user=user, actor=request.user,
                                         read_only=data["read_only"],
                                         expires_days=data["expires_days"])
        return Response(IssuedTokenSerializer(issued.token, context={"secret": issued.secret}).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=NoInput, responses=ApiTokenSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        return self.act(request, NoInput,
                        lambda token, data: tokens.revoke_api_token(token=token,
                                                                    actor=request.user))

