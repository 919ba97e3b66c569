"""Margin calls, their policy and what follows them (``MARGIN_CALLS.md`` sections 9 and 10).

Imported by ``margin.models`` so the models belong to the margin app (its migrations).
Transitions happen only in ``margin.calls.services``; nothing here moves a status.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Account, LedgerEntry
from brokerage.models import AppendOnlyRecord, TenantModel, VersionStatus
from brokerage.scope import AppendOnlyCrossFirmManager, AppendOnlyTenantManager

MONEY = {"max_digits": 20, "decimal_places": 2}


class CallPolicy(TenantModel):
    """One version of a firm's call policy: every value with its source tag and citation
    (``rows``: name -> {"value", "source", "citation"}). Never edited: a change is a new
    version proposed by one person and approved by another (``brokerage.approvals``, kind
    ``call_policy``); version 1 is the platform default, adopted on first use."""

    Status = VersionStatus

    version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROPOSED)
    rows = models.JSONField(help_text="name -> {value, source, citation}")
    reason = models.TextField(blank=True)
    drafted_on = models.PositiveIntegerField(default=0, help_text="the active version when "
                                                                  "proposed (0: none yet)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    class Meta(TenantModel.Meta):
        ordering = ["firm", "-version"]
        verbose_name_plural = "call policies"
        constraints = [
            models.UniqueConstraint(fields=["firm", "version"], name="call_policy_version"),
            models.UniqueConstraint(fields=["firm"], condition=Q(status="active"),
                                    name="call_policy_one_active"),
        ]

    def __str__(self) -> str:
        return f"call policy v{self.version} ({self.status})"

    def value(self, name: str):
        from .policy import typed

        return typed(name, self.row(name)["value"])

    def row(self, name: str) -> dict[str, str]:
        """A row with its source and citation; a row added to the platform after this version
        was adopted reads as the platform's (the regulatory floor)."""
        from .policy import DEFAULT

        if name in self.rows:
            return self.rows[name]
        default = DEFAULT[name]
        return {"value": default.value, "source": default.source,
                "citation": default.citation}


