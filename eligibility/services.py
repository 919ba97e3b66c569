"""Writes of the eligibility app: rule-set versions and the portfolio-margin application workflow.

Every state change is a function here (keyword-only arguments, one `transaction.atomic()`, the
row locked with SELECT ... FOR UPDATE and then moved by a compare-and-swap on (state, version),
the audit event in the same transaction, mail on commit). The API, the admin actions, the
signal receivers and the Celery tasks call these and hold no rule of their own, so the rules
below hold whatever the door:

- Four eyes: nobody who drafted, submitted or reviewed an application may approve or reject it;
  nobody approves the rule-set change they proposed.
- Roles: a risk officer reviews; a risk officer or a firm admin decides (and, where an
  application has designated approvers, only they); a client acts only on their own accounts.
- Evaluation runs at submission, at review and again at approval; approval of an application
  that fails any rule at that moment is refused (and the failed evaluation kept).
- Approval moves the account to portfolio margin on the next XNYS business day: `effective_on`
  is stored and `apply_due_conversions(today=)` (a Celery beat task before the open) flips the
  margin type through `accounts.services.change_account` on that day, catching up missed days.
  An approval never flips the account at once: whatever the time of day, the next session is
  the first one traded under portfolio margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import assign_perm

from accounts.models import Account, AccountUserObjectPermission, Client
from accounts.services import change_account
from brokerage import audit
from brokerage.models import Firm, Membership
from brokerage.roles import Role
from brokerage.scope import current_firm, firm_scope
from brokerage.tenancy import membership_of

from . import calendar as business_days
from .equity import read_equity
from .errors import (
    Conflict,
    FourEyesViolation,
    IllegalTransition,
    InvalidRequest,
    InvalidRuleSet,
    NotEligible,
    NotPermitted,
)
from .evaluation import OPENING, EligibilityResult, Facts, client_facts, evaluate_account
from .models import (
    Application,
    ApplicationGroupObjectPermission,
    ApplicationUserObjectPermission,
    Evaluation,
    RuleSet,
)
from .notifications import mail_client_on_commit
from .rules import DEFAULTS, normalise_thresholds

APPROVER_ROLES = frozenset({Role.RISK_OFFICER, Role.FIRM_ADMIN})
REVIEWER_ROLES = frozenset({Role.RISK_OFFICER})
SUBMITTER_STAFF_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.MARGIN_DESK})
RULE_SET_ROLES = APPROVER_ROLES

S = Application.State
# action -> (states it applies to, the state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "submit": (frozenset({S.DRAFT, S.STALE}), S.SUBMITTED),
    "review": (frozenset({S.SUBMITTED}), S.UNDER_REVIEW),
    "approve": (frozenset({S.UNDER_REVIEW}), S.APPROVED),
    "reject": (frozenset({S.UNDER_REVIEW}), S.REJECTED),
    "withdraw": (frozenset({S.DRAFT, S.SUBMITTED, S.UNDER_REVIEW, S.STALE}), S.WITHDRAWN),
    "mark_stale": (frozenset({S.UNDER_REVIEW}), S.STALE),
    "expire": (frozenset({S.DRAFT, S.SUBMITTED, S.UNDER_REVIEW, S.STALE}), S.EXPIRED),
}
DECIDED = frozenset({S.APPROVED, S.REJECTED})


def allowed_actions(application: Application) -> list[str]:
    """The workflow steps the application's state admits (the actor's rights aside)."""
    return [action for action, (sources, _) in TRANSITIONS.items()
            if application.state in sources and action not in ("mark_stale", "expire")]


# Who is acting -------------------------------------------------------------------------------

def _membership(actor, firm: Firm) -> Membership:
    membership = membership_of(actor)
    if membership is None or membership.firm_id != firm.pk:
        raise NotPermitted(f"{getattr(actor, 'username', actor)} is not a member of {firm.name}")
    return membership


def _require_role(actor, firm: Firm, roles: frozenset[str], doing: str) -> Membership:
    membership = _membership(actor, firm)
    if membership.role not in roles:
        needed = " or ".join(sorted(Role(r).label.lower() for r in roles))
        raise NotPermitted(f"a {membership.get_role_display().lower()} may not {doing}: "
                           f"it takes a {needed}")
    return membership


def client_may_use(account: Account, user) -> bool:
    """A client user acts on an account that is theirs: portal user, or a guardian grant."""
    if account.client.portal_user_id is not None and account.client.portal_user_id == user.pk:
        return True
    return ObjectPermissionChecker(user).has_perm("view_account", account)


def _require_maker(actor, application_or_account: Application | Account, doing: str) -> Membership:
    account = (application_or_account.account if isinstance(application_or_account, Application)
               else application_or_account)
    membership = _membership(actor, account.firm)
    if membership.role == Role.CLIENT:
        if not client_may_use(account, actor):
            raise NotPermitted(f"account {account.number} is not yours, so you may not {doing}")
        return membership
    if membership.role not in SUBMITTER_STAFF_ROLES:
        raise NotPermitted(f"a {membership.get_role_display().lower()} may not {doing}")
    return membership


def _check_scope(firm: Firm) -> None:
    if current_firm().pk != firm.pk:
        raise NotPermitted("that firm's data is not in scope")


# Rule sets ------------------------------------------------------------------------------------

def active_rule_set(*, firm: Firm) -> RuleSet:
    """The firm's active version; version 1 with the house defaults if it has none yet.

    Adopting the defaults needs no second approver: they are the code-reviewed house policy
    (and already at or above every regulatory floor). Every later change does.
    """
    _check_scope(firm)
    found = RuleSet.objects.filter(status=RuleSet.Status.ACTIVE).first()
    if found is not None:
        return found
    with transaction.atomic():
        Firm.objects.select_for_update().get(pk=firm.pk)  # serialise per firm
        found = RuleSet.objects.filter(status=RuleSet.Status.ACTIVE).first()
        if found is not None:
            return found
        now = timezone.now()
        rule_set = RuleSet(firm=firm, version=_next_version(), status=RuleSet.Status.ACTIVE,
                           change_reason="house defaults", proposed_at=now, decided_at=now,
                           **DEFAULTS)
        rule_set.full_clean()
        rule_set.save()
        audit.record(firm=firm, actor=None, event_type="ruleset.defaults_adopted", obj=rule_set,
                     after={"version": rule_set.version, **rule_set.thresholds()})
    return rule_set


def _next_version() -> int:
    return (RuleSet.objects.aggregate(top=Max("version"))["top"] or 0) + 1


def check_proposal(*, firm: Firm, **changes: Any) -> tuple[RuleSet, dict[str, Any]]:
    """Validate a change to the active thresholds without writing: (base version, new values)."""
    base = active_rule_set(firm=firm)
    clean, errors = normalise_thresholds({**base.thresholds(), **changes})
    if errors:
        raise InvalidRuleSet(errors)
    current, _ = normalise_thresholds(base.thresholds())
    if clean == current:
        raise InvalidRequest("the proposal changes no threshold", field="thresholds")
    return base, clean


def propose_rule_set(*, firm: Firm, proposer, reason: str, **changes: Any) -> RuleSet:
    """A new version: the active thresholds with `changes`, waiting for a second approver."""
    _require_role(proposer, firm, RULE_SET_ROLES, "propose a rule-set change")
    if not reason or not reason.strip():
        raise InvalidRequest("say why the rule set changes", field="reason")
    with transaction.atomic():
        Firm.objects.select_for_update().get(pk=firm.pk)  # version numbers are per firm
        base, clean = check_proposal(firm=firm, **changes)
        current, _ = normalise_thresholds(base.thresholds())
        rule_set = RuleSet(firm=firm, version=_next_version(), status=RuleSet.Status.PROPOSED,
                           based_on=base, proposed_by=proposer, proposed_at=timezone.now(),
                           change_reason=reason.strip(), **clean)
        rule_set.full_clean()
        rule_set.save()
        changed = sorted(k for k in clean if clean[k] != current[k])
        audit.record(firm=firm, actor=proposer, event_type="ruleset.proposed", obj=rule_set,
                     before={"version": base.version, **{k: current[k] for k in changed}},
                     after={"version": rule_set.version, "reason": rule_set.change_reason,
                            **{k: clean[k] for k in changed}})
    return rule_set


def _lock_rule_set(rule_set: RuleSet) -> RuleSet:
    try:
        return RuleSet.objects.select_for_update().get(pk=rule_set.pk)
    except RuleSet.DoesNotExist:
        raise NotPermitted("no such rule set in your firm") from None


def approve_rule_set(*, rule_set: RuleSet, approver, reason: str = "") -> RuleSet:
    """Activate a proposed version (second person only); the old version is kept, superseded."""
    firm = rule_set.firm
    _require_role(approver, firm, RULE_SET_ROLES, "approve a rule-set change")
    with transaction.atomic():
        Firm.objects.select_for_update().get(pk=firm.pk)
        proposal = _lock_rule_set(rule_set)
        if proposal.status != RuleSet.Status.PROPOSED:
            raise Conflict(f"rule set v{proposal.version} is {proposal.status}, not proposed")
        if proposal.proposed_by_id == approver.pk:
            raise FourEyesViolation(f"{approver.username} proposed rule set v{proposal.version} "
                                    "and so cannot approve it: a second person approves")
        current = RuleSet.objects.select_for_update().filter(
            status=RuleSet.Status.ACTIVE).order_by("pk").first()
        if current is not None and proposal.based_on_id != current.pk:
            raise Conflict(f"rule set v{proposal.version} was drafted against another version; "
                           f"v{current.version} is active now: propose the change again")
        _, errors = normalise_thresholds(proposal.thresholds())  # re-validated at apply time
        if errors:
            raise InvalidRuleSet(errors)
        now = timezone.now()
        if current is not None:
            current.status, current.superseded_at = RuleSet.Status.SUPERSEDED, now
            current.save(update_fields=["status", "superseded_at"])
        proposal.status = RuleSet.Status.ACTIVE
        proposal.decided_by, proposal.decided_at = approver, now
        proposal.decision_reason = reason.strip()
        proposal.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
        audit.record(firm=firm, actor=approver, event_type="ruleset.approved", obj=proposal,
                     before={"active_version": current.version if current else None},
                     after={"active_version": proposal.version, "reason": proposal.decision_reason})
    return proposal


def reject_rule_set(*, rule_set: RuleSet, approver, reason: str) -> RuleSet:
    """Turn a proposal down. Anyone who may approve may reject, the proposer too (a withdrawal):
    only activating a change needs a second person."""
    firm = rule_set.firm
    _require_role(approver, firm, RULE_SET_ROLES, "reject a rule-set change")
    if not reason or not reason.strip():
        raise InvalidRequest("say why the proposal is rejected", field="reason")
    with transaction.atomic():
        proposal = _lock_rule_set(rule_set)
        if proposal.status != RuleSet.Status.PROPOSED:
            raise Conflict(f"rule set v{proposal.version} is {proposal.status}, not proposed")
        proposal.status = RuleSet.Status.REJECTED
        proposal.decided_by, proposal.decided_at = approver, timezone.now()
        proposal.decision_reason = reason.strip()
        proposal.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
        audit.record(firm=firm, actor=approver, event_type="ruleset.rejected", obj=proposal,
                     after={"version": proposal.version, "reason": proposal.decision_reason})
    return proposal


# Applications: helpers ------------------------------------------------------------------------

def _view(application: Application) -> dict[str, Any]:
    """What the audit trail records of an application before and after a step."""
    return {"state": application.state, "version": application.version,
            "account": application.account_id,
            "rule_set_version": application.rule_set.version if application.rule_set_id else None,
            "recommendation": application.recommendation,
            "effective_on": application.effective_on}


def _lock(application: Application) -> Application:
    try:
        return Application.objects.select_for_update().get(pk=application.pk)
    except Application.DoesNotExist:
        raise NotPermitted("no such application in your firm") from None


def _refuse(application: Application, action: str) -> IllegalTransition:
    sources, _ = TRANSITIONS[action]
    if application.state in DECIDED:
        who = application.decided_by.username if application.decided_by_id else "someone"
        return Conflict(f"application #{application.pk} was already {application.state} by {who} "
                        f"at {application.decided_at:%Y-%m-%d %H:%M:%S %Z}", field="state")
    return IllegalTransition(
        f"cannot {action.replace('_', ' ')} application #{application.pk}: it is "
        f"{application.state}, and {action.replace('_', ' ')} applies only to "
        f"{' or '.join(sorted(sources))}", field="state")


def _check_can(application: Application, action: str) -> None:
    if application.state not in TRANSITIONS[action][0]:
        raise _refuse(application, action)


def _move(application: Application, action: str, **fields: Any) -> Application:
    """Compare-and-swap on (state, version): the row moves only from the state we saw."""
    _check_can(application, action)
    _, target = TRANSITIONS[action]
    moved = Application.objects.filter(
        pk=application.pk, state=application.state, version=application.version,
    ).update(state=target, version=F("version") + 1, updated_at=timezone.now(), **fields)
    if moved != 1:
        raise Conflict(f"application #{application.pk} changed while you were acting on it; "
                       "read it again")
    application.refresh_from_db()
    return application


def _makers(application: Application, *users) -> list[int]:
    return sorted(set(application.makers or []) | {u.pk for u in users if u is not None})


def _check_four_eyes(application: Application, decider, doing: str) -> None:
    """The one place four eyes is enforced, for the API, the admin and direct calls alike."""
    if decider.pk not in set(application.makers or []):
        return
    roles = [label for label, user_id in (("drafted", application.created_by_id),
                                          ("submitted", application.submitted_by_id),
                                          ("reviewed", application.reviewed_by_id))
             if user_id == decider.pk] or ["worked on"]
    raise FourEyesViolation(
        f"{decider.username} {' and '.join(roles)} application #{application.pk} and so cannot "
        f"{doing} it: a second person decides (four eyes)", field="approver")


def designated_approver_ids(application: Application) -> set[int]:
    """Users granted `approve_application` on this application (guardian, direct FK)."""
    codename = "approve_application"
    user_ids = set(ApplicationUserObjectPermission.objects.filter(
        content_object=application, permission__codename=codename).values_list("user_id", flat=True))
    group_ids = list(ApplicationGroupObjectPermission.objects.filter(
        content_object=application, permission__codename=codename).values_list("group_id", flat=True))
    if group_ids:
        user_ids |= set(get_user_model().groups.through.objects.filter(
            group_id__in=group_ids).values_list("user_id", flat=True))
    return user_ids


def _check_designated(application: Application, decider) -> None:
    designated = designated_approver_ids(application)
    if designated and decider.pk not in designated:
        raise NotPermitted(f"application #{application.pk} has designated approvers and "
                           f"{decider.username} is not one of them", field="approver")


@dataclass(frozen=True)
class Judgement:
    result: EligibilityResult
    facts: Facts
    evaluation: Evaluation


def _judge(application: Application, *, stage: str, actor, rule_set: RuleSet) -> Judgement:
    account = Account.objects.select_related("client").get(pk=application.account_id)
    result, facts = evaluate_account(account, rule_set, purpose=OPENING)
    evaluation = Evaluation.objects.create(
        firm=application.firm, application=application, account=account, rule_set=rule_set,
        stage=stage, passed=result.passed, equity=facts.equity.amount,
        equity_source=facts.equity.source, results=result.as_json(),
        evaluated_by=actor if actor is not None and actor.pk else None,
        evaluated_at=timezone.now())
    return Judgement(result, facts, evaluation)


def _grant_client_view(application: Application) -> None:
    """Client users see only their own applications: a guardian grant per application."""
    users = set()
    if application.client.portal_user_id:
        users.add(application.client.portal_user_id)
    users |= set(AccountUserObjectPermission.objects.filter(
        content_object_id=application.account_id, permission__codename="view_account",
    ).values_list("user_id", flat=True))
    User = get_user_model()
    for user in User.objects.filter(pk__in=users).order_by("pk"):
        assign_perm("eligibility.view_application", user, application)


# Applications: the workflow -------------------------------------------------------------------

def check_can_apply(*, account: Account, actor) -> None:
    """Raise if `actor` may not open an application for `account` now (nothing is written)."""
    _require_maker(actor, account, "apply for portfolio margin on this account")
    if account.margin_type == Account.MarginType.PORTFOLIO_MARGIN:
        raise InvalidRequest(f"account {account.number} is already on portfolio margin",
                             field="account")
    if account.status == Account.Status.CLOSED:
        raise InvalidRequest(f"account {account.number} is closed", field="account")
    live = Application.objects.filter(account=account, state__in=Application.LIVE_STATES).first()
    if live is not None:
        raise Conflict(f"account {account.number} already has application #{live.pk} "
                       f"({live.state})", field="account")


def create_application(*, account: Account, actor, submit: bool = False,
                       today: date | None = None) -> Application:
    """A draft application for `account` (a client for their own account, or staff)."""
    with transaction.atomic():
        # Adopt the firm's default rule set (if it has none yet) before the audit chain head is
        # locked below: rule-set services lock the firm row first, then the chain head.
        active_rule_set(firm=account.firm)
        try:
            account = Account.objects.select_for_update().get(pk=account.pk)
        except Account.DoesNotExist:
            raise InvalidRequest("no such account in your firm", field="account") from None
        check_can_apply(account=account, actor=actor)  # under the account lock: no twin drafts
        now = timezone.now()
        application = Application.objects.create(
            firm=account.firm, client=account.client, account=account, state=S.DRAFT,
            created_by=actor, created_at=now, updated_at=now, makers=[actor.pk])
        _grant_client_view(application)
        audit.record(firm=account.firm, actor=actor, event_type="pm_application.created",
                     obj=application, after=_view(application))
        if submit:
            application = submit_application(application=application, actor=actor, today=today)
    return application


def submit_application(*, application: Application, actor, today: date | None = None) -> Application:
    """Draft (or stale) -> submitted. Evaluates against the active rule set and records it."""
    _require_maker(actor, application, "submit this application")
    today = today or business_days.today()
    with transaction.atomic():
        locked = _lock(application)
        _check_can(locked, "submit")
        before = _view(locked)
        rule_set = active_rule_set(firm=locked.firm)
        judged = _judge(locked, stage=Evaluation.Stage.SUBMISSION, actor=actor, rule_set=rule_set)
        locked = _move(locked, "submit", submitted_by=actor, submitted_at=timezone.now(),
                       submitted_on=today, rule_set=rule_set, reviewed_by=None, reviewed_at=None,
                       recommendation="", review_notes="", review_inputs=None, closed_reason="",
                       makers=_makers(locked, actor))
        audit.record(firm=locked.firm, actor=actor, event_type="pm_application.submitted",
                     obj=locked, before=before,
                     after={**_view(locked), "evaluation": judged.evaluation.pk,
                            "passed": judged.result.passed})
        mail_client_on_commit(client=locked.client, template="application_submitted", context={
            "application": locked, "result": judged.result.as_json(),
            "failures": [f.sentence for f in judged.result.failures]})
    return locked


def review_application(*, application: Application, reviewer, recommendation: str,
                       notes: str = "") -> Application:
    """Submitted -> under review: a risk officer records a recommendation."""
    _require_role(reviewer, application.firm, REVIEWER_ROLES, "review an application")
    if recommendation not in Application.Recommendation.values:
        raise InvalidRequest(f"{recommendation!r} is not one of "
                             f"{', '.join(Application.Recommendation.values)}",
                             field="recommendation")
    if recommendation == Application.Recommendation.REJECT and not notes.strip():
        raise InvalidRequest("a recommendation to reject says why", field="notes")
    with transaction.atomic():
        locked = _lock(application)
        _check_can(locked, "review")
        before = _view(locked)
        rule_set = active_rule_set(firm=locked.firm)
        judged = _judge(locked, stage=Evaluation.Stage.REVIEW, actor=reviewer, rule_set=rule_set)
        inputs = {"client": judged.facts.client.fingerprint(),
                  "equity": str(judged.facts.equity.amount),
                  "equity_source": judged.facts.equity.source,
                  "evaluation": judged.evaluation.pk}
        locked = _move(locked, "review", reviewed_by=reviewer, reviewed_at=timezone.now(),
                       recommendation=recommendation, review_notes=notes.strip(),
                       review_inputs=inputs, makers=_makers(locked, reviewer))
        audit.record(firm=locked.firm, actor=reviewer, event_type="pm_application.reviewed",
                     obj=locked, before=before,
                     after={**_view(locked), "notes": locked.review_notes,
                            "evaluation": judged.evaluation.pk, "passed": judged.result.passed})
    return locked


def _check_expected(locked: Application, expected_version: int | None) -> None:
    if expected_version is not None and locked.version != expected_version:
        raise Conflict(f"application #{locked.pk} is at version {locked.version}, not "
                       f"{expected_version}: it changed since you read it", field="version")


def approve_application(*, application: Application, approver, reasons: str = "",
                        today: date | None = None,
                        expected_version: int | None = None) -> Application:
    """Under review -> approved, by a second person; effective the next business day.

    Concurrent approvals of one application: the row lock makes them queue, and the second
    finds it approved already and gets `Conflict` (HTTP 409). Exactly one wins.
    """
    firm = application.firm
    _require_role(approver, firm, APPROVER_ROLES, "approve an application")
    today = today or business_days.today()
    refused: NotEligible | None = None
    with transaction.atomic():
        locked = _lock(application)
        _check_expected(locked, expected_version)
        _check_can(locked, "approve")
        _check_four_eyes(locked, approver, "approve")
        _check_designated(locked, approver)
        if locked.recommendation == Application.Recommendation.REJECT and not reasons.strip():
            raise InvalidRequest("the reviewer recommended rejection: approving anyway needs "
                                 "reasons", field="reasons")
        before = _view(locked)
        rule_set = active_rule_set(firm=firm)
        judged = _judge(locked, stage=Evaluation.Stage.APPROVAL, actor=approver, rule_set=rule_set)
        if not judged.result.passed:
            # Keep the failed evaluation and the attempt on record; the state does not move.
            failures = judged.result.failures
            audit.record(firm=firm, actor=approver, event_type="pm_application.approval_refused",
                         obj=locked, before=before,
                         after={"evaluation": judged.evaluation.pk,
                                "failed_rules": [f.rule for f in failures]})
            refused = NotEligible(
                "the account fails " + "; ".join(f.sentence for f in failures),
                field="rules", details=judged.result.as_json())
        else:
            effective_on = business_days.next_business_day(today, firm.exchange_calendar)
            locked = _move(locked, "approve", decided_by=approver, decided_at=timezone.now(),
                           decision_reasons=reasons.strip(), rule_set=rule_set,
                           effective_on=effective_on)
            audit.record(firm=firm, actor=approver, event_type="pm_application.approved",
                         obj=locked, before=before,
                         after={**_view(locked), "reasons": locked.decision_reasons,
                                "evaluation": judged.evaluation.pk})
            mail_client_on_commit(client=locked.client, template="application_approved",
                                  context={"application": locked})
    if refused is not None:
        raise refused
    return locked


def reject_application(*, application: Application, approver, reasons: str,
                       expected_version: int | None = None) -> Application:
    """Under review -> rejected, by a second person, with reasons the client is told."""
    firm = application.firm
    _require_role(approver, firm, APPROVER_ROLES, "reject an application")
    if not reasons or not reasons.strip():
        raise InvalidRequest("a rejection gives its reasons", field="reasons")
    with transaction.atomic():
        locked = _lock(application)
        _check_expected(locked, expected_version)
        _check_can(locked, "reject")
        _check_four_eyes(locked, approver, "reject")
        _check_designated(locked, approver)
        before = _view(locked)
        locked = _move(locked, "reject", decided_by=approver, decided_at=timezone.now(),
                       decision_reasons=reasons.strip())
        audit.record(firm=firm, actor=approver, event_type="pm_application.rejected", obj=locked,
                     before=before, after={**_view(locked), "reasons": locked.decision_reasons})
        mail_client_on_commit(client=locked.client, template="application_rejected",
                              context={"application": locked})
    return locked


def withdraw_application(*, application: Application, actor, reason: str = "") -> Application:
    """Any live application may be withdrawn by its client or by staff who may submit."""
    _require_maker(actor, application, "withdraw this application")
    with transaction.atomic():
        locked = _lock(application)
        _check_can(locked, "withdraw")
        before = _view(locked)
        locked = _move(locked, "withdraw", closed_reason=reason.strip() or "withdrawn")
        audit.record(firm=locked.firm, actor=actor, event_type="pm_application.withdrawn",
                     obj=locked, before=before, after={**_view(locked), "reason": locked.closed_reason})
    return locked


def designate_approver(*, application: Application, approver, actor) -> Application:
    """Name who may decide this application (a per-object guardian grant; an exception that
    narrows the firm-wide right). Only someone who could approve it may be designated."""
    firm = application.firm
    _require_role(actor, firm, APPROVER_ROLES, "designate approvers")
    _require_role(approver, firm, APPROVER_ROLES, "approve an application")
    with transaction.atomic():
        locked = _lock(application)
        if locked.state not in TRANSITIONS["approve"][0] | TRANSITIONS["review"][0]:
            raise _refuse(locked, "approve")
        _check_four_eyes(locked, approver, "approve")
        assign_perm("eligibility.approve_application", approver, locked)
        audit.record(firm=firm, actor=actor, event_type="pm_application.approver_designated",
                     obj=locked, after={"approver": approver.pk})
    return locked


def mark_stale(*, application: Application, reason: str) -> Application | None:
    """Under review -> stale (system): what the reviewer judged has changed. Idempotent."""
    with transaction.atomic():
        locked = _lock(application)
        if locked.state not in TRANSITIONS["mark_stale"][0]:
            return None
        before = _view(locked)
        locked = _move(locked, "mark_stale", closed_reason=reason)
        audit.record(firm=locked.firm, actor=None, event_type="pm_application.stale", obj=locked,
                     before=before, after={**_view(locked), "reason": reason})
    return locked


# Stale detection (called by the signal receivers) ---------------------------------------------

def detect_stale_for_client(*, client: Client) -> list[Application]:
    """Client data changed: applications under review whose client facts differ go stale."""
    now_facts = client_facts(client).fingerprint()
    stale = []
    for application in Application.objects.filter(client=client, state=S.UNDER_REVIEW).order_by("pk"):
        seen = (application.review_inputs or {}).get("client", {})
        changed = sorted(k for k in now_facts if seen.get(k) != now_facts[k])
        if changed:
            moved = mark_stale(application=application, reason="client data changed after review "
                               f"started: {', '.join(changed)}")
            if moved is not None:
                stale.append(moved)
    return stale


def detect_stale_for_accounts(*, account_ids: list[int]) -> list[Application]:
    """The book changed (cash, positions): applications under review whose equity moved go stale.

    Price moves alone (book_changed without account ids) do not: equity is judged again at
    approval, so a fall below the minimum still stops the approval.
    """
    stale = []
    for application in Application.objects.filter(
            account_id__in=account_ids, state=S.UNDER_REVIEW).select_related("account").order_by("pk"):
        seen = (application.review_inputs or {}).get("equity")
        now = read_equity(application.account)
        if seen is None or str(now.amount) != seen:
            moved = mark_stale(application=application, reason="equity changed after review "
                               f"started: {seen} -> {now.amount} ({now.source})")
            if moved is not None:
                stale.append(moved)
    return stale


# Scheduled steps ------------------------------------------------------------------------------

def _firms(firm: Firm | None) -> list[Firm]:
    return [firm] if firm is not None else list(Firm.objects.order_by("pk"))


def apply_due_conversions(*, today: date, firm: Firm | None = None) -> list[Application]:
    """Flip approved accounts whose effective day has come to portfolio margin (all firms
    when `firm` is None). Idempotent: a converted application is never converted twice."""
    converted: list[Application] = []
    for each in _firms(firm):
        with firm_scope(each):
            due = Application.objects.filter(state=S.APPROVED, converted_at__isnull=True,
                                             effective_on__lte=today).order_by("pk")
            for application in due:
                done = _convert(application, today=today)
                if done is not None:
                    converted.append(done)
    return converted


def _convert(application: Application, *, today: date) -> Application | None:
    with transaction.atomic():
        locked = _lock(application)
        if locked.state != S.APPROVED or locked.converted_at is not None:
            return None
        account = Account.objects.select_for_update().get(pk=locked.account_id)
        reason = (f"PM application #{locked.pk} approved by {locked.decided_by.username} on "
                  f"{timezone.localdate(locked.decided_at)}, effective {locked.effective_on}")
        if account.margin_type != Account.MarginType.PORTFOLIO_MARGIN:
            change_account(account=account, actor=None, reason=reason,
                           event_type="account.converted_to_portfolio_margin",
                           margin_type=Account.MarginType.PORTFOLIO_MARGIN)
        now = timezone.now()
        Application.objects.filter(pk=locked.pk, version=locked.version).update(
            converted_at=now, version=F("version") + 1, updated_at=now)
        locked.refresh_from_db()
        audit.record(firm=locked.firm, actor=None, event_type="pm_application.converted",
                     obj=locked, after={"account": account.number, "effective_on": locked.effective_on,
                                        "converted_on": today})
        mail_client_on_commit(client=locked.client, template="conversion_effective",
                              context={"application": locked, "account": account})
    return locked


def expire_applications(*, firm: Firm, today: date) -> list[Application]:
    """Live applications older than the rule set's `application_valid_days` business days."""
    expired: list[Application] = []
    with firm_scope(firm):
        valid_days = active_rule_set(firm=firm).application_valid_days
        for application in Application.objects.filter(
                state__in=TRANSITIONS["expire"][0]).order_by("pk"):
            started = application.submitted_on or timezone.localdate(application.created_at)
            deadline = business_days.add_business_days(started, valid_days, firm.exchange_calendar)
            if today <= deadline:
                continue
            with transaction.atomic():
                locked = _lock(application)
                if locked.state not in TRANSITIONS["expire"][0]:
                    continue
                before = _view(locked)
                locked = _move(locked, "expire", closed_reason=f"not decided within {valid_days} "
                               f"business days (by {deadline})")
                audit.record(firm=firm, actor=None, event_type="pm_application.expired",
                             obj=locked, before=before, after=_view(locked))
                mail_client_on_commit(client=locked.client, template="application_expired",
                                      context={"application": locked, "deadline": deadline})
            expired.append(locked)
    return expired
