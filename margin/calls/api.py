"""REST doors to calls: ``/api/v1/margin-calls/``, ``/api/v1/accounts/`` with each account's
current margin and restrictions, ``/api/v1/margin-record/`` (the FINRA 4220 rows of a day), and
the two changes that need two people: ``/api/v1/call-policies/`` (propose a version, approve or
reject it) and ``/api/v1/restrictions/`` (ask for a waiver, approve or reject it).

Staff of the firm read everything and act through the services; a client reads the accounts
guardian grants them and those accounts' calls, read-only. Another firm's object is a 404;
refusals propagate to the one exception handler (``brokerage.api_errors``).
"""

from __future__ import annotations

from datetime import date

from django.db.models import Prefetch, QuerySet
from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from guardian.shortcuts import get_objects_for_user
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from accounts.services import set_regime
from brokerage import approvals
from brokerage.api import (
    InputSerializer,
    IsFirmStaff,
    TenantAPIView,
    TenantViewSet,
    username,
    validated,
)
from brokerage.api_actions import (
    ETAG,
    IF_MATCH,
    PRECONDITION_RESPONSES,
    ServiceActions,
    VersionedRetrieve,
    decision_endpoints,
    etag,
    require_if_match,
)
from brokerage.api_query import FilterBackend, FilterSet
from brokerage.errors import IllegalTransition, InvalidInput
from brokerage.scope import current_firm
from brokerage.tenancy import is_staff_member

from ..liquidation.api import LiquidationPlanActions
from ..models import AccountMargin
from . import extensions, policy, restrictions, services
from .deficits import Facts, Thresholds, warnings
from .models import (
    CallExtension,
    CallNotice,
    CallPolicy,
    CallSatisfaction,
    MarginCall,
    Restriction,
)
from .policy import active_policy
from .record import account_csv, rows_for


def visible_accounts(user) -> QuerySet[Account]:
    """The firm's accounts for staff; for anyone else, the accounts guardian grants them."""
    accounts = Account.objects.select_related("client").order_by("number")
    if is_staff_member(user):
        return accounts
    return get_objects_for_user(user, "accounts.view_account", klass=accounts,
                                accept_global_perms=False, with_superuser=False)


# Accounts --------------------------------------------------------------------------------------

class AccountSerializer(serializers.ModelSerializer):
    client = serializers.CharField(source="client.name", read_only=True)

    class Meta:
        model = Account
        fields = ["number", "client", "registration", "margin_type", "status", "base_currency",
                  "regime"]
        read_only_fields = fields


class AccountFilterSet(FilterSet):
    """``?regime=legacy_pdt``: the accounts the desk migrates to the intraday standard before
    20 October 2027 (``margin.intraday.regime``)."""

    regime = filters.ChoiceFilter(choices=Account.Regime.choices)
    margin_type = filters.ChoiceFilter(choices=Account.MarginType.choices)
    status = filters.ChoiceFilter(choices=Account.Status.choices)

    class Meta:
        model = Account
        fields = ["regime", "margin_type", "status"]


class RegimeInput(InputSerializer):
    regime = serializers.ChoiceField(choices=Account.Regime.choices)
    reason = serializers.CharField(max_length=300, help_text="why the account moves")


class CurrentMarginSerializer(serializers.Serializer):
    account = serializers.CharField()
    equity = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    requirement = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    excess = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    computed_at = serializers.DateTimeField(allow_null=True)
    health_factor = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    flag = serializers.CharField(allow_blank=True)
    warnings = serializers.ListField(child=serializers.DictField())


class RestrictionSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", read_only=True)

    class Meta:
        model = Restriction
        fields = ["id", "account", "kind", "state", "starts_on", "ends_on", "cause", "call",
                  "closed_on", "closed_reason"]
        read_only_fields = fields


class AccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """A firm's accounts by number: staff see all, a client the accounts granted to them."""

    serializer_class = AccountSerializer
    lookup_field = "number"
    filterset_class = AccountFilterSet

    def scoped_queryset(self) -> QuerySet:
        return visible_accounts(self.request.user)

    @extend_schema(request=RegimeInput, responses=AccountSerializer)
    @action(detail=True, methods=["post"], url_path="regime",
            permission_classes=[IsAuthenticated, IsFirmStaff])
    def regime(self, request: Request, number: str | None = None) -> Response:
        """Move the account between the legacy PDT treatment and the intraday margin standard
        (the firm's admin or risk officer; audited)."""
        account = self.get_object()
        data = validated(RegimeInput, request)
        moved = set_regime(account=account, actor=request.user, **data)
        return Response(AccountSerializer(Account.objects.select_related("client").get(
            pk=moved.pk)).data)

    # Routed in margin.api.urls as ``accounts/{number}/margin`` (no trailing slash).
    @extend_schema(responses=CurrentMarginSerializer)
    def margin(self, request: Request, number: str | None = None) -> Response:
        account = self.get_object()
        current = AccountMargin.objects.filter(account=account).first()
        return Response(CurrentMarginSerializer(_current(account, current)).data)

    @extend_schema(responses=RestrictionSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="restrictions")
    def restrictions(self, request: Request, number: str | None = None) -> Response:
        account = self.get_object()
        rows = Restriction.objects.filter(account=account).select_related("account").order_by(
            "-starts_on", "-pk")
        return Response(RestrictionSerializer(rows, many=True).data)


def _current(account: Account, current: AccountMargin | None) -> dict:
    """The account's current margin and what the desk should see forming between closes."""
    shown = {"account": account.number, "equity": None, "requirement": None, "excess": None,
             "computed_at": None, "health_factor": None, "flag": "", "warnings": []}
    if current is None or current.equity is None:
        return shown
    health = current.health_factor  # the last valuation's, snapshot kept or not
    shown.update(equity=current.equity, requirement=current.requirement, excess=current.excess,
                 computed_at=current.computed_at, health_factor=health, flag=current.flag)
    facts = Facts(account.margin_type, current.equity, current.requirement,
                  holds_unlisted_derivatives=account.client.holds_unlisted_derivatives,
                  health_factor=float(health) if health is not None else None)
    open_kinds = set(MarginCall.objects.filter(account=account,
                                               status__in=MarginCall.OPEN_STATES)
                     .values_list("kind", flat=True))
    shown["warnings"] = warnings(facts, Thresholds.of(active_policy(account.firm)), open_kinds)
    return shown


# Margin calls ----------------------------------------------------------------------------------

class SatisfactionSerializer(serializers.ModelSerializer):
    recorded_by = username()

    class Meta:
        model = CallSatisfaction
        fields = ["id", "manner", "amount", "received_on", "ledger_entry", "note",
                  "recorded_by", "recorded_at"]
        read_only_fields = fields


class ExtensionSerializer(serializers.ModelSerializer):
    requested_by = username(allow_null=False)
    decided_by = username()

    class Meta:
        model = CallExtension
        fields = ["id", "authority", "state", "request_number", "request_date",
                  "days_requested", "reason_code", "comment", "filing_id", "due_date_before",
                  "new_due_date", "requested_by", "requested_at", "decided_by", "outcome_on"]
        read_only_fields = fields


class NoticeSerializer(serializers.ModelSerializer):
    class Meta:
        model = CallNotice
        fields = ["id", "event", "recipient", "subject", "created_at"]
        read_only_fields = fields


class MarginCallSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", read_only=True)
    policy_version = serializers.IntegerField(source="policy.version", read_only=True)

    class Meta:
        model = MarginCall
        fields = ["id", "account", "kind", "status", "amount", "amount_due", "due_date",
                  "as_of", "trade_date", "due_at", "health_factor", "rule", "rule_source",
                  "policy_version", "cancel_reason", "met_by_liquidation", "snapshot",
                  "closed_on"]
        read_only_fields = fields


class MarginCallDetailSerializer(MarginCallSerializer):
    satisfactions = SatisfactionSerializer(many=True, read_only=True)
    extensions = ExtensionSerializer(many=True, read_only=True)
    notices = NoticeSerializer(many=True, read_only=True)

    class Meta(MarginCallSerializer.Meta):
        fields = [*MarginCallSerializer.Meta.fields, "equity", "requirement",
                  "satisfactions", "extensions", "notices"]
        read_only_fields = fields


