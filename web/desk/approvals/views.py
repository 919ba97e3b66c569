"""The approvals queue: portfolio-margin applications to review and decide, rule-set and
risk-parameter changes awaiting a second person, and the history of what was decided.

Every write is a service call (``eligibility.services``, ``margin.services``), each deciding
through the one maker-checker (``brokerage.approvals``); the pages hold no rule of their own.
What a page says a person may not do (the reviewer approving their own review) it reads from
that mechanism's own check (``approvals.check_four_eyes``), and a POST the service refuses is
shown in the service's words with nothing changed (POST/redirect/GET).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from accounts.models import RiskDisclosure
from brokerage import approvals
from brokerage.errors import DomainError, FourEyesViolation
from brokerage.models import ApprovalRequest
from brokerage.roles import Role
from eligibility import services as eligibility
from eligibility.models import Application, Evaluation, RuleSet
from eligibility.rules import PM_DISCLOSURE_DOCUMENT
from margin import services as risk_parameters
from margin.models import AccountMargin, RiskParameterSet

from ..access import desk_object, desk_view
from .present import parameter_diff, person, rule_lines, rule_set_diff, when

#: who opens the queue: those who review or decide, and compliance (to oversee, read-only)
QUEUE_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.COMPLIANCE})
REVIEW_ROLES = eligibility.REVIEWER_ROLES
DECIDE_ROLES = eligibility.APPROVER_ROLES
CHANGE_ROLES = eligibility.RULE_SET_ROLES | risk_parameters.PARAMETER_ROLES

APPLICATION_KIND = eligibility.APPLICATION_KIND
CHANGE_KINDS = {eligibility.RULE_SET_KIND: "Rule set", risk_parameters.APPROVAL_KIND:
                "Risk parameters"}
KIND_WORDS = {APPLICATION_KIND: "Portfolio-margin application", **CHANGE_KINDS}
OUR_KINDS = tuple(KIND_WORDS)
State = ApprovalRequest.State
HISTORY_LIMIT = 200


# Shape of what a form sends (the services judge what it means) ---------------------------------

class ReviewForm(forms.Form):
    recommendation = forms.ChoiceField(choices=Application.Recommendation.choices,
                                       error_messages={"required": "choose a recommendation: "
                                                                   "approve or reject"})
    notes = forms.CharField(required=False, max_length=4000)
    version = forms.IntegerField(min_value=0)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")],
                                 error_messages={"required": "choose approve or reject"})
    reasons = forms.CharField(required=False, max_length=4000)
    version = forms.IntegerField(min_value=0)


DONE = {"approve": "approved", "reject": "rejected"}


def _form_problems(form: forms.Form) -> str:
    return "; ".join(f"{name}: {' '.join(errors)}" if name != "__all__" else " ".join(errors)
                     for name, errors in form.errors.items())


def _back(request: HttpRequest, url: str, *, error: str = "", done: str = "") -> HttpResponse:
    if error:
        messages.error(request, error)
    if done:
        messages.success(request, done)
    return HttpResponseRedirect(url)


# The queue ------------------------------------------------------------------------------------

def _latest_evaluations(applications: list[Application]) -> dict[int, Evaluation]:
    """Each application's latest judgement, in one query."""
    latest: dict[int, Evaluation] = {}
    for evaluation in (Evaluation.objects.filter(application__in=applications)
                       .order_by("application_id", "-evaluated_at", "-pk")):
        latest.setdefault(evaluation.application_id, evaluation)
    return latest


def _application_rows(applications: list[Application], request: HttpRequest) -> list[dict]:
    evaluations = _latest_evaluations(applications)
    rows = []
    for application in applications:
        evaluation = evaluations.get(application.pk)
        rows.append({"application": application, "evaluation": evaluation,
                     "client": application.client.name, "account": application.account,
                     "submitted_by": person(application.submitted_by),
                     "submitted_at": when(application.submitted_at),
                     "reviewed_by": person(application.reviewed_by),
                     "reviewed_at": when(application.reviewed_at),
                     "your_part": _your_part(request, application)})
    return rows


def _four_eyes_refusal(makers: dict, user, subject: str, doing: str) -> str:
    """The maker-checker's own words when `user` may not decide (empty when they may)."""
    try:
        approvals.check_four_eyes(makers=makers, user=user, subject=subject, doing=doing)
    except FourEyesViolation as refusal:
        return refusal.message
    return ""


