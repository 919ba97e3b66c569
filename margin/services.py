"""Writes to a firm's risk parameters: proposed by one staff member, approved by another.

A firm's parameter set is the platform default (shipped with the code) plus the firm's
overrides of the sections it may change (``engine.parameters.FIRM_SECTIONS``: the house layer,
SPAN, the DeFi tables such as the size-tiered haircuts, VaR and what snapshots compute). The
regulatory layer (portfolio-margin points and offsets, Reg T) is the platform's alone.

A change is a new version: proposed (validated, audited), then approved by a different firm
admin or risk officer (four eyes, as for eligibility rule sets), which supersedes the active
version and recomputes the firm's margin after commit; or rejected. Old versions stay.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from brokerage import audit
from brokerage.errors import InvalidInput
from brokerage.models import Firm
from brokerage.roles import Role
from brokerage.tenancy import firm_of, role_of

from .engine.parameters import DEFAULT_PARAMETER_SET, check_overrides, load_parameter_set
from .models import RiskParameterSet
from .receivers import recompute_is_suspended

#: who may propose and approve a firm's risk parameters
PARAMETER_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER})


class RiskParameterError(InvalidInput):
    """A refused change, every problem listed as (field, code, message)."""

    def __init__(self, errors: list[tuple[str, str, str]]) -> None:
        super().__init__(errors=[(f or "overrides", c, m) for f, c, m in errors])


class NotPermitted(RiskParameterError):
    code, status = "not_permitted", 403


class Conflict(RiskParameterError):
    code, status = "conflict", 409


def _require_role(actor, firm: Firm, doing: str) -> None:
    if firm_of(actor) != firm or role_of(actor) not in PARAMETER_ROLES:
        raise NotPermitted([("", "not_permitted",
                             f"only the firm's admins and risk officers may {doing}")])


def active_parameter_set(firm: Firm) -> RiskParameterSet | None:
    return (RiskParameterSet.objects.filter(firm=firm, status=RiskParameterSet.Status.ACTIVE)
            .order_by("-version").first())


def propose_parameters(*, firm: Firm, actor, overrides: Any, reason: str,
                       base: str = DEFAULT_PARAMETER_SET) -> RiskParameterSet:
    """A new version holding the firm's complete overrides (not a diff of the active one)."""
    _require_role(actor, firm, "propose risk parameters")
    if not (reason or "").strip():
        raise RiskParameterError([("reason", "required", "say why the parameters change")])
    try:
        base_set = load_parameter_set(base)
    except KeyError:
        raise RiskParameterError([("base", "unknown", f"no parameter set {base!r}")]) from None
    problems = check_overrides(base_set, overrides)
    if problems:
        raise RiskParameterError([(f"overrides.{path}" if path else "overrides", "invalid", message)
                                  for path, message in problems])
    with transaction.atomic():
        Firm.objects.select_for_update().get(pk=firm.pk)  # versions are numbered one at a time
        latest = RiskParameterSet.objects.filter(firm=firm).aggregate(v=Max("version"))["v"]
        proposal = RiskParameterSet.objects.create(
            firm=firm, version=(latest or 0) + 1, base=base, overrides=overrides,
            status=RiskParameterSet.Status.PROPOSED, reason=reason.strip(), created_by=actor)
        audit.record(firm=firm, actor=actor, event_type="risk_parameters.proposed", obj=proposal,
                     after={"version": proposal.version, "base": base, "overrides": overrides,
                            "reason": proposal.reason})
    return proposal


def _decide(proposal: RiskParameterSet, actor, doing: str) -> RiskParameterSet:
    _require_role(actor, proposal.firm, doing)
    locked = RiskParameterSet.objects.select_for_update().get(pk=proposal.pk)
    if locked.status != RiskParameterSet.Status.PROPOSED:
        raise Conflict([("status", "conflict", f"version {locked.version} is {locked.status}, "
                                               "not proposed")])
    if locked.created_by_id == actor.pk:
        raise NotPermitted([("", "four_eyes", "the proposer cannot also decide: a second "
                                              "admin or risk officer must")])
    return locked


def approve_parameters(*, proposal: RiskParameterSet, actor, reason: str = ""
                       ) -> RiskParameterSet:
    """Activate a proposal (superseding the active version); margin is recomputed on commit."""
    from .tasks import recompute_firm

    with transaction.atomic():
        locked = _decide(proposal, actor, "approve risk parameters")
        previous = active_parameter_set(locked.firm)
        if previous is not None:
            previous.status = RiskParameterSet.Status.SUPERSEDED
            previous.save(update_fields=["status"])
        locked.status = RiskParameterSet.Status.ACTIVE
        locked.decided_by, locked.decided_at = actor, timezone.now()
        locked.decision_reason = reason.strip()
        locked.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
        audit.record(firm=locked.firm, actor=actor, event_type="risk_parameters.approved",
                     obj=locked,
                     before={"version": previous.version if previous else None,
                             "overrides": previous.overrides if previous else {}},
                     after={"version": locked.version, "overrides": locked.overrides,
                            "reason": locked.decision_reason})
        firm_id = locked.firm_id
        if not recompute_is_suspended():  # a bulk load (the demo seed) recomputes at its end
            transaction.on_commit(lambda: recompute_firm.delay(firm_id))
    return locked


def reject_parameters(*, proposal: RiskParameterSet, actor, reason: str) -> RiskParameterSet:
    if not (reason or "").strip():
        raise RiskParameterError([("reason", "required", "say why the proposal is rejected")])
    with transaction.atomic():
        locked = _decide(proposal, actor, "reject risk parameters")
        locked.status = RiskParameterSet.Status.REJECTED
        locked.decided_by, locked.decided_at = actor, timezone.now()
        locked.decision_reason = reason.strip()
        locked.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
        audit.record(firm=locked.firm, actor=actor, event_type="risk_parameters.rejected",
                     obj=locked, after={"version": locked.version, "reason": reason.strip()})
    return locked
