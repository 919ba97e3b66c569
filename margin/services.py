"""Writes to a firm's risk parameters: proposed by one staff member, approved by another.

A firm's parameter set is the platform default (shipped with the code) plus the firm's
overrides of the sections it may change (``engine.parameters.FIRM_SECTIONS``: the house layer,
SPAN, the DeFi tables such as the size-tiered haircuts, VaR and what snapshots compute). The
regulatory layer (portfolio-margin points and offsets, Reg T) is the platform's alone.

A change is a new version: proposed (validated, audited) with the active version it was drafted
on, then decided through ``brokerage.approvals`` (kind ``risk_parameters``): a different firm
admin or risk officer approves (four eyes, as for eligibility rule sets), and only while the
version it was drafted on is still the active one, so approving a stale proposal never undoes
a change approved in between; approval supersedes the active version and marks the firm's accounts
dirty after commit. Or it is rejected (by its proposer: withdrawn). Old versions stay.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from brokerage import approvals, audit
from brokerage.errors import Conflict, InvalidInput, NotPermitted
from brokerage.models import ApprovalRequest, Firm
from brokerage.roles import Role
from brokerage.tenancy import firm_of, role_of

from .dirty import mark_firm
from .engine.parameters import DEFAULT_PARAMETER_SET, check_overrides, load_parameter_set
from .models import RiskParameterSet

__all__ = ["Conflict", "NotPermitted", "RiskParameterError", "active_parameter_set",
           "approve_parameters", "propose_parameters", "reject_parameters"]

#: who may propose and approve a firm's risk parameters
PARAMETER_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER})
APPROVAL_KIND = "risk_parameters"


class RiskParameterError(InvalidInput):
    """A refused change, every problem listed as (field, code, message)."""

    def __init__(self, errors: list[tuple[str, str, str]]) -> None:
        super().__init__(errors=[(f or "overrides", c, m) for f, c, m in errors])


def _require_role(actor, firm: Firm, doing: str) -> None:
    if firm_of(actor) != firm or role_of(actor) not in PARAMETER_ROLES:
        raise NotPermitted(f"only the firm's admins and risk officers may {doing}")


def active_parameter_set(firm: Firm) -> RiskParameterSet | None:
    return (RiskParameterSet.objects.filter(firm=firm, status=RiskParameterSet.Status.ACTIVE)
            .order_by("-version").first())


def _active_version(firm: Firm) -> int:
    active = active_parameter_set(firm)
    return active.version if active is not None else 0


def _check(base: str, overrides: Any) -> None:
    try:
        base_set = load_parameter_set(base)
    except KeyError:
        raise RiskParameterError([("base", "unknown", f"no parameter set {base!r}")]) from None
    problems = check_overrides(base_set, overrides)
    if problems:
        raise RiskParameterError([(f"overrides.{path}" if path else "overrides", "invalid", message)
                                  for path, message in problems])


def propose_parameters(*, firm: Firm, actor, overrides: Any, reason: str,
                       base: str = DEFAULT_PARAMETER_SET) -> RiskParameterSet:
    """A new version holding the firm's complete overrides (not a diff of the active one)."""
    _require_role(actor, firm, "propose risk parameters")
    if not (reason or "").strip():
        raise RiskParameterError([("reason", "required", "say why the parameters change")])
    _check(base, overrides)
    with transaction.atomic():
        Firm.objects.select_for_update().get(pk=firm.pk)  # versions are numbered one at a time
        latest = RiskParameterSet.objects.filter(firm=firm).aggregate(v=Max("version"))["v"]
        drafted_on = _active_version(firm)
        proposal = RiskParameterSet.objects.create(
            firm=firm, version=(latest or 0) + 1, base=base, overrides=overrides,
            status=RiskParameterSet.Status.PROPOSED, reason=reason.strip(), created_by=actor,
            drafted_on=drafted_on)
        request = approvals.request_approval(
            kind=APPROVAL_KIND, firm=firm, subject=proposal, requested_by=actor,
            drafted_on=drafted_on, makers=approvals.makers_of((actor, "proposed")),
            summary=f"risk parameters v{proposal.version}: {proposal.reason}")
        audit.record(firm=firm, actor=actor, event_type="risk_parameters.proposed", obj=proposal,
                     after={"version": proposal.version, "base": base, "overrides": overrides,
                            "reason": proposal.reason, "drafted_on": drafted_on,
                            "approval_request": request.pk})
    return proposal


