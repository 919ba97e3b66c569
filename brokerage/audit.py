"""Writing, reading and verifying the audit trail.

`record()` is called by every service that changes state, inside its transaction: it locks the
firm's chain head (SELECT ... FOR UPDATE), so concurrent writers append one after the other and
the chain never forks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from .models import AuditChainHead, AuditEvent, Firm
from .scope import current_request_id

PLATFORM_CHAIN = "platform"


def chain_key(firm: Firm | None) -> str:
    return f"firm:{firm.pk}" if firm is not None else PLATFORM_CHAIN


def _jsonable(value: Any) -> Any:
    # Round-trip through the encoder so the stored JSON is exactly what was hashed.
    return None if value is None else json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _role_of(user) -> str:
    """The actor's role as the trail shows it: a firm role, `platform_<role>`, or system."""
    if user is None:
        return "system"
    if not user.pk:
        return ""
    membership = getattr(user, "membership", None)
    if membership is not None:
        return membership.role
    platform_role = getattr(user, "platform_role", None)
    return f"platform_{platform_role.role}" if platform_role is not None else ""


def record(
    *,
    firm: Firm | None,
    actor,
    event_type: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append one event to the firm's chain. Must run inside the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record() runs inside the transaction of the change it records")
    key = chain_key(firm)
    AuditChainHead.objects.get_or_create(chain=key)
    head = AuditChainHead.objects.select_for_update().get(chain=key)
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    event = AuditEvent(
        chain=key,
        seq=head.seq + 1,
        firm=firm,
        actor=actor if actor is not None and actor.pk else None,
        actor_role=_role_of(actor),
        event_type=event_type,
        object_type=object_type,
        object_id=str(object_id),
        before=_jsonable(before),
        after=_jsonable(after),
        request_id=current_request_id(),
        created_at=timezone.now(),
        prev_hash=head.last_hash,
    )
    event.hash = event.compute_hash()
    event.save()
    head.seq, head.last_hash = event.seq, event.hash
    head.save(update_fields=["seq", "last_hash"])
    return event


def events_for(firm: Firm) -> models.QuerySet[AuditEvent]:
    """One firm's trail, in chain order (what its compliance officer exports)."""
    return AuditEvent.objects.filter(chain=chain_key(firm)).order_by("seq")


#: event type -> a check of the rows the event vouches for (returns why they fail, or None)
ContentCheck = Callable[[AuditEvent], "str | None"]
_content_checks: dict[str, ContentCheck] = {}


def register_content_check(event_type: str, check: ContentCheck) -> None:
    """Let an app vouch for rows an event summarises (e.g. margin's snapshot chunks: one event
    with a digest instead of one per row). The core imports no app: apps register here from
    their AppConfig.ready, and ``verify_chain`` runs the check on every such event."""
    _content_checks[event_type] = check


@dataclass(frozen=True)
class ChainBreak:
    chain: str
    seq: int
    reason: str


def verify_chain(chain: str) -> ChainBreak | None:
    """The first broken link of one chain, or None when every link holds."""
    expected_prev = "0" * 64
    expected_seq = 1
    for event in AuditEvent.objects.filter(chain=chain).order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return ChainBreak(chain, expected_seq, f"event #{expected_seq} is missing")
        if event.prev_hash != expected_prev:
            return ChainBreak(chain, event.seq, "prev_hash does not match the previous event")
        if event.compute_hash() != event.hash:
            return ChainBreak(chain, event.seq, "content does not match its hash (altered)")
        check = _content_checks.get(event.event_type)
        failure = check(event) if check is not None else None
        if failure:
            return ChainBreak(chain, event.seq, failure)
        expected_prev, expected_seq = event.hash, expected_seq + 1
    head = AuditChainHead.objects.filter(chain=chain).first()
    if head is not None and (head.seq != expected_seq - 1 or head.last_hash != expected_prev):
        return ChainBreak(chain, expected_seq, "chain head does not match the last event "
                          "(events removed from the end)")
    return None


def export_rows(events: models.QuerySet[AuditEvent]) -> list[dict[str, Any]]:
    """Rows for a compliance export: content plus hashes, so a reader can re-verify."""
    return [{**event.content(), "prev_hash": event.prev_hash, "hash": event.hash}
            for event in events]


def export_for_firm(*, firm: Firm, actor) -> list[dict[str, Any]]:
    """A firm's own trail, as its compliance officer exports it (the export is itself audited)."""
    with transaction.atomic():
        rows = export_rows(events_for(firm))
        record(firm=firm, actor=actor, event_type="audit.exported", object_type="audit.chain",
               object_id=chain_key(firm), after={"events": len(rows)})
    return rows


def export_cross_firm(*, actor, reason: str) -> dict[str, list[dict[str, Any]]]:
    """Every chain, for a platform operator: the one explicit cross-firm read of the trail,
    recorded on the platform chain with its reason."""
    if not reason:
        raise ValueError("a cross-firm export states its reason")
    with transaction.atomic():
        chains = sorted(AuditEvent.objects.values_list("chain", flat=True).distinct())
        exported = {chain: export_rows(AuditEvent.objects.filter(chain=chain).order_by("seq"))
                    for chain in chains}
        record(firm=None, actor=actor, event_type="audit.exported_cross_firm",
               object_type="audit.chain", object_id="*",
               after={"reason": reason, "chains": {c: len(r) for c, r in exported.items()}})
    return exported
