"""One maker-checker for everything that needs two people.

A change that needs a second person is an `ApprovalRequest`: a kind (``"risk_parameters"``,
``"rule_set"``, ``"pm_application"``; next margin-call extensions, waivers, liquidation plans),
its subject, the version of what it would change when it was asked for (`drafted_on`), who
asked and everyone else who worked on it (the makers). The rules live here and only here:

- the requester, and every maker, never decides (`FourEyesViolation`);
- one decision per person (`ApprovalDecision`, unique per request and user);
- a request is decided once: a second decision finds it decided (`Conflict`);
- at approval the current version of what it changes must still be `drafted_on`, and the one
  the decider read (`expected_version`, what the API's ETag carries) when given: otherwise
  something was approved in between and approving would silently undo it (`Conflict`);
- the change is re-validated when it is applied, not only when it was asked for.

`decide` does all of it in one transaction with the audit event: lock what the kind serialises
on and the subject, lock the request, check, record the decision, re-validate, apply. The lock
order is always the same (the kind's rows, then the request, then the audit chain head, which
`audit.record` takes last), and the subject's own workflow takes its row before closing a
request (`close_pending`), so deciders and the workflow never wait on each other in a circle.

Each app registers its kind (`register`) with callbacks: how to lock the subject, the current
version of what it changes, who may decide (roles, designated approvers), re-validation, and
what approving and rejecting do to the subject. This module imports no app; apps import it.
Their service functions (`approve_rule_set`, `approve_parameters`, `approve_application`) are
thin wrappers that find the request and call `decide`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from . import audit
from .errors import Conflict, DomainError, FourEyesViolation, NotFound, NotPermitted
from .models import ApprovalDecision, ApprovalRequest, Firm
from .scope import lock_in_firm

State = ApprovalRequest.State

#: makers' entries: user id (as the JSON key, a string) -> what they did, in order
Makers = Mapping[str, list[str]]


@dataclass
class Ruling:
    """One decision being taken: what the callbacks see. `context` carries the caller's extras
    (the business date of an application's approval) and what re-validation found for apply."""

    request: ApprovalRequest
    subject: Any
    decider: Any
    approve: bool
    reason: str
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def verb(self) -> str:
        return "approve" if self.approve else "reject"


@dataclass(frozen=True)
class Change:
    """What the audit event of a decision records of the subject, before and after."""

    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(frozen=True)
class Refusal:
    """Re-validation refused the approval, and what it judged stays on record (an eligibility
    evaluation that failed): the transaction commits the record and the audit event, the
    request stays pending, and `error` is raised after commit. A refusal that needs nothing
    kept simply raises, and everything rolls back."""

    error: DomainError
    record: dict[str, Any] = field(default_factory=dict)


def _valid(ruling: Ruling) -> Refusal | None:
    return None


@dataclass(frozen=True)
class ApprovalKind:
    """How one kind of request is decided. Every callback runs inside `decide`'s transaction."""

    name: str
    subject_model: str  # app_label.model of the subject
    audit_prefix: str  # events "<prefix>.approved", "<prefix>.rejected", ...
    #: lock and return the subject, after whatever serialises deciders of what it changes
    #: (the firm row for a firm's active version), so the version read next cannot move
    lock: Callable[[ApprovalRequest], Any]
    #: the version of what the request would change, now
    current_version: Callable[[Any], int]
    #: "rule set v3", "application #12": how messages name the subject
    describe: Callable[[Any], str]
    #: who may decide (role, designated approvers) and what a decision needs (reasons); raises
    authorize: Callable[[Ruling], None]
    #: make the approved change; what the audit event records
    apply: Callable[[Ruling], Change]
    #: mark the subject turned down (rejected, or withdrawn by whoever asked)
    reject: Callable[[Ruling], Change]
    #: the change checked again at apply time; raise, or return a Refusal to keep a record
    revalidate: Callable[[Ruling], Refusal | None] = _valid
    #: what `drafted_on` is a version of, and what to do when it moved
    target: str = "what it changes"
    remedy: str = "ask again"
    required_approvals: int = 1


_KINDS: dict[str, ApprovalKind] = {}


def register(kind: ApprovalKind) -> ApprovalKind:
    """Register a kind (apps do it when their services module is imported). Re-registering
    the same name replaces it, so a module reload does not fail."""
    if kind.required_approvals < 1:
        raise ValueError("a kind needs at least one approver besides its makers")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def kind_of(name: str) -> ApprovalKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise LookupError(f"no approval kind {name!r} is registered (is its app installed?)") \
            from None


# Four eyes --------------------------------------------------------------------------------------

def makers_of(*entries: tuple[Any, str]) -> dict[str, list[str]]:
    """`makers` from (user, what they did) pairs, users given more than once merged in order."""
    makers: dict[str, list[str]] = {}
    for user, did in entries:
        if user is None:
            continue
        pk = user if isinstance(user, int) else user.pk
        done = makers.setdefault(str(pk), [])
        if did not in done:
            done.append(did)
    return makers


def check_four_eyes(*, makers: Makers, user, subject: str, doing: str) -> None:
    """Refuse `user` if they worked on `subject`: the one four-eyes rule, for `decide` and for
    whoever names approvers ahead of a request (an application's designated approver)."""
    did = makers.get(str(user.pk))
    if did:
        raise FourEyesViolation(
            f"{user.username} {' and '.join(did)} {subject} and so cannot {doing} it: "
            "a second person decides (four eyes)", field="approver")


# Asking ---------------------------------------------------------------------------------------

def _label(subject: models.Model) -> str:
    return subject._meta.label_lower


def request_approval(*, kind: str, firm: Firm, subject: models.Model, requested_by,
                     drafted_on: int, makers: Makers | None = None, summary: str = "",
                     payload: dict[str, Any] | None = None) -> ApprovalRequest:
    """Open a request for `subject`. Runs inside the caller's transaction, which wrote the
    subject and records the audit event of asking (it names the request), so the request and
    its reason for being are one fact."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("request_approval() runs inside the transaction that made its subject")
    registered = kind_of(kind)
    if _label(subject) != registered.subject_model:
        raise TypeError(f"a {kind} request is about a {registered.subject_model}, "
                        f"not a {_label(subject)}")
    everyone = {**(makers or {})}
    everyone.setdefault(str(requested_by.pk), ["asked for"])
    return ApprovalRequest.objects.create(
        firm=firm, kind=kind, subject_type=registered.subject_model, subject_id=subject.pk,
        summary=summary[:300], payload=payload or {}, drafted_on=drafted_on,
        required_approvals=registered.required_approvals, requested_by=requested_by,
        requested_at=timezone.now(), makers=everyone)


def request_for(*, kind: str, subject: models.Model) -> ApprovalRequest | None:
    """The latest request about `subject` (pending, or how it ended), or None."""
    return (ApprovalRequest.objects.filter(kind=kind, subject_type=_label(subject),
                                           subject_id=subject.pk)
            .order_by("-requested_at", "-pk").first())


def request_of(*, kind: str, subject: models.Model) -> ApprovalRequest:
    """`request_for`, refusing a subject that was never asked about (a version adopted without
    a second person, such as the house defaults)."""
    found = request_for(kind=kind, subject=subject)
    if found is None:
        raise Conflict(f"{kind_of(kind).describe(subject)} is not awaiting a decision",
                       field="state")
    return found


def pending(*, kinds: Iterable[str] | None = None) -> models.QuerySet[ApprovalRequest]:
    """The firm's requests awaiting a second person, oldest first (the desk's queue)."""
    queue = ApprovalRequest.objects.filter(state=State.PENDING)
    if kinds is not None:
        queue = queue.filter(kind__in=list(kinds))
    return queue.order_by("requested_at", "pk")


def awaiting(*, user, kinds: Iterable[str] | None = None) -> models.QuerySet[ApprovalRequest]:
    """What `user` could still decide: pending, not worked on by them, not yet decided by them
    (their kind's role rules aside)."""
    return (pending(kinds=kinds).exclude(makers__has_key=str(user.pk))
            .exclude(decisions__user=user))


# Deciding -------------------------------------------------------------------------------------

def _in_scope(request: ApprovalRequest) -> None:
    # Before any lock: another firm's request reads as missing, whatever its kind's lock does.
    if not ApprovalRequest.objects.filter(pk=request.pk).exists():
        raise NotFound("no such approval request in your firm")


def _lock_request(request: ApprovalRequest) -> ApprovalRequest:
    return lock_in_firm(ApprovalRequest, request.pk,
                        missing=NotFound("no such approval request in your firm"))


def _check_open(request: ApprovalRequest, subject: str) -> None:
    if request.state == State.PENDING:
        return
    who = request.decided_by.username if request.decided_by_id else "the system"
    when = f" at {request.decided_at:%Y-%m-%d %H:%M:%S %Z}" if request.decided_at else ""
    raise Conflict(f"{subject} was already {request.state} by {who}{when}", field="state")


def _check_versions(kind: ApprovalKind, request: ApprovalRequest, subject: Any, label: str,
                    *, approve: bool, expected_version: int | None) -> None:
    current = kind.current_version(subject)
    if expected_version is not None and expected_version != current:
        raise Conflict(f"{label} is at version {current}, not {expected_version}: it changed "
                       "since you read it", field="version")
    # Only approving changes anything: turning a stale request down is allowed, and is how
    # it leaves the queue.
    if approve and current != request.drafted_on:
        raise Conflict(f"{label} was drafted on version {request.drafted_on} of {kind.target}; "
                       f"version {current} is in force now: {kind.remedy}", field="version")


def _record(kind: ApprovalKind, ruling: Ruling, event: str, change: Change,
            **extra: Any) -> None:
    audit.record(firm=ruling.request.firm, actor=ruling.decider,
                 event_type=f"{kind.audit_prefix}.{event}", obj=ruling.subject,
                 before=change.before,
                 after={**(change.after or {}), "approval_request": ruling.request.pk, **extra})


def _close(request: ApprovalRequest, *, state: str, by, reason: str) -> None:
    request.state, request.decided_by = state, by
    request.decided_at, request.reason = timezone.now(), reason
    request.save(update_fields=["state", "decided_by", "decided_at", "reason"])


def decide(*, request: ApprovalRequest, decider, approve: bool, reason: str = "",
           expected_version: int | None = None, **context: Any) -> ApprovalRequest:
    """Approve or reject `request` as `decider`, in one transaction with its audit event.

    Concurrent deciders queue on the locks and the later one finds the request decided
    (`Conflict`). Returns the request as it ends (approved, rejected, or still pending when
    the kind wants more approvers than have approved).
    """
    kind = kind_of(request.kind)
    _in_scope(request)
    refusal: Refusal | None = None
    with transaction.atomic():
        subject = kind.lock(request)
        locked = _lock_request(request)
        label = kind.describe(subject)
        ruling = Ruling(request=locked, subject=subject, decider=decider, approve=approve,
                        reason=(reason or "").strip(), context=dict(context))
        kind.authorize(ruling)
        _check_open(locked, label)
        check_four_eyes(makers=locked.makers, user=decider, subject=label, doing=ruling.verb)
        if locked.decisions.filter(user=decider).exists():
            raise Conflict(f"{decider.username} has already decided {label}: one decision per "
                           "person", field="approver")
        _check_versions(kind, locked, subject, label, approve=approve,
                        expected_version=expected_version)
        approved = locked.decisions.filter(approve=True).count() + (1 if approve else 0)
        final = not approve or approved >= locked.required_approvals
        if final and approve:
            refusal = kind.revalidate(ruling)
        if refusal is not None:
            # The approval does not stand (no decision row); what was judged stays on record.
            audit.record(firm=locked.firm, actor=decider,
                         event_type=f"{kind.audit_prefix}.approval_refused", obj=subject,
                         after={**refusal.record, "approval_request": locked.pk,
                                "errors": refusal.error.errors})
        else:
            ApprovalDecision.objects.create(firm=locked.firm, request=locked, user=decider,
                                            approve=approve, reason=ruling.reason,
                                            decided_at=timezone.now())
            if not final:
                _record(kind, ruling, "approval_recorded", Change(),
                        approvals=approved, required=locked.required_approvals)
            else:
                change = kind.apply(ruling) if approve else kind.reject(ruling)
                _close(locked, state=State.APPROVED if approve else State.REJECTED, by=decider,
                       reason=ruling.reason)
                _record(kind, ruling, "approved" if approve else "rejected", change,
                        reason=ruling.reason)
    if refusal is not None:
        raise refusal.error
    return locked


def withdraw(*, request: ApprovalRequest, actor, reason: str) -> ApprovalRequest:
    """Whoever asked (or another maker) takes the request back; the subject is turned down as
    on a rejection. Not a decision: it needs no second person, since it changes nothing."""
    kind = kind_of(request.kind)
    _in_scope(request)
    with transaction.atomic():
        subject = kind.lock(request)
        locked = _lock_request(request)
        label = kind.describe(subject)
        ruling = Ruling(request=locked, subject=subject, decider=actor, approve=False,
                        reason=(reason or "").strip())
        kind.authorize(ruling)
        _check_open(locked, label)
        if str(actor.pk) not in locked.makers:
            raise NotPermitted(f"only whoever asked for {label} may withdraw it; "
                               "anyone else decides it", field="approver")
        change = kind.reject(ruling)
        _close(locked, state=State.WITHDRAWN, by=actor, reason=ruling.reason)
        _record(kind, ruling, "withdrawn", change, reason=ruling.reason)
    return locked


def turn_down(*, request: ApprovalRequest, actor, reason: str) -> ApprovalRequest:
    """No to a proposal: from whoever asked, a withdrawal (no second person is needed to change
    nothing); from anyone else, a rejection, a decision like any other."""
    if request.state == State.PENDING and str(actor.pk) in request.makers:
        return withdraw(request=request, actor=actor, reason=reason)
    return decide(request=request, decider=actor, approve=False, reason=reason)


def close_pending(*, kind: str, subject: models.Model, reason: str, by=None
                  ) -> ApprovalRequest | None:
    """Close the subject's pending request, undecided, because the subject moved on by its
    own workflow (an application gone stale, withdrawn or expired). Runs inside the caller's
    transaction, which holds the subject's lock and records the audit event of the move."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("close_pending() runs inside the transaction that moves its subject")
    found = ApprovalRequest.objects.select_for_update().filter(
        kind=kind, subject_type=_label(subject), subject_id=subject.pk,
        state=State.PENDING).first()
    if found is not None:
        _close(found, state=State.CLOSED, by=by if by is not None and by.pk else None,
               reason=reason)
    return found
