"""Writing, reading and verifying the audit trail.

`record()` is called by every service that changes state, inside its transaction: it locks the
firm's chain head (SELECT ... FOR UPDATE), so concurrent writers append one after the other and
the chain never forks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from .audit_anchors import AnchorProblem, Checkpoint, read_anchors, signed, take_checkpoint
from .audit_keys import UnknownKey, hmac_keyring
from .errors import InvalidInput
from .models import AuditChainHead, AuditEvent, Firm
from .scope import current_request_id

PLATFORM_CHAIN = "platform"
ZERO_HASH = "0" * 64
MANIFEST_KIND = "pmargin.audit.export-manifest"


def chain_key(firm: Firm | None) -> str:
    return chain_key_of(firm.pk) if firm is not None else PLATFORM_CHAIN


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
        key_id=hmac_keyring().current_id,
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


def _first_bad_link(chain: str, checkpoint: Checkpoint | None) -> tuple[ChainBreak | None, int, str]:
    """Walk one chain: (the first broken link or None, the last seq, the last hash)."""
    expected_prev = ZERO_HASH
    expected_seq = 1
    for event in AuditEvent.objects.filter(chain=chain).order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return ChainBreak(chain, expected_seq, f"event #{expected_seq} is missing"), 0, ""
        if event.prev_hash != expected_prev:
            return (ChainBreak(chain, event.seq, "prev_hash does not match the previous event"),
                    0, "")
        try:
            altered = event.compute_hash() != event.hash
        except UnknownKey as exc:
            return ChainBreak(chain, event.seq, str(exc)), 0, ""
        if altered:
            return (ChainBreak(chain, event.seq, "content does not match its hash (altered)"),
                    0, "")
        if checkpoint is not None and event.seq == checkpoint.seq and event.hash != checkpoint.hash:
            return ChainBreak(chain, event.seq, (
                f"event #{event.seq} is not the one its signed checkpoint of "
                f"{checkpoint.taken_at} names (the chain was rewritten)")), 0, ""
        check = _content_checks.get(event.event_type)
        failure = check(event) if check is not None else None
        if failure:
            return ChainBreak(chain, event.seq, failure), 0, ""
        expected_prev, expected_seq = event.hash, expected_seq + 1
    return None, expected_seq - 1, expected_prev


def verify_chain(chain: str, checkpoint: Checkpoint | None = None) -> ChainBreak | None:
    """The first broken link of one chain, or None when every link holds: each row against its
    key, each link against the previous row, the head against the last row, and the chain
    against its latest signed checkpoint (`checkpoint`: it must still be there, unchanged)."""
    return _verified_through(chain, checkpoint)[0]


def _verified_through(chain: str, checkpoint: Checkpoint | None) -> tuple[ChainBreak | None, int]:
    """`verify_chain`'s answer and the last seq it walked (what a verification vouches for)."""
    broken, last_seq, last_hash = _first_bad_link(chain, checkpoint)
    if broken is not None:
        return broken, broken.seq - 1
    if checkpoint is not None and checkpoint.seq > last_seq:
        what = ("its events are gone (the chain was deleted)" if last_seq == 0 else
                f"the chain ends at #{last_seq} (events removed from the end)")
        return ChainBreak(chain, last_seq + 1, (
            f"the latest signed checkpoint ({checkpoint.taken_at}) is at #{checkpoint.seq} but "
            f"{what}")), last_seq
    head = AuditChainHead.objects.filter(chain=chain).first()
    if head is not None and (head.seq != last_seq or head.last_hash != last_hash):
        return ChainBreak(chain, last_seq + 1, "chain head does not match the last event "
                          "(events removed from the end)"), last_seq
    return None, last_seq


@dataclass(frozen=True)
class Verification:
    """`verify_all`'s answer: each chain's first break (None: it holds), the problems of the
    anchor files, and the latest checkpoint of each chain."""

    chains: dict[str, ChainBreak | None]
    anchor_problems: list[AnchorProblem]
    checkpoints: dict[str, Checkpoint]
    #: each chain's last seq whose links held (the whole chain when it is not broken)
    through: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.anchor_problems and all(b is None for b in self.chains.values())


def verify_all(chains: list[str] | None = None) -> Verification:
    """Every chain (or those named) against the key and the latest signed checkpoints. Every
    firm has a chain, and every chain a checkpoint names must still exist: a chain deleted
    with its head is a break of that chain, not a chain that is not there."""
    checkpoints, anchor_problems = read_anchors()
    if chains is None:
        firm_chains = {chain_key_of(pk) for pk in Firm.objects.values_list("pk", flat=True)}
        chains = sorted(firm_chains | set(checkpoints)
                        | set(AuditChainHead.objects.values_list("chain", flat=True))
                        | set(AuditEvent.objects.values_list("chain", flat=True).distinct()))
    else:
        firm_chains = {c for c in chains if c.startswith("firm:")}
    results: dict[str, ChainBreak | None] = {}
    through: dict[str, int] = {}
    for chain in chains:
        broken, through[chain] = _verified_through(chain, checkpoints.get(chain))
        if broken is None and chain in firm_chains and not AuditEvent.objects.filter(
                chain=chain).exists():
            broken = ChainBreak(chain, 1, "the firm has no audit chain (deleted?)")
        results[chain] = broken
    return Verification(results, anchor_problems, {c: checkpoints[c] for c in chains
                                                   if c in checkpoints}, through)


