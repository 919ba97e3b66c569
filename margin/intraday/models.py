"""The intraday record: one row per transaction of a monitored account."""

from __future__ import annotations

from django.db import models

from accounts.models import MONEY, Account
from brokerage.models import AppendOnlyRecord, TenantModel
from brokerage.scope import AppendOnlyCrossFirmManager, AppendOnlyTenantManager


class IntradayObservation(AppendOnlyRecord, TenantModel):
    """The intraday margin level (IML: what could be withdrawn while still meeting maintenance
    margin; negative, the deposit needed) before and after one transaction of the book, written
    in that transaction. Several writes in one database transaction (a trade's position and its
    cash) are one transaction: its row is written with the first and completed by the next,
    before anyone else can see it; once committed it is never changed (the model and queryset
    guards, and on PostgreSQL a trigger that lets only the writing transaction complete its row
    and refuses every DELETE: ``margin/migrations/0019``; SQLite refuses DELETE only)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    session = models.DateField(help_text="the business day the transaction belongs to")
    transaction = models.CharField(max_length=64, help_text="the database transaction's token")
    database_transaction = models.CharField(
        max_length=24, blank=True, editable=False,
        help_text="PostgreSQL: the top-level transaction id that wrote it (set by the "
                  "database; the append-only trigger lets only that transaction complete it)")
    occurred_at = models.DateTimeField(help_text="when it happened: the cash entries' effective "
                                                 "time, else when it was booked")
    equity = models.DecimalField(**MONEY)
    maintenance = models.DecimalField(**MONEY, help_text="4210(c) maintenance requirement")
    level = models.DecimalField(**MONEY, help_text="IML after: equity - maintenance")
    level_before = models.DecimalField(**MONEY, null=True, blank=True,
                                       help_text="IML before, at the same prices; null: not "
                                                 "known (a writer that did not say what moved)")
    reducing = models.BooleanField(help_text="an IML-reducing transaction (it lowered the IML, "
                                             "or withdrew cash)")
    traded = models.BooleanField(default=False, help_text="a position moved")
    net_deposits = models.DecimalField(**MONEY, default=0,
                                       help_text="deposits less withdrawals in it")
    changes = models.JSONField(default=list, help_text="what moved, as the writer said")
    recorded_at = models.DateTimeField()

    objects = AppendOnlyTenantManager()
    cross_firm = AppendOnlyCrossFirmManager()
    never_updated = never_deleted = "an intraday observation is a record: never changed"

    class Meta(TenantModel.Meta):
        ordering = ["account", "session", "occurred_at", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "transaction"],
                                               name="intraday_observation_per_transaction")]
        indexes = [models.Index(fields=["account", "session"])]

    def __str__(self) -> str:
        return f"{self.account_id} {self.session} IML {self.level}"

    @property
    def effect(self):
        """What the transaction did to the IML (None when the level before is not known)."""
        return None if self.level_before is None else self.level - self.level_before
