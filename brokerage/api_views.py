"""Views of the core: compliance's door to the audit trail (the firm's own chain, with hashes,
audited), the API schema, the firm admins' API tokens and the API root."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import URLResolver, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import mixins, permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

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


# The API root ----------------------------------------------------------------------------------

def resource_paths(patterns: list, prefix: str = "") -> list[tuple[str, str]]:
    """(path, url name) of every named route in `patterns` that takes no parameter: the lists
    and the singular resources, not one object's URL nor a list's actions."""
    found: list[tuple[str, str]] = []
    for entry in patterns:
        pattern = entry.pattern
        takes_parameters = bool(getattr(pattern, "converters", None)) or bool(
            getattr(getattr(pattern, "regex", None), "groups", 0))
        if takes_parameters:
            continue
        route = prefix + str(pattern).lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            found += resource_paths(entry.url_patterns, route)
        elif entry.name and route and _is_resource(entry):
            found.append((route, entry.name))
    return found


def _is_resource(entry) -> bool:
    # A viewset's routes without parameters are its list and its collection actions
    # (``rule-sets/propose/``): the list is the resource, the actions belong to it.
    actions = getattr(entry.callback, "actions", None)
    return actions is None or "list" in actions.values()


class ApiRootView(APIView):
    """``/api/v1/``: a link to every resource, for any logged-in user (what each one answers
    still depends on the user's firm and role). The routes are read from the URL configuration
    the project passes (`patterns`), so a new resource is listed as soon as it is routed."""

    permission_classes = [permissions.IsAuthenticated]
    patterns: list = []
    extra: dict[str, str] = {}  # name -> url name, beside /api/v1/ (the schema)

    @extend_schema(responses=OpenApiTypes.OBJECT, description=(
        "resource path -> its absolute URL, for every resource of the API"))
    def get(self, request: Request) -> Response:
        base = reverse("api-root")
        links = {route.rstrip("/"): request.build_absolute_uri(base + route)
                 for route, name in resource_paths(self.patterns) if name != "api-root"}
        links.update({name: request.build_absolute_uri(reverse(url_name))
                      for name, url_name in self.extra.items()})
        return Response(dict(sorted(links.items())))
