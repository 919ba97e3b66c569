"""``/api/v1/risk-parameters/``: a firm's parameter versions; propose, approve, reject.

Staff of the firm read; firm admins and risk officers propose and decide (four eyes: the
service refuses the proposer as decider). Another firm's version is a 404.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from brokerage.api import IsFirmStaff, TenantViewSet, validated
from brokerage.errors import DomainError
from brokerage.scope import current_firm

from .. import services
from ..models import RiskParameterSet


class RiskParameterSetSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = RiskParameterSet
        fields = ["id", "version", "status", "base", "overrides", "reason", "drafted_on",
                  "created_by", "created_at", "decided_by", "decided_at", "decision_reason"]
        read_only_fields = fields


class ProposalSerializer(serializers.Serializer):
    overrides = serializers.JSONField(help_text="the firm's complete overrides of the base set")
    reason = serializers.CharField(max_length=2000)


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, allow_blank=True, default="")


def _refusal(exc: DomainError) -> Response:
    return Response({"errors": exc.errors}, status=exc.status)


class RiskParameterSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = RiskParameterSetSerializer
    permission_classes = [IsAuthenticated, IsFirmStaff]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no firm, no rows
            return RiskParameterSet.cross_firm.none()
        return RiskParameterSet.objects.select_related("created_by", "decided_by").order_by(
            "-version")

    def _done(self, call, created: bool = False) -> Response:
        try:
            row = call()
        except DomainError as exc:  # a stale approval is a Conflict: 409
            return _refusal(exc)
        return Response(self.get_serializer(row).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=ProposalSerializer, responses={201: RiskParameterSetSerializer})
    def create(self, request: Request) -> Response:
        data = validated(ProposalSerializer, request)
        return self._done(lambda: services.propose_parameters(
            firm=current_firm(), actor=request.user, overrides=data["overrides"],
            reason=data["reason"]), created=True)

    @extend_schema(request=DecisionSerializer, responses=RiskParameterSetSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        proposal = self.get_object()
        data = validated(DecisionSerializer, request)
        return self._done(lambda: services.approve_parameters(
            proposal=proposal, actor=request.user, reason=data["reason"]))

    @extend_schema(request=DecisionSerializer, responses=RiskParameterSetSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        proposal = self.get_object()
        data = validated(DecisionSerializer, request)
        return self._done(lambda: services.reject_parameters(
            proposal=proposal, actor=request.user, reason=data["reason"]))
