"""REST doors to the eligibility services: /api/v1/applications/ and /api/v1/rule-sets/.

Querysets come from the scoped managers (another firm's id is a 404); a client user's queryset
is further narrowed to the applications guardian grants them (their own). Every write calls a
service and lets its refusal propagate: the one exception handler (`brokerage.api_errors`)
answers 403 not permitted / four eyes, 409 illegal transition / conflict (a concurrent
decision), 422 not eligible at approval time, 400 bad input, all in the one error body.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from guardian.shortcuts import get_objects_for_user
from rest_framework import mixins, permissions
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from brokerage.api import IsFirmStaff, NoInput, TenantViewSet, validated
from brokerage.api_actions import ServiceActions, VersionedRetrieve, decision_endpoints
from brokerage.api_query import FilterBackend, FilterSet
from brokerage.errors import InvalidInput
from brokerage.roles import Role
from brokerage.scope import current_firm
from brokerage.tenancy import is_staff_member, role_of

from .. import services
from ..evaluation import evaluate_account
from ..models import Application, Evaluation, RuleSet
from .serializers import (
    ApplicationCreateSerializer,
    ApplicationSerializer,
    DecisionSerializer,
    DesignateApproverSerializer,
    RejectSerializer,
    ReviewSerializer,
    RuleSetDecisionSerializer,
    RuleSetProposalSerializer,
    RuleSetRejectSerializer,
    RuleSetSerializer,
    WithdrawSerializer,
)


class ApplicationFilterSet(FilterSet):
    state = filters.MultipleChoiceFilter(choices=Application.State.choices)
    account = filters.NumberFilter(field_name="account_id")

    class Meta:
        model = Application
        fields = ["state", "account"]


class ApplicationViewSet(VersionedRetrieve, ServiceActions, mixins.ListModelMixin,
                         mixins.RetrieveModelMixin, TenantViewSet):
    """Portfolio-margin applications: clients see their own, staff their firm's."""

    approval_kind = services.APPLICATION_KIND
    serializer_class = ApplicationSerializer
    filterset_class = ApplicationFilterSet
    filter_backends = [FilterBackend, OrderingFilter]
    ordering_fields = ["created_at", "decided_at"]
    refusal_statuses = (409, 422)  # 422: not eligible when approved

    def scoped_queryset(self) -> QuerySet:
        applications = Application.objects.select_related(
            "account", "client", "rule_set", "created_by", "submitted_by", "reviewed_by",
            "decided_by",
        ).prefetch_related(Prefetch(
            "evaluations", queryset=Evaluation.objects.select_related("rule_set")
            .order_by("-evaluated_at", "-id"),
        )).order_by("-created_at", "-id")
        user = self.request.user
        if is_staff_member(user):
            return applications
        if role_of(user) == Role.CLIENT:
            return get_objects_for_user(user, "eligibility.view_application", klass=applications,
                                        accept_global_perms=False, with_superuser=False)
        return applications.none()

    def answer(self, application: Application, *, created: bool = False) -> Response:
        # Re-read through the queryset: its prefetches feed latest_evaluation.
        fresh = self.get_queryset().filter(pk=application.pk).first() or application
        return super().answer(fresh, created=created)

    def _account(self, account_id: int) -> Account:
        accounts = Account.objects.select_related("client")
        user = self.request.user
        if role_of(user) == Role.CLIENT:
            granted = get_objects_for_user(user, "accounts.view_account", klass=Account.objects.all(),
                                           accept_global_perms=False, with_superuser=False)
            accounts = accounts.filter(Q(client__portal_user=user) | Q(pk__in=granted.values("pk")))
        account = accounts.filter(pk=account_id).first()
        if account is None:  # another firm's, another client's, or none: the same answer
            raise InvalidInput("no such account that you may use", field="account",
                               code="does_not_exist")
        return account

    @extend_schema(request=ApplicationCreateSerializer, responses={201: ApplicationSerializer})
    def create(self, request: Request) -> Response:
        data = validated(ApplicationCreateSerializer, request)
        account = self._account(data["account"])
        return self.answer(services.create_application(
            account=account, actor=request.user, submit=data["submit"]), created=True)

    @extend_schema(request=None, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        return self.act(request, NoInput, lambda application, _: services.submit_application(
            application=application, actor=request.user))

    @extend_schema(request=ReviewSerializer, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"])
    def review(self, request: Request, pk: str | None = None) -> Response:
        return self.act(request, ReviewSerializer, lambda application, data: (
            services.review_application(application=application, reviewer=request.user, **data)))

    approve, reject = decision_endpoints(
        ApplicationSerializer,
        approve=(DecisionSerializer, lambda application, user, data, version: (
            services.approve_application(application=application, approver=user,
                                         reasons=data["reasons"],
                                         expected_version=data.get("version", version)))),
        reject=(RejectSerializer, lambda application, user, data, version: (
            services.reject_application(application=application, approver=user,
                                        reasons=data["reasons"],
                                        expected_version=data.get("version", version)))))

    @extend_schema(request=WithdrawSerializer, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        return self.act(request, WithdrawSerializer, lambda application, data: (
            services.withdraw_application(application=application, actor=request.user,
                                          reason=data["reason"])))

    @extend_schema(request=DesignateApproverSerializer, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"], url_path="designate-approver")
    def designate_approver(self, request: Request, pk: str | None = None) -> Response:
        def designate(application: Application, data: dict) -> Application:
            approver = get_user_model().objects.filter(
                pk=data["approver"], membership__firm=current_firm()).first()
            if approver is None:
                raise InvalidInput("no such staff member in your firm", field="approver",
                                   code="does_not_exist")
            return services.designate_approver(application=application, approver=approver,
                                               actor=request.user)
        return self.act(request, DesignateApproverSerializer, designate)

    @extend_schema(request=None, responses=dict)
    @action(detail=True, methods=["get"])
    def eligibility(self, request: Request, pk: str | None = None) -> Response:
        """The account judged now against the active rule set (nothing is written)."""
        application = self.get_object()
        rule_set = services.active_rule_set(firm=current_firm())
        result, _ = evaluate_account(application.account, rule_set)
        return Response(result.as_json())


class RuleSetViewSet(VersionedRetrieve, ServiceActions, mixins.ListModelMixin,
                     mixins.RetrieveModelMixin, TenantViewSet):
    """The firm's rule-set versions (staff only): propose a change, a second person approves."""

    approval_kind = services.RULE_SET_KIND
    serializer_class = RuleSetSerializer
    permission_classes = [permissions.IsAuthenticated, IsFirmStaff]

    def scoped_queryset(self) -> QuerySet:
        return RuleSet.objects.select_related("proposed_by", "decided_by", "based_on").order_by(
            "-version")

    @extend_schema(request=None, responses=RuleSetSerializer)
    @action(detail=False, methods=["get"])
    def active(self, request: Request) -> Response:
        return self.answer(services.active_rule_set(firm=current_firm()))

    @extend_schema(request=RuleSetProposalSerializer, responses={201: RuleSetSerializer})
    @action(detail=False, methods=["post"])
    def propose(self, request: Request) -> Response:
        data = validated(RuleSetProposalSerializer, request)
        reason = data.pop("reason")
        return self.answer(services.propose_rule_set(
            firm=current_firm(), proposer=request.user, reason=reason, **data), created=True)

    approve, reject = decision_endpoints(
        RuleSetSerializer,
        approve=(RuleSetDecisionSerializer, lambda rule_set, user, data, version: (
            services.approve_rule_set(rule_set=rule_set, approver=user, reason=data["reason"],
                                      expected_version=version))),
        reject=(RuleSetRejectSerializer, lambda rule_set, user, data, version: (
            services.reject_rule_set(rule_set=rule_set, approver=user, reason=data["reason"]))))