VERIFIED = "audit.verified"
#: the events that carry a verification of the firm's chain (an export verifies before it starts)
VERIFYING_EVENTS = (VERIFIED, "audit.exported")


def verify_firm_chain(*, firm: Firm, actor) -> AuditEvent:
    """Verify one firm's chain against the key and its latest signed checkpoint (what
    ``verify_audit_chain --firm`` does) and record the result on that chain, in the same shape
    as an export's (``through``, ``checkpoints``, ``verified``, ``broken``): the compliance
    officer's evidence that the trail was checked, when, by whom and up to which event. No
    checkpoint is taken first: a new one would sign whatever the head is now, and the check is
    against the last one signed before anyone could have touched the rows."""
    chain = chain_key(firm)
    verification = verify_all(chains=[chain])
    broken = verification.chains.get(chain)
    checkpoint = verification.checkpoints.get(chain)
    with transaction.atomic():
        return record(firm=firm, actor=actor, event_type=VERIFIED, object_type="audit.chain",
                      object_id=chain,
                      after={"through": {chain: verification.through.get(chain, 0)},
                             "checkpoints": [checkpoint.as_dict()] if checkpoint else [],
                             "verified": verification.ok,
                             "broken": {chain: f"#{broken.seq}: {broken.reason}"} if broken
                             else {},
                             "anchor_problems": [f"{p.file}: {p.reason}"
                                                 for p in verification.anchor_problems]})


def chain_key_of(firm_id: int) -> str:
    return f"firm:{firm_id}"


def checkpoint_all(*, reason: str) -> list[Checkpoint]:
    """Sign every chain's head into the anchor directory (beat, the end of seed_demo). Call it
    after the heads it covers are committed."""
    return take_checkpoint(reason=reason)


# Exports --------------------------------------------------------------------------------------

EXPORT_COLUMNS = ["chain", "seq", "firm", "actor", "actor_role", "event_type", "object_type",
                  "object_id", "before", "after", "request_id", "created_at", "key_id",
                  "prev_hash", "hash"]
FILE_FORMATS = ("csv", "jsonl")
EXPORTED, EXPORTED_CROSS_FIRM = "audit.exported", "audit.exported_cross_firm"


@dataclass(frozen=True)
class ExportRequest:
    """What an export covers: a date range (inclusive, in `time_zone`), event types (none:
    every type), and the file's format."""

    file_format: str = "jsonl"
    since: date | None = None
    until: date | None = None
    event_types: tuple[str, ...] = ()
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        if self.file_format not in FILE_FORMATS:
            raise InvalidInput(f"{self.file_format!r} is not a file format: csv or jsonl",
                               field="file_format")
        if self.since and self.until and self.since > self.until:
            raise InvalidInput(f"since ({self.since}) is after until ({self.until})",
                               field="since")
        for event_type in self.event_types:
            if not event_type or len(event_type) > 64:
                raise InvalidInput(f"{event_type!r} is not an event type", field="event_type")

    def as_dict(self) -> dict[str, Any]:
        return {"file_format": self.file_format,
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "event_types": sorted(self.event_types), "time_zone": self.time_zone}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> ExportRequest:
        return cls(file_format=spec["file_format"],
                   since=date.fromisoformat(spec["since"]) if spec["since"] else None,
                   until=date.fromisoformat(spec["until"]) if spec["until"] else None,
                   event_types=tuple(spec["event_types"]), time_zone=spec["time_zone"])


def _exported_events(through: dict[str, int], request: ExportRequest
                     ) -> models.QuerySet[AuditEvent]:
    """The rows of an export: each chain up to the seq its checkpoint names, filtered."""
    if not through:
        return AuditEvent.objects.none()
    covered = models.Q()
    for chain, seq in through.items():
        covered |= models.Q(chain=chain, seq__lte=seq)
    events = AuditEvent.objects.filter(covered)
    zone = zoneinfo.ZoneInfo(request.time_zone)
    if request.since:
        events = events.filter(created_at__gte=datetime.combine(request.since, time(), zone))
    if request.until:
        events = events.filter(created_at__lt=datetime.combine(
            request.until + timedelta(days=1), time(), zone))
    if request.event_types:
        events = events.filter(event_type__in=request.event_types)
    return events.order_by("chain", "seq")


def export_row(event: AuditEvent) -> dict[str, Any]:
    """One exported row: content, key id and hashes, so a reader can follow every link."""
    return {**event.content(), "key_id": event.key_id, "prev_hash": event.prev_hash,
            "hash": event.hash}


