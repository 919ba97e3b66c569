"""Writes of the eligibility app: rule-set versions and the portfolio-margin application workflow.

Every state change is a function here (keyword-only arguments, one `transaction.atomic()`, the
row locked with SELECT ... FOR UPDATE and then moved by a compare-and-swap on (state, version),
the audit event in the same transaction, mail on commit). The API, the admin actions, the
signal receivers and the Celery tasks call these and hold no rule of their own, so the rules
below hold whatever the door:

- Four eyes, through `brokerage.approvals` (the one maker-checker): a rule-set proposal is a
  request (kind ``rule_set``) drafted on the active version; an application under review is a
  request (kind ``pm_application``) drafted on the application's version. Nobody who drafted,
  submitted or reviewed an application may approve or reject it; nobody approves the rule-set
  change they proposed; a decision is refused once what it changes has moved (`Conflict`).
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
from brokerage import approvals, audit
from brokerage.models import ApprovalRequest, Firm, Membership
from brokerage.roles import Role
from brokerage.scope import current_firm, firm_scope, lock_in_firm
from brokerage.tenancy import membership_of

from . import calendar as business_days
from .equity import read_equity
from .errors import (
    Conflict,
    IllegalTransition,
    InvalidRequest,
    InvalidRuleSet,
    NotEligible,
    NotFound,
    NotPermitted,
    OpenMarginCalls,
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
        request = approvals.request_approval(
            kind=RULE_SET_KIND, firm=firm, subject=rule_set, requested_by=proposer,
            drafted_on=base.version, makers=approvals.makers_of((proposer, "proposed")),
            summary=f"rule set v{rule_set.version}: {rule_set.change_reason}")
        changed = sorted(k for k in clean if clean[k] != current[k])
        audit.record(firm=firm, actor=proposer, event_type="ruleset.proposed", obj=rule_set,
                     before={"version": base.version, **{k: current[k] for k in changed}},
                     after={"version": rule_set.version, "reason": rule_set.change_reason,
                            "approval_request": request.pk, **{k: clean[k] for k in changed}})
    return rule_set


def approve_rule_set(*, rule_set: RuleSet, approver, reason: str = "",
                     expected_version: int | None = None) -> RuleSet:
    """Activate a proposed version (second person only, and only while the version it was
    drafted on is still active); the old version is kept, superseded. `expected_version`: the
    active version the approver saw, when they say."""
    approvals.decide(request=approvals.request_of(kind=RULE_SET_KIND, subject=rule_set),
                     decider=approver, approve=True, reason=reason,
                     expected_version=expected_version)
    return RuleSet.objects.get(pk=rule_set.pk)


def reject_rule_set(*, rule_set: RuleSet, approver, reason: str) -> RuleSet:
    """Turn a proposal down. Anyone who may approve may reject, the proposer too (a withdrawal):
    only activating a change needs a second person."""
    if not reason or not reason.strip():
        raise InvalidRequest("say why the proposal is rejected", field="reason")
    approvals.turn_down(request=approvals.request_of(kind=RULE_SET_KIND, subject=rule_set),
                        actor=approver, reason=reason)
    return RuleSet.objects.get(pk=rule_set.pk)


# Rule sets: the approval kind (how brokerage.approvals decides a proposal) ----------------------

RULE_SET_KIND = "rule_set"


def _lock_rule_set(request: ApprovalRequest) -> RuleSet:
    # The firm row first, as every rule-set write does: the active version read next cannot
    # change before this decision commits.
    Firm.objects.select_for_update().get(pk=request.firm_id)
    return RuleSet.objects.select_for_update().get(pk=request.subject_id)


def _active_locked() -> RuleSet | None:
    return RuleSet.objects.select_for_update().filter(
        status=RuleSet.Status.ACTIVE).order_by("pk").first()


def _rule_set_version(proposal: RuleSet) -> int:
    current = _active_locked()
    return current.version if current is not None else 0


def _authorize_rule_set(ruling: approvals.Ruling) -> None:
    _require_role(ruling.decider, ruling.subject.firm, RULE_SET_ROLES,
                  f"{ruling.verb} a rule-set change")


def _revalidate_rule_set(ruling: approvals.Ruling) -> None:
    _, errors = normalise_thresholds(ruling.subject.thresholds())  # the floors may have moved
    if errors:
        raise InvalidRuleSet(errors)


def _decided(proposal: RuleSet, ruling: approvals.Ruling, status: str) -> None:
    proposal.status = status
    proposal.decided_by, proposal.decided_at = ruling.decider, timezone.now()
    proposal.decision_reason = ruling.reason
    proposal.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])


def _activate_rule_set(ruling: approvals.Ruling) -> approvals.Change:
    proposal: RuleSet = ruling.subject
    current = _active_locked()
    if current is not None:
        current.status, current.superseded_at = RuleSet.Status.SUPERSEDED, timezone.now()
        current.save(update_fields=["status", "superseded_at"])
    _decided(proposal, ruling, RuleSet.Status.ACTIVE)
    return approvals.Change(before={"active_version": current.version if current else None},
                            after={"active_version": proposal.version})


def _turn_down_rule_set(ruling: approvals.Ruling) -> approvals.Change:
    _decided(ruling.subject, ruling, RuleSet.Status.REJECTED)
    return approvals.Change(after={"version": ruling.subject.version})


approvals.register(approvals.ApprovalKind(
    name=RULE_SET_KIND, subject_model="eligibility.ruleset", audit_prefix="ruleset",
    lock=_lock_rule_set, current_version=_rule_set_version,
    describe=lambda proposal: f"rule set v{proposal.version}",
    authorize=_authorize_rule_set, revalidate=_revalidate_rule_set,
    apply=_activate_rule_set, reject=_turn_down_rule_set,
    target="the firm's rule set", remedy="propose the change again"))


# Applications: helpers ------------------------------------------------------------------------

def _view(application: Application) -> dict[str, Any]:
    """What the audit trail records of an application before and after a step."""
    return {"state": application.state, "version": application.version,
            "account": application.account_id,
            "rule_set_version": application.rule_set.version if application.rule_set_id else None,
            "recommendation": application.recommendation,
            "effective_on": application.effective_on}


def _lock(application: Application) -> Application:
    return lock_in_firm(Application, application.pk,
                        missing=NotFound("no such application in your firm"))


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


def _lock_for(application: Application, action: str) -> tuple[Application, dict[str, Any]]:
    """The row locked and checked that `action` applies to it, with how it stood before (what
    the step's audit event records as `before`)."""
    locked = _lock(application)
    _check_can(locked, action)
    return locked, _view(locked)


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


def _makers_of(application: Application) -> dict[str, list[str]]:
    """Everyone who worked on the application, with what they did (for four eyes): the ids in
    `makers` accumulate over stale rounds, so earlier drafters and reviewers stay in."""
    steps = (("drafted", application.created_by_id), ("submitted", application.submitted_by_id),
             ("reviewed", application.reviewed_by_id))
    return {str(user_id): [did for did, id_ in steps if id_ == user_id] or ["worked on"]
            for user_id in application.makers or []}


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

    @property
    def rule_set(self) -> RuleSet:
        return self.evaluation.rule_set


def _judge(application: Application, *, stage: str, actor) -> Judgement:
    """The account judged now against the firm's active rule set, kept as an Evaluation."""
    rule_set = active_rule_set(firm=application.firm)
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
        account = lock_in_firm(Account, account.pk, missing=InvalidRequest(
            "no such account in your firm", field="account"))
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
    today = today or business_days.today(application.firm.exchange_calendar)
    with transaction.atomic():
        locked, before = _lock_for(application, "submit")
        judged = _judge(locked, stage=Evaluation.Stage.SUBMISSION, actor=actor)
        locked = _move(locked, "submit", submitted_by=actor, submitted_at=timezone.now(),
                       submitted_on=today, rule_set=judged.rule_set, reviewed_by=None, reviewed_at=None,
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
                       notes: str = "", expected_version: int | None = None) -> Application:
    """Submitted -> under review: a risk officer records a recommendation.

    `expected_version`: the application's version the reviewer read (the desk's form carries
    it): a review of an application that moved since (resubmitted after going stale, say) is
    refused, since what the reviewer judged is not what would be recorded."""
    _require_role(reviewer, application.firm, REVIEWER_ROLES, "review an application")
    if recommendation not in Application.Recommendation.values:
        raise InvalidRequest(f"{recommendation!r} is not one of "
                             f"{', '.join(Application.Recommendation.values)}",
                             field="recommendation")
    if recommendation == Application.Recommendation.REJECT and not notes.strip():
        raise InvalidRequest("a recommendation to reject says why", field="notes")
    with transaction.atomic():
        locked, before = _lock_for(application, "review")
        if expected_version is not None and expected_version != locked.version:
            raise Conflict(f"application #{locked.pk} changed since you read it (version "
                           f"{locked.version}, not {expected_version}): read it again",
                           field="version")
        judged = _judge(locked, stage=Evaluation.Stage.REVIEW, actor=reviewer)
        inputs = {"client": judged.facts.client.fingerprint(),
                  "equity": str(judged.facts.equity.amount),
                  "equity_source": judged.facts.equity.source,
                  "evaluation": judged.evaluation.pk}
        locked = _move(locked, "review", reviewed_by=reviewer, reviewed_at=timezone.now(),
                       recommendation=recommendation, review_notes=notes.strip(),
                       review_inputs=inputs, makers=_makers(locked, reviewer))
        # The decision step is a request to a second person, drafted on this version: any
        # later move of the application (stale, withdrawn) closes it.
        request = approvals.request_approval(
            kind=APPLICATION_KIND, firm=locked.firm, subject=locked, requested_by=reviewer,
            drafted_on=locked.version, makers=_makers_of(locked),
            summary=f"PM application #{locked.pk} for account {locked.account.number}: "
                    f"{recommendation} recommended")
        audit.record(firm=locked.firm, actor=reviewer, event_type="pm_application.reviewed",
                     obj=locked, before=before,
                     after={**_view(locked), "notes": locked.review_notes,
                            "evaluation": judged.evaluation.pk, "passed": judged.result.passed,
                            "approval_request": request.pk})
    return locked


def _decide(application: Application, approver, *, approve: bool, reasons: str,
            expected_version: int | None, **context) -> Application:
    """The decision step: the application's pending request, decided by brokerage.approvals
    (four eyes, one decision each, the version compare-and-swap, re-evaluation, the move)."""
    action = "approve" if approve else "reject"
    current = Application.objects.filter(pk=application.pk).first()
    if current is None:
        raise NotFound("no such application in your firm")
    request = approvals.request_for(kind=APPLICATION_KIND, subject=current)
    if current.state != S.UNDER_REVIEW or request is None:
        raise _refuse(current, action)
    approvals.decide(request=request, decider=approver, approve=approve, reason=reasons,
                     expected_version=expected_version, **context)
    return Application.objects.get(pk=application.pk)


def approve_application(*, application: Application, approver, reasons: str = "",
                        today: date | None = None,
                        expected_version: int | None = None) -> Application:
    """Under review -> approved, by a second person; effective the next business day.

    Concurrent approvals of one application: the row lock makes them queue, and the second
    finds it approved already and gets `Conflict` (HTTP 409). Exactly one wins. An account
    that fails a rule at this moment is refused (`NotEligible`), the failed evaluation kept.
    """
    return _decide(application, approver, approve=True, reasons=reasons,
                   expected_version=expected_version,
                   today=today or business_days.today(application.firm.exchange_calendar))


def reject_application(*, application: Application, approver, reasons: str,
                       expected_version: int | None = None) -> Application:
    """Under review -> rejected, by a second person, with reasons the client is told."""
    if not reasons or not reasons.strip():
        raise InvalidRequest("a rejection gives its reasons", field="reasons")
    return _decide(application, approver, approve=False, reasons=reasons,
                   expected_version=expected_version)


# Applications: the approval kind (how brokerage.approvals decides the decision step) ----------

APPLICATION_KIND = "pm_application"


def _lock_for_decision(request: ApprovalRequest) -> Application:
    return _lock(Application(pk=request.subject_id))


def _authorize_decision(ruling: approvals.Ruling) -> None:
    application: Application = ruling.subject
    _require_role(ruling.decider, application.firm, APPROVER_ROLES,
                  f"{ruling.verb} an application")
    _check_designated(application, ruling.decider)
    if (ruling.approve and application.recommendation == Application.Recommendation.REJECT
            and not ruling.reason):
        raise InvalidRequest("the reviewer recommended rejection: approving anyway needs "
                             "reasons", field="reasons")


def blocking_calls(account: Account) -> OpenMarginCalls | None:
    """What of margin's calls stands in the way of portfolio margin for ``account``: its open
    margin calls (every kind: a PM minimum-equity or PM deficiency, a Reg T, maintenance,
    house or collateral call) and its active restrictions (closing-only, funds on hand, the
    intraday block). Eligibility reads calls; margin issues and closes them."""
    from margin.models import MarginCall, Restriction

    calls = list(MarginCall.objects.filter(account=account, status__in=MarginCall.OPEN_STATES)
                 .order_by("due_date", "pk"))
    restrictions = list(Restriction.objects.filter(account=account,
                                                   state=Restriction.State.ACTIVE)
                        .order_by("starts_on", "pk"))
    if not calls and not restrictions:
        return None
    named = [f"{c.get_kind_display()} #{c.pk} (${c.amount_due:,} due {c.due_date}, "
             f"{c.status})" for c in calls]
    named += [f"{r.get_kind_display().lower()} restriction #{r.pk} since {r.starts_on}"
              for r in restrictions]
    return OpenMarginCalls(
        f"account {account.number} has {'; '.join(named)}: it cannot move to portfolio "
        "margin until they are met or ended", field="account",
        details={"calls": [c.pk for c in calls], "restrictions": [r.pk for r in restrictions]})


def _evaluate_for_approval(ruling: approvals.Ruling) -> approvals.Refusal | None:
    """Judge the account again, now, against the active rule set; a failure keeps the
    evaluation on record and the application where it is. An account with an open margin
    call or an active restriction is refused first (the refusal is on record)."""
    blocked = blocking_calls(Account.objects.get(pk=ruling.subject.account_id))
    if blocked is not None:
        return approvals.Refusal(blocked, record={"open_margin_calls": blocked.details})
    judged = _judge(ruling.subject, stage=Evaluation.Stage.APPROVAL, actor=ruling.decider)
    ruling.context.update(rule_set=judged.rule_set, evaluation=judged.evaluation)
    if judged.result.passed:
        return None
    failures = judged.result.failures
    return approvals.Refusal(
        NotEligible("the account fails " + "; ".join(f.sentence for f in failures),
                    field="rules", details=judged.result.as_json()),
        record={"evaluation": judged.evaluation.pk, "failed_rules": [f.rule for f in failures]})


def _approve(ruling: approvals.Ruling) -> approvals.Change:
    application: Application = ruling.subject
    before = _view(application)
    firm = application.firm
    # The admin's door passes no business date: then it is today's on the firm's exchange.
    today = ruling.context.get("today") or business_days.today(firm.exchange_calendar)
    effective_on = business_days.next_business_day(today, firm.exchange_calendar)
    locked = _move(application, "approve", decided_by=ruling.decider, decided_at=timezone.now(),
                   decision_reasons=ruling.reason, rule_set=ruling.context["rule_set"],
                   effective_on=effective_on)
    mail_client_on_commit(client=locked.client, template="application_approved",
                          context={"application": locked})
    return approvals.Change(before=before, after={
        **_view(locked), "reasons": locked.decision_reasons,
        "evaluation": ruling.context["evaluation"].pk})


def _reject(ruling: approvals.Ruling) -> approvals.Change:
    before = _view(ruling.subject)
    locked = _move(ruling.subject, "reject", decided_by=ruling.decider,
                   decided_at=timezone.now(), decision_reasons=ruling.reason)
    mail_client_on_commit(client=locked.client, template="application_rejected",
                          context={"application": locked})
    return approvals.Change(before=before,
                            after={**_view(locked), "reasons": locked.decision_reasons})


approvals.register(approvals.ApprovalKind(
    name=APPLICATION_KIND, subject_model="eligibility.application",
    audit_prefix="pm_application", lock=_lock_for_decision,
    current_version=lambda application: application.version,
    describe=lambda application: f"application #{application.pk}",
    authorize=_authorize_decision, revalidate=_evaluate_for_approval,
    apply=_approve, reject=_reject, target="the application",
    remedy="read it again"))


def withdraw_application(*, application: Application, actor, reason: str = "") -> Application:
    """Any live application may be withdrawn by its client or by staff who may submit."""
    _require_maker(actor, application, "withdraw this application")
    with transaction.atomic():
        locked, before = _lock_for(application, "withdraw")
        locked = _move(locked, "withdraw", closed_reason=reason.strip() or "withdrawn")
        approvals.close_pending(kind=APPLICATION_KIND, subject=locked, by=actor,
                                reason=f"application withdrawn: {locked.closed_reason}")
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
        approvals.check_four_eyes(makers=_makers_of(locked), user=approver,
                                  subject=f"application #{locked.pk}", doing="approve")
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
        approvals.close_pending(kind=APPLICATION_KIND, subject=locked,
                                reason=f"application went stale: {reason}")
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
                approvals.close_pending(kind=APPLICATION_KIND, subject=locked,
                                        reason=f"application expired: {locked.closed_reason}")
                audit.record(firm=firm, actor=None, event_type="pm_application.expired",
                             obj=locked, before=before, after=_view(locked))
                mail_client_on_commit(client=locked.client, template="application_expired",
                                      context={"application": locked, "deadline": deadline})
            expired.append(locked)
    return expired