class MarginCallFilterSet(FilterSet):
    account = filters.CharFilter(field_name="account__number")
    kind = filters.MultipleChoiceFilter(choices=MarginCall.Kind.choices)
    status = filters.MultipleChoiceFilter(choices=MarginCall.Status.choices)
    due_date = filters.DateFilter()
    due_before = filters.DateFilter(field_name="due_date", lookup_expr="lte")
    due_after = filters.DateFilter(field_name="due_date", lookup_expr="gte")

    class Meta:
        model = MarginCall
        fields = ["account", "kind", "status", "due_date"]


class SatisfactionInput(InputSerializer):
    manner = serializers.ChoiceField(choices=[m for m in CallSatisfaction.Manner.values
                                              if m not in ("cash", "liquidation")])
    amount = serializers.DecimalField(max_digits=20, decimal_places=2)
    received_on = serializers.DateField(required=False)
    note = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class ExtensionInput(InputSerializer):
    days = serializers.IntegerField(min_value=1, max_value=30)
    reason_code = serializers.CharField(max_length=20)
    comment = serializers.CharField(max_length=2000, required=False, default="",
                                    allow_blank=True)


class ExtensionDecisionInput(InputSerializer):
    approve = serializers.BooleanField()
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class ExtensionOutcomeInput(InputSerializer):
    granted = serializers.BooleanField()
    filing_id = serializers.CharField(max_length=40, required=False, default="",
                                      allow_blank=True)


