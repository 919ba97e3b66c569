"""An execution: one fill booked into an account, append-only.

A bust reverses an execution with a linked row of the opposite side (``reverses``); a
correction is a bust plus a new execution pointing at the one it corrects (``corrects``).
Expiry, exercise and assignment are executions too (``kind``), linked to the option position's
instrument, so the whole history of a position reads from one table.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import MONEY, QUANTITY, Account, Instrument, LedgerEntry
from brokerage.models import AppendOnlyRecord, TenantModel
from brokerage.scope import AppendOnlyCrossFirmManager, AppendOnlyTenantManager


class Execution(AppendOnlyRecord, TenantModel):
    class Side(models.TextChoices):
        BUY = "buy", "Buy"
        SELL = "sell", "Sell"

    class Kind(models.TextChoices):
        TRADE = "trade", "Trade"
        BUST = "bust", "Bust (reverses a trade)"
        EXPIRY = "expiry", "Option expired worthless"
        EXERCISE = "exercise", "Option exercised (long)"
        ASSIGNMENT = "assignment", "Option assigned (short)"
        DELIVERY = "delivery", "Stock delivered by an exercise or assignment"

    client_execution_id = models.CharField(
        max_length=64, help_text="the client's (or the venue's) id: unique per firm, a resend "
                                 "with the same id books nothing twice")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="executions")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.TRADE)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(**QUANTITY, help_text="contracts or shares, positive")
    price = models.DecimalField(max_digits=24, decimal_places=8,
                                help_text="per share or per contract unit (before multiplier)")
    fees = models.DecimalField(**MONEY, default=0)
    trade_time = models.DateTimeField()
    position_before = models.DecimalField(**QUANTITY)
    position_after = models.DecimalField(**QUANTITY)
    cash_amount = models.DecimalField(**MONEY, help_text="the trade's cash, signed as the ledger: "
                                                          "fees excluded")
    settlement = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text="the trade's ledger entry")
    fee_entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+")
    reverses = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="reversed_by",
                                    help_text="the execution this bust reverses")
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="corrections",
                                 help_text="the busted execution this one replaces")
    origin = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+", help_text="exercise or assignment: the option "
                                                           "execution a delivery comes from")
    reason = models.CharField(max_length=300, blank=True,
                              help_text="why a bust or correction was made")
    pretrade = models.JSONField(default=dict, blank=True,
                                help_text="the pre-trade check's decision the booking rested on")
    override_reason = models.CharField(max_length=300, blank=True,
                                       help_text="why a rejected order was booked anyway")
    override_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    booked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                  on_delete=models.PROTECT, related_name="+")
    booked_at = models.DateTimeField(auto_now_add=True)

    objects = AppendOnlyTenantManager()
    cross_firm = AppendOnlyCrossFirmManager()
    never_updated = "executions are append-only: bust or correct one instead"
    never_deleted = "executions are append-only: bust or correct one instead"

    class Meta(TenantModel.Meta):
        ordering = ["-trade_time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["firm", "client_execution_id"],
                                    name="execution_id_per_firm"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0),
                                   name="execution_quantity_positive"),
        ]
        indexes = [models.Index(fields=["account", "-trade_time"])]

    def __str__(self) -> str:
        return f"{self.client_execution_id} {self.side} {self.quantity} {self.instrument}"

    @property
    def signed_quantity(self):
        return self.quantity if self.side == self.Side.BUY else -self.quantity
