"""Tenancy (Firm, Membership), the platform's own roles (PlatformRole), the audit trail
(AuditEvent, hash-chained per firm) and approvals (ApprovalRequest, ApprovalDecision: one
maker-checker for every kind)."""

from __future__ import annotations

import json
import zoneinfo
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .audit_keys import hmac_keyring
from .roles import PlatformRoleName, Role
from .scope import AppendOnlyTenantManager, CrossFirmManager, TenantManager

DEFAULT_TIME_ZONE = "America/New_York"


@lru_cache(maxsize=1)
def iana_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(name: str) -> None:
    """An IANA zone name (``Europe/London``); abbreviations and offsets are ambiguous."""
    if name not in iana_zone_names():
        raise ValidationError(f"{name!r} is not an IANA time zone name (e.g. America/New_York)",
                              code="invalid_time_zone")


class Firm(models.Model):
    """A brokerage firm: the tenant. Firms share an installation and never see each other."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    exchange_calendar = models.CharField(max_length=20, default="XNYS")
    # Times are stored in UTC and shown to the firm's people in this zone, with its name.
    time_zone = models.CharField(max_length=64, default=DEFAULT_TIME_ZONE,
                                 validators=[validate_time_zone],
                                 help_text="IANA name, e.g. America/New_York or Europe/London")
    # FINRA's intraday margin standard (4210(d)(2), effective 4 June 2026) may be phased in by
    # account until 20 October 2027 (RN 26-10): the regime new accounts take, and that the
    # migration gave existing ones ("legacy_pdt" or "intraday"; margin.intraday reads it).
    intraday_regime = models.CharField(
        max_length=12, default="legacy_pdt",
        choices=[("legacy_pdt", "Legacy pattern-day-trader treatment"),
                 ("intraday", "Intraday margin standard")],
        help_text="the regime the firm's new accounts take")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class VersionStatus(models.TextChoices):
    """Where one version of a firm's versioned settings (eligibility rule set, risk parameters)
    stands: proposed until a second person decides (``brokerage.approvals``), then active or
    rejected; an active version is superseded by the next one approved."""

    PROPOSED = "proposed", "Proposed (awaiting a second approver)"
    ACTIVE = "active", "Active"
    SUPERSEDED = "superseded", "Superseded"
    REJECTED = "rejected", "Rejected"


class AppendOnlyRecord:
    """A row written once and kept as it was: saving it again raises `never_updated`, and
    deleting it raises `never_deleted` where the model declares one. (The scoped manager
    refuses bulk updates too, and the database triggers are the last line.)"""

    never_updated: str
    never_deleted: str | None = None

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise PermissionError(self.never_updated)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.never_deleted is not None:
            raise PermissionError(self.never_deleted)
        return super().delete(*args, **kwargs)


class TenantModel(models.Model):
    """Every tenant-owned row carries its firm; the default manager is scoped."""

    firm = models.ForeignKey(Firm, on_delete=models.PROTECT, related_name="+")

    objects = TenantManager()
    cross_firm = CrossFirmManager()

    class Meta:
        abstract = True
        base_manager_name = "cross_firm"


class Membership(TenantModel):
    """A user's one membership in one firm, with a role. Platform operators have none."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    role = models.CharField(max_length=32, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["firm", "role"])]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.firm_id})"