class CancelInput(InputSerializer):
    reason = serializers.ChoiceField(choices=MarginCall.CancelReason.choices)
    note = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class MarginCallViewSet(LiquidationPlanActions, ServiceActions, mixins.ListModelMixin,
                        mixins.RetrieveModelMixin, TenantViewSet):
    """Margin calls by due date: staff see and work the firm's, a client reads their own."""

    filterset_class = MarginCallFilterSet
    filter_backends = [FilterBackend, OrderingFilter]
    ordering_fields = ["due_date", "amount", "as_of"]

    def get_serializer_class(self):
        return MarginCallSerializer if self.action == "list" else MarginCallDetailSerializer

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return super().get_permissions()
        return [IsAuthenticated(), IsFirmStaff()]

    def scoped_queryset(self) -> QuerySet:
        calls = MarginCall.objects.select_related("account", "policy").order_by("due_date", "pk")
        if self.action != "list":
            calls = calls.prefetch_related(
                Prefetch("satisfactions", CallSatisfaction.objects.select_related(
                    "recorded_by").order_by("pk")),
                Prefetch("extensions", CallExtension.objects.select_related(
                    "requested_by", "decided_by").order_by("request_number")),
                Prefetch("notices", CallNotice.objects.order_by("pk")))
        if is_staff_member(self.request.user):
            return calls
        return calls.filter(account__in=visible_accounts(self.request.user))

    def _fresh(self, call: MarginCall) -> MarginCall:
        return self.scoped_queryset().get(pk=call.pk)

    @extend_schema(request=SatisfactionInput, responses=MarginCallDetailSerializer)
    @action(detail=True, methods=["post"])
    def satisfactions(self, request: Request, pk: str | None = None) -> Response:
        return self.act(request, SatisfactionInput, lambda call, data: self._fresh(
            services.record_satisfaction(call=call, actor=request.user, **data)))

    @extend_schema(request=ExtensionInput, responses=MarginCallDetailSerializer)
    @action(detail=True, methods=["post"])
    def extensions(self, request: Request, pk: str | None = None) -> Response:
        def ask(call, data):
            extensions.request_extension(call=call, actor=request.user, **data)
            return self._fresh(call)
        return self.act(request, ExtensionInput, ask)

    @extend_schema(parameters=[ETAG])
    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        # The ETag a decision on the extension awaiting one needs (If-Match), when there is one.
        call = self.get_object()
        proposed = call.extensions.filter(state="proposed").order_by("-request_number").first()
        headers = {"ETag": etag(extensions.APPROVAL_KIND, proposed)} if proposed else None
        return Response(self.get_serializer(call).data, headers=headers)

    @extend_schema(request=ExtensionDecisionInput, parameters=[IF_MATCH],
                   responses={200: MarginCallDetailSerializer, **PRECONDITION_RESPONSES})
    @action(detail=True, methods=["post"], url_path="extension-decision")
    def extension_decision(self, request: Request, pk: str | None = None) -> Response:
        call = self.get_object()
        data = validated(ExtensionDecisionInput, request)
        extension = _in_progress(call, "proposed")
        require_if_match(request, extensions.APPROVAL_KIND, extension)
        extensions.decide_extension(extension=extension, actor=request.user, **data)
        return self.answer(self._fresh(call))

    @extend_schema(request=ExtensionOutcomeInput, responses=MarginCallDetailSerializer)
    @action(detail=True, methods=["post"], url_path="extension-outcome")
    def extension_outcome(self, request: Request, pk: str | None = None) -> Response:
        def record(call, data):
            extensions.record_outcome(extension=_in_progress(call, "requested"),
                                      actor=request.user, **data)
            return self._fresh(call)
        return self.act(request, ExtensionOutcomeInput, record)

    @extend_schema(request=CancelInput, responses=MarginCallDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self.act(request, CancelInput, lambda call, data: self._fresh(
            services.cancel_call(call=call, actor=request.user, **data)))


def _in_progress(call: MarginCall, state: str) -> CallExtension:
    found = call.extensions.filter(state=state).order_by("-request_number").first()
    if found is None:
        raise IllegalTransition(f"call #{call.pk} has no extension {state}",
                                field="extension")
    return found


# The FINRA 4220 record ------------------------------------------------------------------------

class RecordRowSerializer(serializers.Serializer):
    date = serializers.CharField()
    account = serializers.CharField()
    call = serializers.CharField()
    kind = serializers.CharField()
    rule = serializers.CharField()
    as_of = serializers.CharField()
    due_date = serializers.CharField()
    amount_required = serializers.CharField()
    amount_due = serializers.CharField()
    status = serializers.CharField()
    met_on = serializers.CharField(allow_blank=True)
    manner = serializers.CharField(allow_blank=True)
    amount_received = serializers.CharField(allow_blank=True)


class MarginRecordView(TenantAPIView):
    """The FINRA 4220 rows of one day (``?date=YYYY-MM-DD``): staff only."""

    permission_classes = [IsAuthenticated, IsFirmStaff]

    @extend_schema(parameters=[OpenApiParameter("date", str, required=True)],
                   responses=RecordRowSerializer(many=True))
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("date", "")
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(f"{raw!r} is not a date (YYYY-MM-DD)", field="date") from None
        return Response(rows_for(day))


class MarginReportView(TenantAPIView):
    """The daily margin report (``?date=YYYY-MM-DD``) as CSV, for compliance: each account's
    requirement, equity and excess as the day ended and its open calls. Staff only."""

    permission_classes = [IsAuthenticated, IsFirmStaff]

    @extend_schema(parameters=[OpenApiParameter("date", str, required=True)],
                   responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request) -> HttpResponse:
        raw = request.query_params.get("date", "")
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(f"{raw!r} is not a date (YYYY-MM-DD)", field="date") from None
        response = HttpResponse(account_csv(day), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="margin-report-{current_firm().slug}-{day}.csv"')
        return response


# Changes that need two people (brokerage.approvals) -------------------------------------------

class DecisionInput(InputSerializer):
    reason = serializers.CharField(max_length=2000, allow_blank=True, default="")


class RejectInput(InputSerializer):
    """A rejection says why."""

    reason = serializers.CharField(max_length=2000)


class CallPolicySerializer(serializers.ModelSerializer):
    created_by = username()
    decided_by = username()

    class Meta:
        model = CallPolicy
        fields = ["id", "version", "status", "rows", "reason", "drafted_on", "created_by",
                  "created_at", "decided_by", "decided_at", "decision_reason"]
        read_only_fields = fields


class CallPolicyProposalInput(InputSerializer):
    # An object: the service checks every row named and its value (errors name values.<row>).
    values = serializers.DictField(help_text="the rows to change, name -> value (stricter than "
                                             "the platform's only)")
    reason = serializers.CharField(max_length=2000)


class CallPolicyViewSet(VersionedRetrieve, ServiceActions, mixins.ListModelMixin,
                        mixins.RetrieveModelMixin, TenantViewSet):
    """The firm's call-policy versions (each row with its source tag and citation): staff
    read; firm admins, risk and compliance officers propose and a second one decides."""

    approval_kind = policy.APPROVAL_KIND
    serializer_class = CallPolicySerializer
    permission_classes = [IsAuthenticated, IsFirmStaff]

    def scoped_queryset(self) -> QuerySet:
        active_policy(current_firm())  # version 1, the platform default, adopted on first use
        return CallPolicy.objects.select_related("created_by", "decided_by").order_by(
            "-version")

    @extend_schema(request=CallPolicyProposalInput, responses={201: CallPolicySerializer})
    def create(self, request: Request) -> Response:
        data = validated(CallPolicyProposalInput, request)
        return self.answer(policy.propose_policy(firm=current_firm(), actor=request.user,
                                                 values=data["values"], reason=data["reason"]),
                           created=True)

    approve, reject = decision_endpoints(
        CallPolicySerializer,
        approve=(DecisionInput, lambda proposal, user, data, version: policy.approve_policy(
            proposal=proposal, actor=user, reason=data["reason"])),
        reject=(RejectInput, lambda proposal, user, data, version: policy.reject_policy(
            proposal=proposal, actor=user, reason=data["reason"])))


class WaiverSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    requested_by = serializers.CharField()
    requested_at = serializers.DateTimeField()
    reason = serializers.CharField()


class RestrictionDetailSerializer(RestrictionSerializer):
    waiver = serializers.SerializerMethodField(help_text="the latest waiver asked for (null: "
                                                         "none)")

    class Meta(RestrictionSerializer.Meta):
        fields = [*RestrictionSerializer.Meta.fields, "waiver"]
        read_only_fields = fields

    @extend_schema_field(WaiverSerializer(allow_null=True))
    def get_waiver(self, restriction: Restriction) -> dict | None:
        found = approvals.request_for(kind=restrictions.APPROVAL_KIND, subject=restriction)
        if found is None:
            return None
        return {"id": found.pk, "state": found.state,
                "requested_by": found.requested_by.username if found.requested_by else "",
                "requested_at": found.requested_at,
                "reason": (found.payload or {}).get("reason", "")}


class RestrictionFilterSet(FilterSet):
    account = filters.CharFilter(field_name="account__number")
    kind = filters.MultipleChoiceFilter(choices=Restriction.Kind.choices)
    state = filters.MultipleChoiceFilter(choices=Restriction.State.choices)

    class Meta:
        model = Restriction
        fields = ["account", "kind", "state"]


class WaiverInput(InputSerializer):
    reason = serializers.CharField(max_length=2000, help_text="why it is waived (kept on file)")


class RestrictionViewSet(VersionedRetrieve, ServiceActions, mixins.ListModelMixin,
                         mixins.RetrieveModelMixin, TenantViewSet):
    """The firm's restrictions: staff read; a firm admin or compliance officer asks for a
    waiver, a second one decides it (two officers, in writing: rule book section 1)."""

    approval_kind = restrictions.APPROVAL_KIND
    permission_classes = [IsAuthenticated, IsFirmStaff]
    filterset_class = RestrictionFilterSet

    def get_serializer_class(self):
        return RestrictionSerializer if self.action == "list" else RestrictionDetailSerializer

    def scoped_queryset(self) -> QuerySet:
        return Restriction.objects.select_related("account").order_by("-starts_on", "-pk")

    @extend_schema(request=WaiverInput, responses=RestrictionDetailSerializer)
    @action(detail=True, methods=["post"])
    def waiver(self, request: Request, pk: str | None = None) -> Response:
        def ask(restriction, data):
            restrictions.request_waiver(restriction=restriction, actor=request.user, **data)
            return Restriction.objects.select_related("account").get(pk=restriction.pk)
        return self.act(request, WaiverInput, ask)

    approve, reject = decision_endpoints(
        RestrictionDetailSerializer,
        approve=(DecisionInput, lambda restriction, user, data, version: (
            restrictions.decide_waiver(restriction=restriction, actor=user, approve=True,
                                       reason=data["reason"]))),
        reject=(RejectInput, lambda restriction, user, data, version: restrictions.decide_waiver(
            restriction=restriction, actor=user, approve=False, reason=data["reason"])))
