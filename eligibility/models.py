"""Eligibility rule sets and portfolio-margin applications.

- `RuleSet`: a firm's thresholds, versioned. A change is a new row proposed by one person and
  approved by another; the superseded version stays for the record. Regulatory floors are
  database constraints too, so not even a raw UPDATE can undercut them.
- `Application`: one account's request to move to portfolio margin, through the states of
  `Application.State`; transitions happen only in `eligibility.services`.
- `Evaluation`: every judgement made (at submission, review and approval), with the rule-set
  version it used and every rule's outcome.
- The PM minimum-equity deficiency is a margin call kind (`margin.calls`); eligibility reads calls.
- `ApplicationUserObjectPermission` / `ApplicationGroupObjectPermission`: django-guardian direct
  foreign keys: which client users see which application, which staff may decide which one.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from accounts.models import Account, Client
from brokerage.models import AppendOnlyRecord, TenantModel, VersionStatus

from . import rules

MONEY = {"max_digits": 20, "decimal_places": 2}
FLOOR = rules.REGULATORY_MINIMUM_EQUITY
UNLISTED_FLOOR = rules.REGULATORY_UNLISTED_DERIVATIVES_EQUITY


def _default_registrations() -> list[str]:
    return list(rules.DEFAULTS["allowed_registrations"])


def _default_margin_types() -> list[str]:
    return list(rules.DEFAULTS["allowed_margin_types"])


class RuleSet(TenantModel):
    """One version of a firm's portfolio-margin eligibility thresholds. Never edited."""

    Status = VersionStatus

    version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROPOSED)

    # Equity to qualify: FINRA 4210(g) / Cboe Options Rule 10.4 floor $100,000; house default
    # $125,000 to open; $5,000,000 with unlisted derivatives. (The minimum an account keeps
    # once on portfolio margin is call policy: margin.calls.policy.)
    opening_equity_minimum = models.DecimalField(
        **MONEY, default=rules.DEFAULTS["opening_equity_minimum"],
        validators=[MinValueValidator(FLOOR)])
    unlisted_derivatives_equity_minimum = models.DecimalField(
        **MONEY, default=rules.DEFAULTS["unlisted_derivatives_equity_minimum"],
        validators=[MinValueValidator(UNLISTED_FLOOR)])
    # Uncovered options approval (FINRA Rule 2360 level 4) is a precondition of PM.
    min_options_approval_level = models.PositiveSmallIntegerField(
        default=rules.UNCOVERED_OPTIONS_LEVEL,
        validators=[MinValueValidator(rules.UNCOVERED_OPTIONS_LEVEL),
                    MaxValueValidator(rules.UNCOVERED_OPTIONS_LEVEL)])
    min_years_options_experience = models.PositiveSmallIntegerField(
        default=rules.DEFAULTS["min_years_options_experience"])
    min_annual_income = models.DecimalField(**MONEY, default=rules.DEFAULTS["min_annual_income"],
                                            validators=[MinValueValidator(0)])
    min_net_worth = models.DecimalField(**MONEY, default=rules.DEFAULTS["min_net_worth"],
                                        validators=[MinValueValidator(0)])
    min_liquid_net_worth = models.DecimalField(
        **MONEY, default=rules.DEFAULTS["min_liquid_net_worth"], validators=[MinValueValidator(0)])
    allowed_registrations = models.JSONField(default=_default_registrations)
    allowed_margin_types = models.JSONField(default=_default_margin_types)

    application_valid_days = models.PositiveSmallIntegerField(
        default=rules.DEFAULTS["application_valid_days"],
        help_text="business days an application stays open before it expires")

    change_reason = models.TextField(blank=True)
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+", help_text="the active version when proposed")
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    superseded_at = models.DateTimeField(null=True, blank=True)

    # Only these change after creation (status moves); thresholds are never edited.
    STATUS_FIELDS = frozenset({"status", "decided_by", "decided_at", "decision_reason",
                               "superseded_at"})

    class Meta(TenantModel.Meta):
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["firm", "version"], name="ruleset_version_per_firm"),
            models.UniqueConstraint(fields=["firm"], condition=Q(status="active"),
                                    name="ruleset_one_active_per_firm"),
            models.CheckConstraint(
                condition=Q(opening_equity_minimum__gte=FLOOR),
                name="ruleset_equity_regulatory_floor"),
            models.CheckConstraint(
                condition=Q(unlisted_derivatives_equity_minimum__gte=UNLISTED_FLOOR),
                name="ruleset_unlisted_derivatives_floor"),
            models.CheckConstraint(
                condition=Q(min_options_approval_level=rules.UNCOVERED_OPTIONS_LEVEL),
                name="ruleset_uncovered_options_level"),
        ]

    def __str__(self) -> str:
        return f"rule set v{self.version} ({self.status})"

    def thresholds(self) -> dict:
        return {name: getattr(self, name) for name in rules.THRESHOLD_FIELDS}

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            update_fields = kwargs.get("update_fields")
            if update_fields is None or not set(update_fields) <= self.STATUS_FIELDS:
                raise PermissionError("a rule-set version is never edited: propose a new one")
        super().save(*args, **kwargs)