class MarginCall(TenantModel):
    """One call on one account: what is owed, by when, under which rule and policy version,
    resting on which valuation. Amounts: ``amount`` is what was required when issued (a Reg T
    call's stays fixed, the others' follow each end-of-day run), ``amount_due`` what remains
    after satisfactions."""

    class Kind(models.TextChoices):
        REG_T = "reg_t", "Reg T (federal) call"
        MAINTENANCE = "maintenance", "Maintenance call (FINRA 4210(c))"
        PM_DEFICIENCY = "pm_deficiency", "Portfolio-margin deficiency"
        PM_MINIMUM_EQUITY = "pm_minimum_equity", "PM minimum-equity deficiency"
        HOUSE = "house", "House call"
        COLLATERAL = "collateral", "Collateral (health-factor) call"
        INTRADAY = "intraday", "Intraday margin deficit"

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        PARTIALLY_MET = "partially_met", "Partially met"
        MET = "met", "Met"
        EXTENDED = "extended", "Extended"
        OVERDUE = "overdue", "Overdue"
        LIQUIDATION_PENDING = "liquidation_pending", "Liquidation pending"
        LIQUIDATED = "liquidated", "Liquidated"
        CANCELLED = "cancelled", "Cancelled"

    class CancelReason(models.TextChoices):
        MARKET_RECOVERY = "market_recovery", "Market recovery"
        DE_MINIMIS = "de_minimis", "De minimis"
        LAPSED = "lapsed", "Lapsed"
        SUPERSEDED = "superseded", "Superseded by a new call"
        TRADE_CANCELLED = "trade_cancelled", "Trade cancelled"

    OPEN_STATES = ("issued", "partially_met", "extended", "overdue", "liquidation_pending",
                   "liquidated")
    CLOSED_STATES = ("met", "cancelled")

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="margin_calls")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ISSUED)
    cancel_reason = models.CharField(max_length=16, choices=CancelReason.choices, blank=True)
    as_of = models.DateField(help_text="the close (business day) the call is computed as of")
    trade_date = models.DateField(null=True, blank=True,
                                  help_text="Reg T: the trade date whose transactions made it")
    due_date = models.DateField()
    due_at = models.DateTimeField(null=True, blank=True,
                                  help_text="collateral calls: due in hours, not days")
    amount = models.DecimalField(**MONEY, help_text="the amount required")
    amount_due = models.DecimalField(**MONEY, help_text="what remains after satisfactions")
    equity = models.DecimalField(**MONEY, help_text="equity at the last valuation judged")
    requirement = models.DecimalField(**MONEY, help_text="what equity had to cover")
    rule = models.CharField(max_length=200, help_text="the rule that produced the call")
    rule_source = models.CharField(max_length=12, help_text="regulatory or house: the stricter "
                                                            "policy that produced it")
    policy = models.ForeignKey(CallPolicy, on_delete=models.PROTECT, related_name="calls")
    snapshot = models.ForeignKey("margin.MarginSnapshot", null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="+",
                                 help_text="the valuation the call rests on")
    calendar = models.CharField(max_length=16, default="XNYS")
    met_by_liquidation = models.BooleanField(default=False)
    health_factor = models.DecimalField(
        max_digits=20, decimal_places=6, null=True, blank=True,
        help_text="collateral calls: the health factor of the valuation last judged")
    # The PM minimum-equity deficiency's consequences (house timeline, business days after T).
    notice_due_on = models.DateField(null=True, blank=True)
    restriction_due_on = models.DateField(null=True, blank=True)
    downgrade_due_on = models.DateField(null=True, blank=True)
    noticed_on = models.DateField(null=True, blank=True)
    restricted_on = models.DateField(null=True, blank=True)
    downgraded_on = models.DateField(null=True, blank=True)
    issued_at = models.DateTimeField()
    last_evaluated_on = models.DateField()
    closed_on = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        ordering = ["due_date", "id"]
        constraints = [
            # One open call per account and kind; Reg T is one per trade date instead, an
            # intraday deficit one per deficit day (each lapses on its own 15th business day).
            models.UniqueConstraint(
                fields=["account", "kind"], name="one_open_call_per_account_and_kind",
                condition=~Q(kind__in=["reg_t", "intraday"]) & Q(status__in=[
                    "issued", "partially_met", "extended", "overdue", "liquidation_pending",
                    "liquidated"])),
            models.UniqueConstraint(fields=["account", "trade_date"], condition=Q(kind="reg_t"),
                                    name="one_reg_t_call_per_trade_date"),
            models.UniqueConstraint(fields=["account", "as_of"], condition=Q(kind="intraday"),
                                    name="one_intraday_call_per_deficit_day"),
            models.CheckConstraint(condition=Q(amount_due__gte=0) & Q(amount__gte=0),
                                   name="call_amounts_not_negative"),
            models.CheckConstraint(condition=Q(status="cancelled") | Q(cancel_reason=""),
                                   name="call_cancel_reason_only_when_cancelled"),
        ]
        indexes = [models.Index(fields=["firm", "status", "due_date"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} on {self.account_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATES


class CallSatisfaction(AppendOnlyRecord, TenantModel):
    """What met (part of) a call: a cash deposit linked from the ledger (once per call), a
    securities deposit or another manner recorded by staff, a liquidation."""

    class Manner(models.TextChoices):
        CASH = "cash", "Cash deposit"
        SECURITIES = "securities", "Securities deposit"
        SMA = "sma", "Transfer from SMA"
        LIQUIDATION = "liquidation", "Liquidation"
        IML_INCREASE = "iml_increase", "Increase in intraday margin level"
        OTHER = "other", "Otherwise complied with"

    call = models.ForeignKey(MarginCall, on_delete=models.PROTECT, related_name="satisfactions")
    manner = models.CharField(max_length=16, choices=Manner.choices)
    amount = models.DecimalField(**MONEY)
    received_on = models.DateField()
    ledger_entry = models.ForeignKey(LedgerEntry, null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=300, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField()

    objects = AppendOnlyTenantManager()
    cross_firm = AppendOnlyCrossFirmManager()
    never_updated = never_deleted = "a satisfaction is a record: never changed"

    class Meta(TenantModel.Meta):
        ordering = ["call", "recorded_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["call", "ledger_entry"],
                                    condition=Q(ledger_entry__isnull=False),
                                    name="deposit_linked_once_per_call"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="satisfaction_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.manner} {self.amount} on call #{self.call_id}"


class CallExtension(TenantModel):
    """The firm's request for more time on a call and its outcome, with the REX fields
    (MARGIN_CALLS.md section 9): nothing is filed with a regulator from here. The firm's
    decision to ask goes through ``brokerage.approvals`` (kind ``call_extension``)."""

    class State(models.TextChoices):
        PROPOSED = "proposed", "Proposed (awaiting a second person)"
        REQUESTED = "requested", "Requested of the examining authority"
        GRANTED = "granted", "Granted"
        DENIED = "denied", "Denied"
        REJECTED = "rejected", "Not requested (turned down inside the firm)"

    class Authority(models.TextChoices):
        FINRA = "finra", "Examining authority (FINRA, via REX)"
        HOUSE = "house", "The firm (house call)"

    call = models.ForeignKey(MarginCall, on_delete=models.PROTECT, related_name="extensions")
    authority = models.CharField(max_length=8, choices=Authority.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PROPOSED)
    request_number = models.PositiveIntegerField(help_text="REX RequestNumber: >1 is a "
                                                           "follow-on request")
    request_date = models.DateField(help_text="REX RequestDate: always the original request's")
    days_requested = models.PositiveIntegerField()
    reason_code = models.CharField(max_length=20)
    comment = models.TextField(blank=True)
    filing_id = models.CharField(max_length=40, blank=True, help_text="FINRA Filing ID")
    due_date_before = models.DateField()
    new_due_date = models.DateField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                     related_name="+")
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    outcome_recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                            on_delete=models.PROTECT, related_name="+")
    outcome_on = models.DateField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        ordering = ["call", "request_number"]
        constraints = [models.UniqueConstraint(fields=["call", "request_number"],
                                               name="extension_request_number_per_call")]

    def __str__(self) -> str:
        return f"extension {self.request_number} of call #{self.call_id} ({self.state})"


class CallNotice(TenantModel):
    """A notice to the client about a call: one per call and event (``event_key``), so a run
    repeated never mails twice. The mail goes out when the transaction commits."""

    class Event(models.TextChoices):
        ISSUED = "issued", "Issued"
        CHANGED = "changed", "Amount changed"
        EXTENDED = "extended", "Extended"
        DUE_TOMORROW = "due_tomorrow", "Due tomorrow"
        OVERDUE = "overdue", "Overdue"
        RESTRICTED = "restricted", "Account restricted"
        DOWNGRADED = "downgraded", "Account downgraded"
        MET = "met", "Met"

    call = models.ForeignKey(MarginCall, on_delete=models.PROTECT, related_name="notices")
    event = models.CharField(max_length=14, choices=Event.choices)
    event_key = models.CharField(max_length=60)
    recipient = models.EmailField(blank=True)
    subject = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantModel.Meta):
        ordering = ["call", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["call", "event_key"],
                                               name="notice_once_per_event")]

    def __str__(self) -> str:
        return f"{self.event} notice for call #{self.call_id}"


class CallRecord(AppendOnlyRecord, TenantModel):
    """The FINRA 4220 record, append-only: written when a call is issued, when its amount
    changes and on every satisfaction or status move. The daily export reads, for each call
    alive on a day, its latest row up to that day and the satisfactions received by then."""

    call = models.ForeignKey(MarginCall, on_delete=models.PROTECT, related_name="records")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    event = models.CharField(max_length=24)
    amount_required = models.DecimalField(**MONEY)
    amount_due = models.DecimalField(**MONEY)
    status = models.CharField(max_length=20)
    manner = models.CharField(max_length=16, blank=True)
    amount_received = models.DecimalField(**MONEY, null=True, blank=True)
    recorded_at = models.DateTimeField()

    objects = AppendOnlyTenantManager()
    cross_firm = AppendOnlyCrossFirmManager()
    never_updated = never_deleted = "the 4220 record is append-only"

    class Meta(TenantModel.Meta):
        ordering = ["day", "call", "id"]
        indexes = [models.Index(fields=["firm", "day"])]

    def __str__(self) -> str:
        return f"{self.day} call #{self.call_id} {self.event}"


class Restriction(TenantModel):
    """A restriction on an account following unmet calls (the trading-controls issue enforces
    it on trades): its kind, start, end (null: until lifted) and cause. A waiver needs two
    people holding the firm-admin or compliance role (``brokerage.approvals``, kind
    ``restriction_waiver``)."""

    class Kind(models.TextChoices):
        CLOSING_ONLY = "closing_only", "Closing (margin-reducing) trades only"
        FUNDS_ON_HAND_90D = "funds_on_hand_90d", "Funds on hand, 90 days"
        INTRADAY_90D = "intraday_90d", "No new debit or short, 90 days (intraday)"

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"
        LIFTED = "lifted", "Lifted (the call was met)"
        WAIVED = "waived", "Waived (two officers)"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="restrictions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    starts_on = models.DateField()
    ends_on = models.DateField(null=True, blank=True, help_text="null: until the cause is met")
    cause = models.CharField(max_length=300)
    call = models.ForeignKey(MarginCall, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="restrictions")
    policy = models.ForeignKey(CallPolicy, on_delete=models.PROTECT, related_name="+")
    restricted_account = models.BooleanField(
        default=False, help_text="it set the account's status to restricted (and sets it back "
                                 "when it ends); a restriction someone else imposed stays")
    closed_on = models.DateField(null=True, blank=True)
    closed_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantModel.Meta):
        ordering = ["-starts_on", "-id"]
        constraints = [models.UniqueConstraint(
            fields=["account", "kind"], condition=Q(state="active"),
            name="one_active_restriction_per_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.account_id} from {self.starts_on}"
