"""A suggested liquidation plan, stored with what it rests on (imported by ``margin.models``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Account
from brokerage.models import TenantModel

MONEY = {"max_digits": 20, "decimal_places": 2}


class LiquidationPlan(TenantModel):
    """The cheapest risk-reducing closing trades that cure an account's deficit, with the
    greedy alternative beside them. Proposed by one person, approved by another
    (``brokerage.approvals``, kind ``liquidation_plan``); approved, it is an instruction to the
    desk (nothing is sent to a market)."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed (awaiting a second person)"
        APPROVED = "approved", "Approved: an instruction"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded by a recomputed plan"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    call = models.ForeignKey("margin.MarginCall", null=True, blank=True,
                             on_delete=models.PROTECT, related_name="liquidation_plans")
    snapshot = models.ForeignKey("margin.MarginSnapshot", on_delete=models.PROTECT,
                                 related_name="+", help_text="the valuation the plan rests on")
    policy = models.ForeignKey("margin.CallPolicy", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROPOSED)
    basis = models.CharField(max_length=20, help_text="the requirement cured: portfolio_margin, "
                                                      "reg_t_initial or reg_t_maintenance")
    outcome = models.CharField(max_length=12, help_text="cured, not_needed, infeasible or "
                                                        "not_cured (the engine's check)")
    solver_status = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    trades = models.JSONField(help_text="[{position, side, quantity, ...}]")
    cost = models.DecimalField(**MONEY)
    spread_cost = models.DecimalField(**MONEY)
    penalty_cost = models.DecimalField(**MONEY)
    equity_before = models.DecimalField(**MONEY)
    equity_after = models.DecimalField(**MONEY, null=True, blank=True)
    requirement_before = models.DecimalField(**MONEY)
    requirement_after = models.DecimalField(**MONEY, null=True, blank=True,
                                            help_text="the full engine's, after the trades")
    cushion = models.DecimalField(max_digits=8, decimal_places=6)
    allowed_deficit = models.DecimalField(**MONEY, default=0)
    tightening = models.FloatField(default=0.0)
    rounds = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    costs = models.JSONField(help_text="half spread per product class and fixed penalty used")
    greedy = models.JSONField(help_text="the greedy alternative, in the same terms")
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+")
    proposed_at = models.DateTimeField()
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    class Meta(TenantModel.Meta):
        ordering = ["-proposed_at", "-id"]
        indexes = [models.Index(fields=["firm", "status"])]

    def __str__(self) -> str:
        return f"liquidation plan #{self.pk} for {self.account_id} ({self.status})"