def _your_part(request: HttpRequest, application: Application) -> str:
    role = request.desk_role
    if application.state == Application.State.SUBMITTED:
        return "review it" if role in REVIEW_ROLES else "waits for a risk officer's review"
    if role not in DECIDE_ROLES:
        return "waits for a second person"
    if str(request.user.pk) in {str(pk) for pk in application.makers or []}:
        return "you worked on it: a second person decides"
    return "approve or reject it"


@desk_view(roles=QUEUE_ROLES)
def approvals_queue(request: HttpRequest) -> HttpResponse:
    related = ("client", "account", "submitted_by", "reviewed_by")
    to_review = list(Application.objects.filter(state=Application.State.SUBMITTED)
                     .select_related(*related).order_by("submitted_at", "pk"))
    pending = list(approvals.pending(kinds=OUR_KINDS).select_related("requested_by"))
    decided_ids = [r.subject_id for r in pending if r.kind == APPLICATION_KIND]
    to_decide = list(Application.objects.filter(pk__in=decided_ids,
                                                state=Application.State.UNDER_REVIEW)
                     .select_related(*related).order_by("reviewed_at", "pk"))
    changes = [{"request": r, "kind": CHANGE_KINDS[r.kind], "by": person(r.requested_by),
                "at": when(r.requested_at),
                "yours": str(request.user.pk) in r.makers}
               for r in pending if r.kind in CHANGE_KINDS]
    return render(request, "desk/approvals/queue.html", {
        "section": "desk-approvals", "to_review": _application_rows(to_review, request),
        "to_decide": _application_rows(to_decide, request), "changes": changes,
        "may_review": request.desk_role in REVIEW_ROLES,
        "may_decide": request.desk_role in DECIDE_ROLES})


# History --------------------------------------------------------------------------------------

def _item_url(found: ApprovalRequest) -> str:
    if found.kind == APPLICATION_KIND:
        return reverse("desk-approval-application", args=[found.subject_id])
    return reverse("desk-approval-change", args=[found.pk])


@desk_view(roles=QUEUE_ROLES)
def approvals_history(request: HttpRequest) -> HttpResponse:
    decided_states = [s for s in State.values if s != State.PENDING]
    wanted = request.GET.get("state", "")
    decided: QuerySet[ApprovalRequest] = (
        ApprovalRequest.objects.filter(kind__in=OUR_KINDS, state__in=decided_states)
        .select_related("requested_by", "decided_by").order_by("-decided_at", "-pk"))
    problem = ""
    if wanted and wanted not in decided_states:
        problem = (f"there is no decided state {wanted!r}: choose "
                   f"{', '.join(decided_states)}")
    elif wanted:
        decided = decided.filter(state=wanted)
    total = decided.count()
    listed = list(decided[:HISTORY_LIMIT])
    users = get_user_model().objects.in_bulk(
        {int(pk) for r in listed for pk in r.makers})  # everyone named, in one query
    rows = [{"request": r, "kind": KIND_WORDS[r.kind], "url": _item_url(r),
             "asked_by": person(r.requested_by), "asked_at": when(r.requested_at),
             "decided_by": person(r.decided_by) if r.decided_by_id else "-",
             "decided_at": when(r.decided_at), "makers": _makers_in_words(r.makers, users)}
            for r in listed]
    states = [(s, State(s).label) for s in decided_states]
    return render(request, "desk/approvals/history.html", {
        "section": "desk-approvals", "rows": rows, "total": total, "states": states,
        "wanted": wanted, "problem": problem, "limit": HISTORY_LIMIT},
        status=400 if problem else 200)


def _makers_in_words(makers: dict, users: dict) -> str:
    """'northwind.risk1 reviewed; northwind.applicant drafted and submitted'."""
    return "; ".join(f"{person(users.get(int(pk)))} {' and '.join(did)}"
                     for pk, did in makers.items())


# An application -------------------------------------------------------------------------------

def _application(pk: int) -> Application:
    return desk_object(Application.objects.select_related(
        "client", "account", "created_by", "submitted_by", "reviewed_by", "decided_by",
        "rule_set"), pk=pk)


def _current_margin(application: Application) -> dict:
    """The account's current margin as the sweep left it (pages never value on load): its
    requirement under Reg T and under portfolio margin, from the valuation behind it."""
    current = (AccountMargin.objects.filter(account=application.account)
               .select_related("snapshot").first())
    snapshot = current.snapshot if current and current.snapshot_id else None
    return {"current": current, "snapshot": snapshot,
            "reg_t": snapshot.regt_maintenance if snapshot else None,
            "pm": snapshot.pm_requirement if snapshot else None,
            "computed_at": when(current.computed_at) if current else "-"}


