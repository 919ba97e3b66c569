"""The call's liquidation-plan actions (mixed into ``MarginCallViewSet``):

- ``POST /api/v1/margin-calls/{id}/liquidation-plan/``: propose, or recompute (the plan
  awaiting a decision is superseded); ``GET`` the latest plan;
- ``POST .../liquidation-plan/approve/`` and ``.../reject/``: the second person's decision
  (``brokerage.approvals``; the proposer never decides).

Staff only (the viewset's permissions); another firm's call is a 404.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from brokerage.api import InputSerializer, username, validated
from brokerage.api_actions import (
    ETAG,
    IF_MATCH,
    PRECONDITION_RESPONSES,
    etag,
    require_if_match,
)
from brokerage.errors import NotFound

from . import services
from .models import LiquidationPlan


class LiquidationPlanSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", read_only=True)
    proposed_by = username(allow_null=False)
    decided_by = username()
    greedy_cost = serializers.SerializerMethodField()

    class Meta:
        model = LiquidationPlan
        fields = ["id", "account", "call", "snapshot", "status", "basis", "outcome",
                  "solver_status", "message", "trades", "cost", "spread_cost", "penalty_cost",
                  "equity_before", "equity_after", "requirement_before", "requirement_after",
                  "cushion", "allowed_deficit", "tightening", "rounds", "seconds", "costs",
                  "greedy", "greedy_cost", "proposed_by", "proposed_at", "decided_by",
                  "decided_at", "decision_reason"]
        read_only_fields = fields

    def get_greedy_cost(self, plan: LiquidationPlan) -> str:
        return plan.greedy["cost"]


class ProposePlanInput(InputSerializer):
    pass


class PlanDecisionInput(InputSerializer):
    reason = serializers.CharField(max_length=2000, required=False, default="",
                                   allow_blank=True)


def _latest(call) -> LiquidationPlan:
    plan = (LiquidationPlan.objects.filter(call=call).select_related("account", "proposed_by",
                                                                     "decided_by")
            .order_by("-proposed_at", "-pk").first())
    if plan is None:
        raise NotFound(f"call #{call.pk} has no liquidation plan", field="call")
    return plan


class LiquidationPlanActions:
    # Mixed into MarginCallViewSet (a comment: the schema would take a docstring).

    @extend_schema(methods=["GET"], parameters=[ETAG], responses=LiquidationPlanSerializer)
    @extend_schema(methods=["POST"], request=ProposePlanInput,
                   responses=LiquidationPlanSerializer)
    @action(detail=True, methods=["get", "post"], url_path="liquidation-plan")
    def liquidation_plan(self, request: Request, pk: str | None = None) -> Response:
        call = self.get_object()
        if request.method == "GET":
            plan = _latest(call)  # its ETag: what a decision on it sends back as If-Match
            return Response(LiquidationPlanSerializer(plan).data,
                            headers={"ETag": etag(services.APPROVAL_KIND, plan)})
        validated(ProposePlanInput, request)
        plan = services.propose_plan(actor=request.user, call=call)
        return Response(LiquidationPlanSerializer(plan).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PlanDecisionInput, parameters=[IF_MATCH],
                   responses={200: LiquidationPlanSerializer, **PRECONDITION_RESPONSES})
    @action(detail=True, methods=["post"], url_path="liquidation-plan/approve")
    def approve_liquidation_plan(self, request: Request, pk: str | None = None) -> Response:
        call = self.get_object()
        data = validated(PlanDecisionInput, request)
        plan = _latest(call)
        services.require_approver(plan=plan, actor=request.user)  # a 403 before a 428
        require_if_match(request, services.APPROVAL_KIND, plan)
        plan = services.approve_plan(plan=plan, actor=request.user, **data)
        return Response(LiquidationPlanSerializer(plan).data)

    @extend_schema(request=PlanDecisionInput, parameters=[IF_MATCH],
                   responses={200: LiquidationPlanSerializer, **PRECONDITION_RESPONSES})
    @action(detail=True, methods=["post"], url_path="liquidation-plan/reject")
    def reject_liquidation_plan(self, request: Request, pk: str | None = None) -> Response:
        call = self.get_object()
        data = validated(PlanDecisionInput, request)
        plan = _latest(call)
        require_if_match(request, services.APPROVAL_KIND, plan)
        plan = services.reject_plan(plan=plan, actor=request.user, **data)
        return Response(LiquidationPlanSerializer(plan).data)
