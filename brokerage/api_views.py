"""Views of the core: compliance's door to the audit trail (the firm's own chain, with hashes,
audited), the API schema, the firm admins' API tokens and the API root."""

from __future__ import annotations

from datetime import date

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import URLResolver, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
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
    NoInput,
    TenantAPIView,
    TenantViewSet,
    username,
    validated,
)
from .api_actions import ServiceActions
from .api_query import BIGINT_MAX
from .errors import InvalidInput, NotFound
from .models import ApiToken
from .roles import Role
from .scope import current_firm
from .tenancy import firm_users, role_of

EXPORT_PARAMETERS = ("file_format", "since", "until", "event_type")


def export_request(request: Request, time_zone: str) -> audit.ExportRequest:
    """The export's query: `file_format` (csv or jsonl; DRF reserves `format`), `since` and
    `until` (days, inclusive, in the firm's zone), `event_type` (repeatable). An unknown
    parameter is refused, naming it."""
    params = request.query_params
    for name in params:
        if name not in EXPORT_PARAMETERS:
            raise InvalidInput(f"unknown parameter {name!r} (known: "
                               f"{', '.join(EXPORT_PARAMETERS)})", field=name,
                               code="unknown_parameter")
    days = {}
    for name in ("since", "until"):
        raw = params.get(name)
        try:
            days[name] = date.fromisoformat(raw) if raw else None
        except ValueError:
            raise InvalidInput(f"{raw!r} is not a date (YYYY-MM-DD)", field=name) from None
    return audit.ExportRequest(file_format=params.get("file_format", "jsonl"),
                               event_types=tuple(params.getlist("event_type")),
                               time_zone=time_zone, **days)


def _may_export(request: Request) -> None:
    if role_of(request.user) not in (Role.COMPLIANCE, Role.FIRM_ADMIN):
        raise PermissionDenied("only compliance officers and firm admins export the trail")


class AuditExportView(TenantAPIView):
    """The firm's own audit trail as a file (csv or jsonl), streamed. The export is audited on
    the firm's chain and ends on a signed checkpoint taken as it starts; its manifest (file
    sha256, rows, range, first and last hash, checkpoint, firm, who) is at the URL of the
    `Link` header (`X-Audit-Export` is the export's event number)."""

    @extend_schema(parameters=[
        OpenApiParameter("file_format", str, enum=list(audit.FILE_FORMATS),
                         description="csv or jsonl (default)"),
        OpenApiParameter("since", OpenApiTypes.DATE, description="first day, inclusive"),
        OpenApiParameter("until", OpenApiTypes.DATE, description="last day, inclusive"),
        OpenApiParameter("event_type", str, many=True, description="repeat for several"),
    ], responses={(200, "text/csv"): OpenApiTypes.STR,
                  (200, "application/x-ndjson"): OpenApiTypes.STR})
    def get(self, request: Request) -> StreamingHttpResponse:
        _may_export(request)
        firm = current_firm()
        export = audit.start_firm_export(firm=firm, actor=request.user,
                                         request=export_request(request, firm.time_zone))
        content_type = ("text/csv; charset=utf-8" if export.after["file_format"] == "csv"
                        else "application/x-ndjson")
        response = StreamingHttpResponse(audit.export_lines(export), content_type=content_type)
        response["Content-Disposition"] = (
            f'attachment; filename="{audit.export_file_name(export)}"')
        response["X-Audit-Export"] = str(export.seq)
        manifest = reverse("audit-export-manifest", kwargs={"seq": export.seq})
        response["Link"] = f'<{request.build_absolute_uri(manifest)}>; rel="describedby"'
        return response


class AuditExportManifestView(TenantAPIView):
    """The signed manifest of one of the firm's exports (`seq`: its `X-Audit-Export`)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, seq: str) -> Response:
        _may_export(request)
        number = int(seq) if seq.isdigit() and int(seq) <= BIGINT_MAX else None
        export = audit.events_for(current_firm()).filter(
            seq=number, event_type=audit.EXPORTED).first() if number else None
        if export is None:
            raise NotFound(f"no export #{seq} of your firm", field="seq")
        return Response(audit.export_manifest(export))


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
