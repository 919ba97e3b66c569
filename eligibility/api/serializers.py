"""Shapes of the eligibility API. Input serializers check form only; the services judge.

Every input serializer derives from `brokerage.api.InputSerializer`: an unknown field is a 400.
"""

from __future__ import annotations

from rest_framework import serializers

from brokerage.api import InputSerializer, username
from brokerage.roles import Role
from brokerage.tenancy import role_of

from .. import rules
from ..models import Application, Evaluation, RuleSet
from ..services import allowed_actions


class EvaluationSerializer(serializers.ModelSerializer):
    rule_set_version = serializers.IntegerField(source="rule_set.version", read_only=True)

    class Meta:
        model = Evaluation
        fields = ["id", "stage", "passed", "rule_set_version", "equity", "equity_source",
                  "evaluated_at", "results"]
        read_only_fields = fields


class ApplicationSerializer(serializers.ModelSerializer):
    account_number = serializers.CharField(source="account.number", read_only=True)
    client_name = serializers.CharField(source="client.name", read_only=True)
    rule_set_version = serializers.IntegerField(source="rule_set.version", read_only=True,
                                                allow_null=True)
    created_by = username(allow_null=False)
    submitted_by = username()
    reviewed_by = username()
    decided_by = username()
    recommendation = serializers.ChoiceField(choices=Application.Recommendation.choices,
                                             allow_blank=True, read_only=True,
                                             help_text="blank until reviewed")
    allowed_actions = serializers.SerializerMethodField()
    latest_evaluation = serializers.SerializerMethodField()

    # Internal working of the desk; a client sees the outcome and the reasons, not these.
    STAFF_ONLY = ("created_by", "submitted_by", "reviewed_by", "decided_by", "recommendation",
                  "review_notes")

    class Meta:
        model = Application
        fields = ["id", "state", "version", "client", "client_name", "account", "account_number",
                  "rule_set_version", "created_by", "created_at", "submitted_by", "submitted_at",
                  "reviewed_by", "reviewed_at", "recommendation", "review_notes", "decided_by",
                  "decided_at", "decision_reasons", "effective_on", "converted_at",
                  "closed_reason", "allowed_actions", "latest_evaluation"]
        read_only_fields = fields

    def get_allowed_actions(self, application: Application) -> list[str]:
        return allowed_actions(application)

    def get_latest_evaluation(self, application: Application) -> dict | None:
        evaluations = list(application.evaluations.all())  # prefetched, newest first
        return EvaluationSerializer(evaluations[0]).data if evaluations else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and role_of(request.user) == Role.CLIENT:
            for name in self.STAFF_ONLY:
                data.pop(name, None)
        return data


class ApplicationCreateSerializer(InputSerializer):
    account = serializers.IntegerField(min_value=1)
    submit = serializers.BooleanField(default=False, help_text="submit it straight away")


class ReviewSerializer(InputSerializer):
    recommendation = serializers.ChoiceField(choices=Application.Recommendation.choices)
    notes = serializers.CharField(allow_blank=True, default="", max_length=5000)


class DecisionSerializer(InputSerializer):
    reasons = serializers.CharField(allow_blank=True, default="", max_length=5000)
    version = serializers.IntegerField(required=False, min_value=0,
                                       help_text="the version you read (compare-and-swap)")


class RejectSerializer(DecisionSerializer):
    reasons = serializers.CharField(max_length=5000, help_text="what the client is told")


class WithdrawSerializer(InputSerializer):
    reason = serializers.CharField(allow_blank=True, default="", max_length=2000)


class DesignateApproverSerializer(InputSerializer):
    approver = serializers.IntegerField(min_value=1, help_text="user id of a staff member")


class RuleSetSerializer(serializers.ModelSerializer):
    proposed_by = username()
    decided_by = username()
    based_on_version = serializers.IntegerField(source="based_on.version", read_only=True,
                                                allow_null=True)

    class Meta:
        model = RuleSet
        fields = ["id", "version", "status", *rules.THRESHOLD_FIELDS, "change_reason",
                  "based_on_version", "proposed_by", "proposed_at", "decided_by", "decided_at",
                  "decision_reason", "superseded_at"]
        read_only_fields = fields


class RuleSetProposalSerializer(InputSerializer):
    """A change to the active thresholds: give only what changes, and why."""

    reason = serializers.CharField(max_length=2000)
    opening_equity_minimum = serializers.DecimalField(max_digits=20, decimal_places=2, required=False)
    unlisted_derivatives_equity_minimum = serializers.DecimalField(max_digits=20, decimal_places=2,
                                                                   required=False)
    min_options_approval_level = serializers.IntegerField(required=False)
    min_years_options_experience = serializers.IntegerField(required=False)
    min_annual_income = serializers.DecimalField(max_digits=20, decimal_places=2, required=False)
    min_net_worth = serializers.DecimalField(max_digits=20, decimal_places=2, required=False)
    min_liquid_net_worth = serializers.DecimalField(max_digits=20, decimal_places=2, required=False)
    allowed_registrations = serializers.ListField(child=serializers.CharField(), required=False)
    allowed_margin_types = serializers.ListField(child=serializers.CharField(), required=False)
    application_valid_days = serializers.IntegerField(required=False)


class RuleSetDecisionSerializer(InputSerializer):
    reason = serializers.CharField(allow_blank=True, default="", max_length=2000)


class RuleSetRejectSerializer(InputSerializer):
    """A rejection says why (the service refuses one without a reason)."""

    reason = serializers.CharField(max_length=2000)