class Application(TenantModel):
    """An account's application to move to portfolio margin (maker-checker, four eyes)."""

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        UNDER_REVIEW = "under_review", "Under review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"
        EXPIRED = "expired", "Expired"
        STALE = "stale", "Stale (client data or equity changed during review)"

    class Recommendation(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    LIVE_STATES = (State.DRAFT, State.SUBMITTED, State.UNDER_REVIEW, State.STALE)

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="pm_applications")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="pm_applications")
    state = models.CharField(max_length=14, choices=State.choices, default=State.DRAFT)
    version = models.PositiveIntegerField(default=0, help_text="bumped by every transition (CAS)")
    rule_set = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="applications",
                                 help_text="the rule-set version the application was judged by")

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="+")
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_on = models.DateField(null=True, blank=True, help_text="the business date of submission")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    recommendation = models.CharField(max_length=8, choices=Recommendation.choices, blank=True)
    review_notes = models.TextField(blank=True)
    review_inputs = models.JSONField(null=True, blank=True,
                                     help_text="client facts and equity the reviewer saw")
    makers = models.JSONField(default=list, blank=True,
                              help_text="ids of everyone who drafted, submitted or reviewed it: "
                                        "none of them may decide it (four eyes)")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reasons = models.TextField(blank=True)
    effective_on = models.DateField(null=True, blank=True,
                                    help_text="the business day the account moves to PM")
    converted_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.TextField(blank=True, help_text="why it was withdrawn, expired or stale")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta(TenantModel.Meta):
        ordering = ["-created_at", "-id"]
        permissions = [
            ("approve_application", "Can approve or reject this portfolio-margin application"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(state__in=["draft", "submitted", "under_review", "stale"]),
                name="one_live_pm_application_per_account"),
        ]
        indexes = [models.Index(fields=["firm", "state"]),
                   models.Index(fields=["firm", "effective_on"])]

    def __str__(self) -> str:
        return f"PM application #{self.pk} for {self.account_id} ({self.state})"


class ApplicationUserObjectPermission(UserObjectPermissionBase):
    """django-guardian direct FK: a client user's view grant, a designated approver's grant."""

    content_object = models.ForeignKey(Application, on_delete=models.CASCADE)


class ApplicationGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Application, on_delete=models.CASCADE)


class Evaluation(AppendOnlyRecord, TenantModel):
    """One judgement of an account against one rule-set version. Never updated."""

    class Stage(models.TextChoices):
        SUBMISSION = "submission", "At submission"
        REVIEW = "review", "At review"
        APPROVAL = "approval", "At approval"

    application = models.ForeignKey(Application, on_delete=models.CASCADE,
                                    related_name="evaluations")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    rule_set = models.ForeignKey(RuleSet, on_delete=models.PROTECT, related_name="evaluations")
    stage = models.CharField(max_length=12, choices=Stage.choices)
    passed = models.BooleanField()
    equity = models.DecimalField(**MONEY)
    equity_source = models.CharField(max_length=20)
    results = models.JSONField(help_text="every rule: passed, seen, threshold, sentence")
    evaluated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="+")
    evaluated_at = models.DateTimeField()

    never_updated = "an evaluation is a record: never updated"

    class Meta(TenantModel.Meta):
        ordering = ["-evaluated_at", "-id"]

    def __str__(self) -> str:
        return f"{self.stage} v{self.rule_set_id}: {'pass' if self.passed else 'fail'}"
