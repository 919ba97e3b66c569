"""``/api/v1/risk-parameters/``: a firm's parameter versions; propose, approve, reject.

Staff of the firm read; firm admins and risk officers propose and decide (four eyes: the
service refuses the proposer as decider). Another firm's version is a 404. Refusals propagate
to the one exception handler (`brokerage.api_errors`): each problem with its field path.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from brokerage.api import InputSerializer, IsFirmStaff, TenantViewSet, username, validated
from brokerage.api_actions import ServiceActions, VersionedRetrieve, decision_endpoints
from brokerage.scope import current_firm

from .. import services
from ..models import RiskParameterSet


class RiskParameterSetSerializer(serializers.ModelSerializer):
    created_by = username()
    decided_by = username()

    class Meta:
        model = RiskParameterSet
        fields = ["id", "version", "status", "base", "overrides", "reason", "drafted_on",
                  "created_by", "created_at", "decided_by", "decided_at", "decision_reason"]
        read_only_fields = fields


class ParameterProposalSerializer(InputSerializer):
    # An object: the service checks every key and value in it (paths like overrides.house.x).
    overrides = serializers.DictField(help_text="the firm's complete overrides of the base set")
    reason = serializers.CharField(max_length=2000)


class ParameterDecisionSerializer(InputSerializer):
    reason = serializers.CharField(max_length=2000, allow_blank=True, default="")


class ParameterRejectSerializer(InputSerializer):
    """A rejection says why (the service refuses one without a reason)."""

    reason = serializers.CharField(max_length=2000)


class RiskParameterSetViewSet(VersionedRetrieve, ServiceActions, mixins.ListModelMixin,
                              mixins.RetrieveModelMixin, TenantViewSet):
    approval_kind = services.APPROVAL_KIND
    serializer_class = RiskParameterSetSerializer
    permission_classes = [IsAuthenticated, IsFirmStaff]

    def scoped_queryset(self) -> QuerySet:
        return RiskParameterSet.objects.select_related("created_by", "decided_by").order_by(
            "-version")

    @extend_schema(request=ParameterProposalSerializer, responses={201: RiskParameterSetSerializer})
    def create(self, request: Request) -> Response:
        data = validated(ParameterProposalSerializer, request)
        return self.answer(services.propose_parameters(
            firm=current_firm(), actor=request.user, overrides=data["overrides"],
            reason=data["reason"]), created=True)

    approve, reject = decision_endpoints(
        RiskParameterSetSerializer,
        approve=(ParameterDecisionSerializer, lambda proposal, user, data, version: (
            services.approve_parameters(proposal=proposal, actor=user, reason=data["reason"],
                                        expected_version=version))),
        reject=(ParameterRejectSerializer, lambda proposal, user, data, version: (
            services.reject_parameters(proposal=proposal, actor=user, reason=data["reason"]))))