def _lines(events: models.QuerySet[AuditEvent], file_format: str
           ) -> Iterator[tuple[bytes, str | None]]:
    """(bytes of one line, the row's hash or None for the CSV header), streamed."""
    if file_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")

        def line(values: list[Any]) -> bytes:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(values)
            return buffer.getvalue().encode()

        yield line(EXPORT_COLUMNS), None
        for event in events.iterator(chunk_size=2000):
            row = export_row(event)
            yield line([_csv_cell(row[c]) for c in EXPORT_COLUMNS]), event.hash
    else:
        for event in events.iterator(chunk_size=2000):
            text = json.dumps(export_row(event), sort_keys=True, separators=(",", ":"),
                              cls=DjangoJSONEncoder)
            yield (text + "\n").encode(), event.hash


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return str(value)


def _start_export(*, firm: Firm | None, actor, request: ExportRequest, event_type: str,
                  chains: list[str] | None, extra: dict[str, Any]) -> AuditEvent:
    """Checkpoint the chains exported, verify them, then record the export (what it covers
    and through which checkpoint), committed before a byte is sent."""
    checkpoints = take_checkpoint(reason="export", chains=chains)
    verification = verify_all(chains=[c.chain for c in checkpoints])
    broken = {chain: f"#{b.seq}: {b.reason}" for chain, b in verification.chains.items() if b}
    with transaction.atomic():
        return record(firm=firm, actor=actor, event_type=event_type, object_type="audit.chain",
                      object_id=chain_key(firm) if firm is not None else "*",
                      after={**request.as_dict(), **extra,
                             "through": {c.chain: c.seq for c in checkpoints},
                             "checkpoints": [c.as_dict() for c in checkpoints],
                             "verified": not broken and not verification.anchor_problems,
                             "broken": broken})


def start_firm_export(*, firm: Firm, actor, request: ExportRequest) -> AuditEvent:
    """A firm's own trail, as its compliance officer or admin exports it. Returns the export's
    audit event (on the firm's chain), from which the file and its manifest are rendered."""
    return _start_export(firm=firm, actor=actor, request=request, event_type=EXPORTED,
                         chains=[chain_key(firm)], extra={})


def start_cross_firm_export(*, actor, reason: str, request: ExportRequest) -> AuditEvent:
    """Every chain, for the platform auditor: the one explicit cross-firm read of the trail,
    recorded on the platform chain with its reason."""
    if not reason or not reason.strip():
        raise InvalidInput("a cross-firm export states its reason", field="reason")
    return _start_export(firm=None, actor=actor, request=request,
                         event_type=EXPORTED_CROSS_FIRM, chains=None,
                         extra={"reason": reason.strip()})


def export_lines(export: AuditEvent) -> Iterator[bytes]:
    """The export file's bytes, streamed (the same bytes every time: rows never change)."""
    spec = export.after
    for line, _ in _lines(_exported_events(spec["through"], ExportRequest.from_dict(spec)),
                          spec["file_format"]):
        yield line


def export_manifest(export: AuditEvent) -> dict[str, Any]:
    """The signed manifest of an export: the file's sha256 and row count, what it covers, its
    first and last hash, the checkpoints it ends on, the firm and who exported it. Read it
    with `verify_audit_chain --export FILE --manifest FILE --public-key FILE`."""
    spec = export.after
    digest = hashlib.sha256()
    rows, first, last = 0, None, None
    for line, row_hash in _lines(_exported_events(spec["through"], ExportRequest.from_dict(spec)),
                                 spec["file_format"]):
        digest.update(line)
        if row_hash is not None:
            rows, first, last = rows + 1, first or row_hash, row_hash
    firm = export.firm
    return signed({
        "kind": MANIFEST_KIND, "version": 1,
        "file": {"name": export_file_name(export), "format": spec["file_format"],
                 "sha256": digest.hexdigest(), "rows": rows},
        "range": {k: spec[k] for k in ("since", "until", "event_types", "time_zone")},
        "through": spec["through"], "first_hash": first, "last_hash": last,
        "checkpoints": spec["checkpoints"], "verified": spec["verified"],
        "broken": spec["broken"],
        "firm": ({"id": firm.pk, "slug": firm.slug, "name": firm.name} if firm else None),
        "reason": spec.get("reason"),
        "exported_by": {"user": export.actor.username if export.actor else None,
                        "role": export.actor_role},
        "exported_at": export.created_at.isoformat(),
        "export_event": {"chain": export.chain, "seq": export.seq, "hash": export.hash},
    })


def export_manifest_text(export: AuditEvent) -> str:
    """The manifest as the file written beside an export (the command's, the desk's download)."""
    return json.dumps(export_manifest(export), indent=1, sort_keys=True) + "\n"


def export_file_name(export: AuditEvent) -> str:
    who = export.firm.slug if export.firm else "all-firms"
    return f"audit-{who}-{export.seq}.{export.after['file_format']}"