def approve_parameters(*, proposal: RiskParameterSet, actor, reason: str = "",
                       expected_version: int | None = None) -> RiskParameterSet:
    """Activate a proposal (superseding the active version); the firm's accounts are marked
    dirty on commit.
    `expected_version`: the active version the approver saw, when they say."""
    approvals.decide(request=approvals.request_of(kind=APPROVAL_KIND, subject=proposal),
                     decider=actor, approve=True, reason=reason,
                     expected_version=expected_version)
    return RiskParameterSet.objects.get(pk=proposal.pk)


def reject_parameters(*, proposal: RiskParameterSet, actor, reason: str) -> RiskParameterSet:
    """Turn a proposal down; its proposer turning it down withdraws it (no second person is
    needed to change nothing)."""
    if not (reason or "").strip():
        raise RiskParameterError([("reason", "required", "say why the proposal is rejected")])
    approvals.turn_down(request=approvals.request_of(kind=APPROVAL_KIND, subject=proposal),
                        actor=actor, reason=reason)
    return RiskParameterSet.objects.get(pk=proposal.pk)


# The approval kind: how brokerage.approvals decides a proposal -------------------------------

def _lock(request: ApprovalRequest) -> RiskParameterSet:
    # The firm row first: every decision on the firm's parameters queues behind it, so the
    # active version read next cannot change before this decision commits.
    Firm.objects.select_for_update().get(pk=request.firm_id)
    return RiskParameterSet.objects.select_for_update().get(pk=request.subject_id)


def _authorize(ruling: approvals.Ruling) -> None:
    _require_role(ruling.decider, ruling.subject.firm, f"{ruling.verb} risk parameters")


def _revalidate(ruling: approvals.Ruling) -> None:
    # The platform's bounds may have moved (a release) since the proposal was checked.
    _check(ruling.subject.base, ruling.subject.overrides)


def _apply(ruling: approvals.Ruling) -> approvals.Change:
    proposal: RiskParameterSet = ruling.subject
    previous = active_parameter_set(proposal.firm)
    if previous is not None:
        previous.status = RiskParameterSet.Status.SUPERSEDED
        previous.save(update_fields=["status"])
    _close(proposal, ruling, RiskParameterSet.Status.ACTIVE)
    mark_firm(proposal.firm_id)  # every account of the firm, in the approval's transaction
    return approvals.Change(
        before={"version": previous.version if previous else None,
                "overrides": previous.overrides if previous else {}},
        after={"version": proposal.version, "overrides": proposal.overrides})


def _reject(ruling: approvals.Ruling) -> approvals.Change:
    _close(ruling.subject, ruling, RiskParameterSet.Status.REJECTED)
    return approvals.Change(after={"version": ruling.subject.version})


def _close(proposal: RiskParameterSet, ruling: approvals.Ruling, status: str) -> None:
    proposal.status = status
    proposal.decided_by, proposal.decided_at = ruling.decider, timezone.now()
    proposal.decision_reason = ruling.reason
    proposal.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])


approvals.register(approvals.ApprovalKind(
    name=APPROVAL_KIND, subject_model="margin.riskparameterset", audit_prefix="risk_parameters",
    lock=_lock, current_version=lambda proposal: _active_version(proposal.firm),
    describe=lambda proposal: f"risk parameters v{proposal.version}",
    authorize=_authorize, revalidate=_revalidate, apply=_apply, reject=_reject,
    target="the firm's risk parameters", remedy="propose the change again"))