@desk_view(roles=QUEUE_ROLES)
def application_page(request: HttpRequest, pk: int) -> HttpResponse:
    application = _application(pk)
    client = application.client
    disclosure = (RiskDisclosure.objects.filter(client=client, document=PM_DISCLOSURE_DOCUMENT)
                  .order_by("-acknowledged_at", "-delivered_at", "-pk").first())
    evaluations = list(Evaluation.objects.filter(application=application)
                       .select_related("rule_set", "evaluated_by")
                       .order_by("-evaluated_at", "-pk"))
    latest = evaluations[0] if evaluations else None
    found = approvals.request_for(kind=APPLICATION_KIND, subject=application)
    decisions = list(found.decisions.select_related("user")) if found else []
    role = request.desk_role
    may_review = (application.state == Application.State.SUBMITTED and role in REVIEW_ROLES)
    deciding = (application.state == Application.State.UNDER_REVIEW and found is not None
                and found.state == State.PENDING)
    refusal = ""
    if deciding and role in DECIDE_ROLES:
        refusal = _four_eyes_refusal(found.makers, request.user, f"application #{pk}",
                                     "approve or reject")
    return render(request, "desk/approvals/application.html", {
        "section": "desk-approvals", "application": application, "client": client,
        "account": application.account, "disclosure": disclosure,
        "disclosure_signed": when(disclosure.acknowledged_at) if disclosure else "",
        "disclosure_delivered": when(disclosure.delivered_at) if disclosure else "",
        "latest": latest, "lines": rule_lines(latest.results) if latest else [],
        "evaluated_at": when(latest.evaluated_at) if latest else "",
        "evaluated_by": person(latest.evaluated_by) if latest else "",
        "evaluations": [{"evaluation": e, "at": when(e.evaluated_at),
                         "by": person(e.evaluated_by)} for e in evaluations],
        "margin": _current_margin(application),
        "people": {"created": (person(application.created_by), when(application.created_at)),
                   "submitted": (person(application.submitted_by),
                                 when(application.submitted_at)),
                   "reviewed": (person(application.reviewed_by), when(application.reviewed_at)),
                   "decided": (person(application.decided_by), when(application.decided_at))},
        "request_found": found, "decisions": [{"decision": d, "by": person(d.user),
                                               "at": when(d.decided_at)} for d in decisions],
        "may_review": may_review, "may_decide": deciding and role in DECIDE_ROLES and not refusal,
        "refusal": refusal, "deciding": deciding,
        "review_form": ReviewForm(initial={"version": application.version}),
    })


@desk_view(roles=REVIEW_ROLES)
@require_POST
def application_review(request: HttpRequest, pk: int) -> HttpResponse:
    application = _application(pk)
    page = reverse("desk-approval-application", args=[pk])
    form = ReviewForm(request.POST)
    if not form.is_valid():
        return _back(request, page, error=f"Nothing was recorded: {_form_problems(form)}.")
    try:
        reviewed = eligibility.review_application(
            application=application, reviewer=request.user,
            recommendation=form.cleaned_data["recommendation"],
            notes=form.cleaned_data["notes"], expected_version=form.cleaned_data["version"])
    except DomainError as refusal:
        return _back(request, page, error=f"Not reviewed: {refusal.message}.")
    return _back(request, page, done=(
        f"You reviewed application #{pk} and recommended that it be "
        f"{DONE[reviewed.recommendation]}; it now waits for a second person to decide."))


@desk_view(roles=DECIDE_ROLES)
@require_POST
def application_decide(request: HttpRequest, pk: int) -> HttpResponse:
    application = _application(pk)
    page = reverse("desk-approval-application", args=[pk])
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _back(request, page, error=f"Nothing was decided: {_form_problems(form)}.")
    data = form.cleaned_data
    try:
        if data["decision"] == "approve":
            decided = eligibility.approve_application(
                application=application, approver=request.user, reasons=data["reasons"],
                expected_version=data["version"])
        else:
            decided = eligibility.reject_application(
                application=application, approver=request.user, reasons=data["reasons"],
                expected_version=data["version"])
    except DomainError as refusal:
        return _back(request, page, error=f"Not {DONE[data['decision']]}: {refusal.message}.")
    if decided.state == Application.State.APPROVED:
        done = (f"You approved application #{pk}: account {decided.account.number} moves to "
                f"portfolio margin on {decided.effective_on:%A %Y-%m-%d}, the next business "
                "day.")
    else:
        done = f"You rejected application #{pk}; the client is told your reasons."
    return _back(request, page, done=done)