class PlatformRole(models.Model):
    """A platform user's one role. Platform users belong to no firm (no Membership), hold no
    tenant write and are created and changed by management commands, audited on the platform
    chain (`brokerage.tenancy.create_platform_user`)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="platform_role"
    )
    role = models.CharField(max_length=32, choices=PlatformRoleName.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()})"


class AuditChainHead(models.Model):
    """The head of one firm's audit chain; locked to serialise appends (no forks). A database
    trigger lets it move only forward, one event at a time, to its chain's next event, and
    refuses its deletion (migration 0006)."""

    chain = models.CharField(max_length=40, unique=True)  # "firm:<id>" or "platform"
    seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"{self.chain}@{self.seq}"


class AuditEvent(AppendOnlyRecord, models.Model):
    """Append-only record of a state change, hash-chained per firm.

    hash = HMAC-SHA256 under the key `key_id` names (from the environment, never the database:
    brokerage.audit_keys) of key id, prev_hash and the canonical JSON of the row's content.
    Rows are never updated or deleted (model guard here; a database trigger on PostgreSQL and
    SQLite as well).
    """

    chain = models.CharField(max_length=40, db_index=True)
    seq = models.BigIntegerField()
    firm = models.ForeignKey(Firm, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.PROTECT, related_name="+")
    actor_role = models.CharField(max_length=32, blank=True)
    event_type = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16, help_text="the HMAC key the hash was made with")
    hash = models.CharField(max_length=64, unique=True)

    objects = models.Manager()  # scoped reads go through audit.events_for(firm)
    never_updated = "audit events are append-only: an event is never updated"
    never_deleted = "audit events are append-only: an event is never deleted"

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq")]
        # An object's events (the desk's account trail, a search by object): a few rows among
        # millions, found without walking the firm's chain.
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_event_object")]
        ordering = ["chain", "seq"]

    def __str__(self) -> str:
        return f"{self.chain}#{self.seq} {self.event_type}"

    def content(self) -> dict:
        """What the hash covers: everything but the hash itself."""
        return {
            "chain": self.chain,
            "seq": self.seq,
            "firm": self.firm_id,
            "actor": self.actor_id,
            "actor_role": self.actor_role,
            "event_type": self.event_type,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "before": self.before,
            "after": self.after,
            "request_id": self.request_id,
            "created_at": self.created_at.isoformat(),
        }

    def canonical(self) -> str:
        return json.dumps(self.content(), sort_keys=True, separators=(",", ":"),
                          cls=DjangoJSONEncoder)

    def compute_hash(self) -> str:
        """The row's HMAC under its key (`audit_keys.UnknownKey` if the key is not held)."""
        return hmac_keyring().row_hash(self.key_id, self.prev_hash, self.canonical())


class ApprovalRequest(TenantModel):
    """A change waiting for a second person (maker-checker), whatever the change is.

    What the change is lives in its subject (a proposed rule-set or parameter version, a PM
    application) or, when the subject cannot hold it (an extension's new due date), in
    `payload`. `drafted_on` is the version of what it would change when it was asked for: at
    decision time the current version must still be that one, or the request is stale
    (``brokerage.approvals.decide``). One table for every kind, so "awaiting a second person"
    is one query.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending (awaiting a second person)"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn by whoever asked"
        CLOSED = "closed", "Closed undecided (its subject moved on)"

    kind = models.CharField(max_length=40, help_text="the registered kind: who decides, how")
    subject_type = models.CharField(max_length=64, help_text="app_label.model of the subject")
    subject_id = models.PositiveBigIntegerField()
    summary = models.CharField(max_length=300, blank=True)
    payload = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder,
                               help_text="what is asked, where the subject does not hold it")
    drafted_on = models.PositiveIntegerField(help_text="version of what it changes, when asked")
    required_approvals = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                     related_name="+")
    requested_at = models.DateTimeField()
    makers = models.JSONField(default=dict, blank=True,
                              help_text="user id -> what they did (drafted, proposed, reviewed): "
                                        "none of them may decide it")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="the decision's or the closing's reason")

    class Meta(TenantModel.Meta):
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "subject_type", "subject_id"],
                                    condition=models.Q(state="pending"),
                                    name="one_pending_approval_per_subject"),
            models.CheckConstraint(condition=models.Q(required_approvals__gte=1),
                                   name="approval_needs_an_approver"),
        ]
        indexes = [models.Index(fields=["firm", "state", "kind"]),
                   models.Index(fields=["subject_type", "subject_id"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} on {self.subject_type}:{self.subject_id} ({self.state})"


class ApprovalDecision(AppendOnlyRecord, TenantModel):
    """One person's decision on one request: at most one each, never changed."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT,
                                related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="+")
    approve = models.BooleanField()
    reason = models.TextField(blank=True)
    decided_at = models.DateTimeField()

    objects = AppendOnlyTenantManager()
    never_updated = "a decision is a record: never changed"

    class Meta(TenantModel.Meta):
        ordering = ["request", "decided_at", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "user"],
                                               name="one_decision_per_person")]

    def __str__(self) -> str:
        return f"{self.user_id} {'approved' if self.approve else 'rejected'} {self.request_id}"


class ApiToken(TenantModel):
    """A script's credential: ``Authorization: Bearer <token>`` acts as `user`, with the user's
    role in the user's firm (or a platform user's platform role), optionally read-only and
    expiring (`brokerage.tokens`).

    Only the token's sha256 is stored (the secret is shown once, when it is created); `prefix`,
    its first characters, lets people tell tokens apart in lists and logs.
    """

    # A platform user's token (no firm) is issued from a shell only and audited on the
    # platform chain; the scoped manager never lists it to a firm.
    firm = models.ForeignKey(Firm, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    # What the token is for ("nightly risk export"), so its admin can tell tokens apart.
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)  # sha256 hex of the whole token
    read_only = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.GenericIPAddressField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["firm", "user"])]

    def __str__(self) -> str:
        return f"{self.prefix}... ({self.user_id})"
