"""Views of the core: compliance's door to the audit trail (the firm's own chain, with hashes,
audited), the API schema, the firm admins' API tokens and the API root."""

from __future__ import annotations

from datetime import date

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import URLResolver, reverse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework import mixins, permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
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
    TenantScopedMixin,
    TenantViewSet,
    username,
    validated,
)
from .api_actions import ServiceActions
from .api_query import BIGINT_MAX, CursorPagination, FilterSet
from .errors import InvalidInput, NotFound
from .models import ApiToken, AuditEvent, Firm
from .roles import Role
from .scope import current_firm
from .tenancy import firm_of, firm_users, role_of

#: the roles that read the firm's audit trail (its export and its events)
TRAIL_READERS = frozenset({Role.COMPLIANCE, Role.FIRM_ADMIN})


class ReadsTheTrail(permissions.BasePermission):
    message = "only compliance officers and firm admins read the audit trail"

    def has_permission(self, request, view) -> bool:
        return role_of(request.user) in TRAIL_READERS

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
    if role_of(request.user) not in TRAIL_READERS:
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
        return _json_refusal(self, super().handle_exception(exc))


def _json_refusal(view: APIView, response: Response) -> Response:
    # A refusal is the one error body in JSON, whatever the view renders when it answers.
    view.request.accepted_renderer = JSONRenderer()
    view.request.accepted_media_type = JSONRenderer.media_type
    return response


class ApiDocsView(SpectacularSwaggerSplitView):
    """``/api/docs/``: Swagger UI over the schema. The split view: the page loads its
    initialisation from ``?script`` (no inline script), and the UI's assets come from the
    sidecar package through the static files (no network)."""

    def handle_exception(self, exc: Exception) -> Response:
        return _json_refusal(self, super().handle_exception(exc))


class ApiRedocView(SpectacularRedocView):
    """``/api/docs/redoc/``: Redoc over the schema, from the sidecar's bundle; the template has
    no inline script and loads no web font."""

    template_name = "api/redoc.html"

    def handle_exception(self, exc: Exception) -> Response:
        return _json_refusal(self, super().handle_exception(exc))


# API tokens ------------------------------------------------------------------------------------

class ApiTokenSerializer(serializers.ModelSerializer):
    user = username(allow_null=False)
    created_by = username()
    revoked_by = username()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "user", "read_only", "expires_at", "created_by",
                  "created_at",
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
    name = serializers.CharField(max_length=tokens.NAME_LENGTH, required=False, default="",
                                 allow_blank=True,
                                 help_text="what the token is for, e.g. nightly risk export")
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
                # a body naming what does not exist is a bad body (as an application's account)
                raise InvalidInput(f"no user {data['user']!r} in your firm", field="user",
                                   code="does_not_exist")
        issued = tokens.create_api_token(user=user, actor=request.user,
                                         read_only=data["read_only"],
                                         expires_days=data["expires_days"],
                                         name=data["name"])
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


# The firm and its audit trail -------------------------------------------------------------------

class FirmSerializer(serializers.ModelSerializer):
    class Meta:
        model = Firm
        fields = ["id", "name", "slug", "exchange_calendar", "time_zone", "created_at"]
        read_only_fields = fields


class FirmView(TenantAPIView):
    """The caller's own firm."""

    @extend_schema(responses=FirmSerializer)
    def get(self, request: Request) -> Response:
        return Response(FirmSerializer(current_firm()).data)


def _firm_users(request) -> QuerySet:
    # An actor filter offers the firm's own users only (none while the schema is built).
    if request is None or firm_of(request.user) is None:
        return get_user_model()._base_manager.none()
    return firm_users(current_firm())


class AuditEventFilterSet(FilterSet):
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte",
                                              help_text="from this moment on (ISO 8601)")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt",
                                               help_text="before this moment (ISO 8601)")
    actor = extend_schema_field(OpenApiTypes.STR)(filters.ModelMultipleChoiceFilter(
        field_name="actor__username", to_field_name="username", queryset=_firm_users,
        help_text="usernames of your firm (repeat the parameter for several)"))
    event_type = filters.CharFilter(help_text="exactly, e.g. `ledger.posted`")
    event_type_prefix = filters.CharFilter(field_name="event_type", lookup_expr="startswith",
                                           help_text="e.g. `margin_call.`")
    object_type = filters.CharFilter(help_text="app_label.model, e.g. `accounts.ledgerentry`")
    object_id = filters.CharFilter()

    class Meta:
        model = AuditEvent
        fields = ["created_after", "created_before", "actor", "event_type", "object_type",
                  "object_id"]


class AuditEventSerializer(serializers.ModelSerializer):
    actor = username()

    class Meta:
        model = AuditEvent
        fields = ["seq", "event_type", "actor", "actor_role", "object_type", "object_id",
                  "before", "after", "request_id", "created_at", "prev_hash", "hash"]
        read_only_fields = fields


class LatestFirst(CursorPagination):
    ordering = ("-seq",)


class AuditEventListView(TenantScopedMixin, ListAPIView):
    """The firm's audit trail, newest first (a page per cursor), read-only: compliance officers
    and firm admins, the roles that export it."""

    serializer_class = AuditEventSerializer
    permission_classes = [permissions.IsAuthenticated, ReadsTheTrail]
    pagination_class = LatestFirst
    filterset_class = AuditEventFilterSet

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        return audit.events_for(current_firm()).select_related("actor")