# A rule-set or risk-parameter change ----------------------------------------------------------

def _change_request(pk: int) -> ApprovalRequest:
    return desk_object(ApprovalRequest.objects.filter(kind__in=list(CHANGE_KINDS))
                       .select_related("requested_by", "decided_by"), pk=pk)


def _subject(found: ApprovalRequest) -> RuleSet | RiskParameterSet:
    model = RuleSet if found.kind == eligibility.RULE_SET_KIND else RiskParameterSet
    return desk_object(model.objects.select_related("decided_by"), pk=found.subject_id)


def _in_force(found: ApprovalRequest) -> int:
    """The version of what the change replaces in force now (0: the platform's defaults)."""
    if found.kind == eligibility.RULE_SET_KIND:
        active = RuleSet.objects.filter(status=RuleSet.Status.ACTIVE).first()
    else:
        active = risk_parameters.active_parameter_set(found.firm)
    return active.version if active is not None else 0


@desk_view(roles=QUEUE_ROLES)
def change_page(request: HttpRequest, pk: int) -> HttpResponse:
    found = _change_request(pk)
    subject = _subject(found)
    if found.kind == eligibility.RULE_SET_KIND:
        lines, base = rule_set_diff(subject)
        reason = subject.change_reason
    else:
        lines, base = parameter_diff(subject)
        reason = subject.reason
    pending = found.state == State.PENDING
    yours = str(request.user.pk) in found.makers
    may_act = pending and request.desk_role in CHANGE_ROLES
    decisions = [{"decision": d, "by": person(d.user), "at": when(d.decided_at)}
                 for d in found.decisions.select_related("user")]
    return render(request, "desk/approvals/change.html", {
        "section": "desk-approvals", "found": found, "subject": subject,
        "kind": CHANGE_KINDS[found.kind], "lines": lines, "reason": reason,
        "drafted_on": found.drafted_on, "in_force": _in_force(found), "base": base,
        "asked_by": person(found.requested_by), "asked_at": when(found.requested_at),
        "decided_by": person(found.decided_by) if found.decided_by_id else "",
        "decided_at": when(found.decided_at), "decisions": decisions,
        "pending": pending, "may_decide": may_act and not yours,
        "may_withdraw": may_act and yours,
        "refusal": _four_eyes_refusal(found.makers, request.user,
                                      f"{CHANGE_KINDS[found.kind].lower()} "
                                      f"v{subject.version}", "approve")
        if may_act else ""})


@desk_view(roles=CHANGE_ROLES)
@require_POST
def change_decide(request: HttpRequest, pk: int) -> HttpResponse:
    found = _change_request(pk)
    subject = _subject(found)
    page = reverse("desk-approval-change", args=[pk])
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _back(request, page, error=f"Nothing was decided: {_form_problems(form)}.")
    data = form.cleaned_data
    approve = data["decision"] == "approve"
    try:
        if found.kind == eligibility.RULE_SET_KIND:
            decided = (eligibility.approve_rule_set(
                rule_set=subject, approver=request.user, reason=data["reasons"],
                expected_version=data["version"]) if approve else eligibility.reject_rule_set(
                rule_set=subject, approver=request.user, reason=data["reasons"]))
        else:
            decided = (risk_parameters.approve_parameters(
                proposal=subject, actor=request.user, reason=data["reasons"],
                expected_version=data["version"]) if approve else
                risk_parameters.reject_parameters(proposal=subject, actor=request.user,
                                                  reason=data["reasons"]))
    except DomainError as refusal:
        return _back(request, page, error=f"Not {DONE[data['decision']]}: {refusal.message}.")
    label = f"{CHANGE_KINDS[found.kind].lower()} v{decided.version}"
    found.refresh_from_db()
    if found.state == State.APPROVED:
        done = f"You approved {label}: it is in force now."
    elif found.state == State.WITHDRAWN:
        done = f"You withdrew {label}; nothing changed."
    else:
        done = f"You rejected {label}; nothing changed."
    return _back(request, page, done=done)


urlpatterns = [
    path("", approvals_queue, name="desk-approvals"),
    path("history/", approvals_history, name="desk-approvals-history"),
    path("applications/<int:pk>/", application_page, name="desk-approval-application"),
    path("applications/<int:pk>/review/", application_review,
         name="desk-approval-application-review"),
    path("applications/<int:pk>/decide/", application_decide,
         name="desk-approval-application-decide"),
    path("changes/<int:pk>/", change_page, name="desk-approval-change"),
    path("changes/<int:pk>/decide/", change_decide, name="desk-approval-change-decide"),
]
