"""The margin-call desk (issue 19): open calls by due date and size, a call's page with its
history and the account's figures, and the liquidation plan with its effect on each scenario.

Reads go through the tenant managers (the request's firm scope: another firm's call is a 404);
every write is a POST that calls the existing service (margin.calls.services, .extensions,
.restrictions, margin.liquidation.services, accounts.services for a cash deposit) and
redirects back with what happened in words; a service's refusal (brokerage.errors) is shown as
it says it, and nothing changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from django.contrib import messages
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts import services as book
from brokerage import approvals, audit
from brokerage.errors import DomainError, NotPermitted
from brokerage.models import ApprovalRequest, AuditEvent
from brokerage.roles import Role, can
from brokerage.scope import current_firm
from margin import business_days
from margin.calls import extensions, restrictions
from margin.calls import services as call_services
from margin.calls.models import CallExtension, CallSatisfaction, MarginCall, Restriction
from margin.calls.services import CallError
from margin.liquidation import services as plans
from margin.liquidation.effect import plan_effect
from margin.models import AccountMargin, LiquidationPlan, MarginSnapshot
from web.charts import effect_chart, move_in_words, sparkline
from web.templatetags.money import format_money as usd

from ..access import EVERY_STAFF_ROLE, desk_object, desk_view
from ..audit_words import TrailRow, present
from .forms import (
    DecisionForm,
    ExtensionForm,
    OutcomeForm,
    SatisfactionForm,
    WaiverForm,
    form_errors,
)

#: Who works calls: records what met them, asks for more time, proposes a plan. Compliance
#: reads the desk (and decides waivers) but does not work the calls.
WORK_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.MARGIN_DESK})
#: Who decides an extension: any staff member but its proposer (the service's rule).
EXTENSION_DECIDERS = EVERY_STAFF_ROLE
PLAN_APPROVERS = plans.APPROVER_ROLES
WAIVER_ROLES = restrictions.WAIVER_ROLES
S = MarginCall.Status
TREND_POINTS = 12  # snapshots in a call's excess trend
BASIS_WORDS = {"portfolio_margin": "portfolio-margin", "reg_t_initial": "Reg T initial",
               "reg_t_maintenance": "4210(c) maintenance"}


def _today() -> date:
    return business_days.today(current_firm().exchange_calendar or business_days.DEFAULT_CALENDAR)


#: Past due and unmet: marked overdue by the close, or with a liquidation under way for it,
#: or still running past its due date until the next close marks it (rule book section 10).
PAST_DUE = (S.OVERDUE, S.LIQUIDATION_PENDING, S.LIQUIDATED)


def is_overdue(call: MarginCall, today: date) -> bool:
    return call.status in PAST_DUE or (call.status in call_services.RUNNING
                                       and call.due_date < today)


def overdue_filter(today: date) -> Q:
    """``is_overdue`` as a query."""
    return Q(status__in=PAST_DUE) | Q(status__in=call_services.RUNNING, due_date__lt=today)


def excess_trends(account_ids: list[int]) -> dict[int, list[Decimal]]:
    """Each account's excess over its latest snapshots, oldest first, in one query."""
    ranked = (MarginSnapshot.objects.filter(account_id__in=account_ids)
              .annotate(rank=Window(RowNumber(), partition_by=F("account_id"),
                                    order_by=[F("computed_at").desc(), F("id").desc()]))
              .filter(rank__lte=TREND_POINTS)
              .order_by("account_id", "computed_at", "id")
              .values_list("account_id", "excess"))
    trends: dict[int, list[Decimal]] = defaultdict(list)
    for account_id, excess in ranked:
        trends[account_id].append(excess)
    return trends


# The list --------------------------------------------------------------------------------------

OPEN_STATUSES = [(s, S(s).label) for s in MarginCall.OPEN_STATES]


@require_GET
@desk_view(roles=EVERY_STAFF_ROLE)
def call_list(request: HttpRequest) -> HttpResponse:
    today = _today()
    status = request.GET.get("status", "")
    kind = request.GET.get("kind", "")
    overdue_only = request.GET.get("overdue") == "1"
    calls = (MarginCall.objects.filter(status__in=MarginCall.OPEN_STATES)
             .select_related("account", "account__client"))
    if status in MarginCall.OPEN_STATES:
        calls = calls.filter(status=status)
    if kind in MarginCall.Kind.values:
        calls = calls.filter(kind=kind)
    if overdue_only:
        calls = calls.filter(overdue_filter(today))
    # by due date, then the largest amount first: what must be worked first is at the top
    rows = list(calls.order_by("due_date", "-amount_due", "pk"))
    ids = sorted({c.account_id for c in rows})
    current = {m.account_id: m for m in AccountMargin.objects.filter(account_id__in=ids)}
    trends = excess_trends(ids)
    listed = [{"call": c, "overdue": is_overdue(c, today), "margin": current.get(c.account_id),
               "trend": sparkline(trends.get(c.account_id, [])),
               "trend_values": trends.get(c.account_id, [])} for c in rows]
    return render(request, "desk/calls/list.html", {
        "section": "desk-calls", "rows": listed, "today": today,
        "statuses": OPEN_STATUSES, "kinds": MarginCall.Kind.choices,
        "chosen": {"status": status, "kind": kind, "overdue": overdue_only}})


# A call's page -----------------------------------------------------------------------------------

def _call(pk: int) -> MarginCall:
    return desk_object(MarginCall.objects.select_related("account", "account__client", "policy",
                                                         "snapshot"), pk=pk)


def _history(call: MarginCall, extension_ids: list[int], plan_ids: list[int]
             ) -> list[tuple[TrailRow, str]]:
    """The audit events of the call, its extensions and its plans, in chain order, each in
    words (the desk's one presenter, ``web.desk.audit_words``) with the status (or state) it
    left behind."""
    events = list(_events_of(call, extension_ids, plan_ids))
    return [(row, _status_after(row.event)) for row in present(events, firm=call.firm)]


def _status_after(event: AuditEvent) -> str:
    after = event.after if isinstance(event.after, dict) else {}
    said = after.get("status") or after.get("state") or after.get("outcome") or ""
    return str(said).replace("_", " ")


def _events_of(call: MarginCall, extension_ids: list[int], plan_ids: list[int]) -> QuerySet:
    return (audit.events_for(call.firm).filter(
        Q(object_type="margin.margincall", object_id=str(call.pk))
        | Q(object_type="margin.callextension", object_id__in=[str(i) for i in extension_ids])
        | Q(object_type="margin.liquidationplan", object_id__in=[str(i) for i in plan_ids]))
        .select_related("actor"))


def _waiting(kind: str, subject) -> ApprovalRequest | None:
    found = approvals.request_for(kind=kind, subject=subject)
    return found if found is not None and found.state == ApprovalRequest.State.PENDING else None


@require_GET
@desk_view(roles=EVERY_STAFF_ROLE)
def call_detail(request: HttpRequest, pk: int) -> HttpResponse:
    call = _call(pk)
    today = _today()
    extension_rows = list(call.extensions.select_related("requested_by", "decided_by",
                                                         "outcome_recorded_by"))
    plan_rows = list(LiquidationPlan.objects.filter(call=call).select_related("proposed_by",
                                                                            "decided_by"))
    account_restrictions = list(Restriction.objects.filter(account=call.account)
                                .order_by("-starts_on", "-pk"))
    proposed_extension = next((e for e in extension_rows if e.state == CallExtension.State.PROPOSED),
                              None)
    requested_extension = next((e for e in extension_rows
                                if e.state == CallExtension.State.REQUESTED), None)
    margin = AccountMargin.objects.filter(account=call.account).first()
    trend = excess_trends([call.account_id]).get(call.account_id, [])
    return render(request, "desk/calls/call.html", {
        "section": "desk-calls", "call": call, "today": today,
        "overdue": is_overdue(call, today), "margin": margin,
        "trend": sparkline(trend), "trend_values": trend,
        "satisfactions": call.satisfactions.select_related("recorded_by", "ledger_entry"),
        "extensions": extension_rows, "proposed_extension": proposed_extension,
        "requested_extension": requested_extension,
        "extension_request": _waiting(extensions.APPROVAL_KIND, proposed_extension)
        if proposed_extension else None,
        "notices": call.notices.all(), "history": _history(
            call, [e.pk for e in extension_rows], [p.pk for p in plan_rows]),
        "plan": plan_rows[0] if plan_rows else None,
        "restrictions": [(r, _waiting(restrictions.APPROVAL_KIND, r))
                         for r in account_restrictions],
        "payable": call.status in call_services.PAYABLE,
        "extendable": call.status in call_services.RUNNING
        and call.kind in extensions.AUTHORITY and not proposed_extension
        and not requested_extension,
        "plannable": call.status in plans.PLANNED_STATES,
        "can_work": request.desk_role in WORK_ROLES,
        "can_waive": request.desk_role in WAIVER_ROLES,
        "manners": SatisfactionForm.base_fields["manner"].choices,
    })


# Writes: each calls a service and redirects back ------------------------------------------------

def _act(request: HttpRequest, back: str, action: Callable[[], str]) -> HttpResponse:
    """Run ``action`` (a service call returning what happened in words); a refusal is shown
    as the service words it and nothing changed (the service's transaction rolled back)."""
    try:
        said = action()
    except DomainError as refusal:
        messages.error(request, refusal.message or str(refusal))
    else:
        messages.success(request, said)
    return redirect(back)


def _invalid(request: HttpRequest, back: str, form) -> HttpResponse:
    messages.error(request, f"Nothing was recorded. {form_errors(form)}")
    return redirect(back)


def _back(call: MarginCall) -> str:
    return reverse("desk-call", args=[call.pk])


@require_POST
@desk_view(roles=WORK_ROLES)
def record_satisfaction(request: HttpRequest, pk: int) -> HttpResponse:
    call = _call(pk)
    form = SatisfactionForm(request.POST, today=_today())
    if not form.is_valid():
        return _invalid(request, _back(call), form)
    data = form.cleaned_data

    def record() -> str:
        if data["manner"] == CallSatisfaction.Manner.CASH:
            return _cash_deposit(request, call, data)
        done = call_services.record_satisfaction(
            call=call, manner=data["manner"], amount=data["amount"], actor=request.user,
            received_on=data["received_on"], note=data["reference"])
        return (f"{CallSatisfaction.Manner(data['manner']).label} of {usd(data['amount'])} "
                f"recorded on call #{done.pk}: {done.get_status_display().lower()}, "
                f"{usd(done.amount_due)} due.")

    return _act(request, _back(call), record)


def _cash_deposit(request: HttpRequest, call: MarginCall, data: dict) -> str:
    """Cash is booked in the cash ledger (the one record of cash); the deposit is linked to the
    account's open calls when it commits (margin.calls.receivers, the same path as a deposit
    booked anywhere else)."""
    if not can(request.desk_role, "accounts.ledgerentry", "add"):  # brokerage.roles
        raise NotPermitted(f"a {request.desk_role_label.lower()} does not book cash in the "
                           "ledger: the margin desk or a firm admin does", field="manner")
    if call.status not in call_services.PAYABLE:
        return f"Call #{call.pk} is {call.get_status_display().lower()}: nothing is due."
    book.post_ledger_entry(account=call.account, kind="deposit", amount=data["amount"],
                           actor=request.user,
                           memo=f"{data['reference']} (margin call #{call.pk})")
    call.refresh_from_db()
    return (f"Cash deposit of {usd(data['amount'])} booked in {call.account.number}'s ledger and "
            f"linked to its open calls: call #{call.pk} is "
            f"{call.get_status_display().lower()}, {usd(call.amount_due)} due.")


@require_POST
@desk_view(roles=WORK_ROLES)
def request_extension(request: HttpRequest, pk: int) -> HttpResponse:
    call = _call(pk)
    form = ExtensionForm(request.POST, today=_today(), due_date=call.due_date)
    if not form.is_valid():
        return _invalid(request, _back(call), form)
    data = form.cleaned_data
    days = business_days.business_days_between(call.due_date, data["new_due_date"],
                                                call.calendar)

    def ask() -> str:
        if days < 1:
            raise CallError(f"no business day falls between the due date {call.due_date} and "
                            f"{data['new_due_date']}", field="new_due_date")
        extension = extensions.request_extension(call=call, actor=request.user, days=days,
                                                 reason_code=data["reason_code"],
                                                 comment=data["reason"])
        new_due = business_days.add_business_days(call.due_date, days, call.calendar)
        return (f"Extension {extension.request_number} of call #{call.pk} proposed: "
                f"{days} business days (due {new_due:%Y-%m-%d} if granted). A second person "
                "decides it.")

    return _act(request, _back(call), ask)


def _extension(call: MarginCall, state: str) -> CallExtension:
    return desk_object(call.extensions.filter(state=state).order_by("-request_number"))


@require_POST
@desk_view(roles=EXTENSION_DECIDERS)
def decide_extension(request: HttpRequest, pk: int) -> HttpResponse:
    call = _call(pk)
    extension = _extension(call, CallExtension.State.PROPOSED)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _invalid(request, _back(call), form)

    def decide() -> str:
        done = extensions.decide_extension(extension=extension, actor=request.user,
                                           approve=form.approve,
                                           reason=form.cleaned_data["reason"], today=_today())
        return f"Extension {done.request_number} of call #{call.pk}: {done.get_state_display()}."

    return _act(request, _back(call), decide)


@require_POST
@desk_view(roles=WORK_ROLES)
def record_extension_outcome(request: HttpRequest, pk: int) -> HttpResponse:
    call = _call(pk)
    extension = _extension(call, CallExtension.State.REQUESTED)
    form = OutcomeForm(request.POST)
    if not form.is_valid():
        return _invalid(request, _back(call), form)

    def record() -> str:
        done = extensions.record_outcome(extension=extension, actor=request.user,
                                         granted=form.cleaned_data["outcome"] == "granted",
                                         filing_id=form.cleaned_data["filing_id"],
                                         today=_today())
        due = f", due {done.new_due_date:%Y-%m-%d}" if done.new_due_date else ""
        return f"Extension {done.request_number}: {done.get_state_display().lower()}{due}."

    return _act(request, _back(call), record)


def _restriction(call: MarginCall, restriction_pk: int) -> Restriction:
    return desk_object(Restriction.objects.filter(account=call.account), pk=restriction_pk)


@require_POST
@desk_view(roles=WAIVER_ROLES)
def request_waiver(request: HttpRequest, pk: int, restriction_pk: int) -> HttpResponse:
    call = _call(pk)
    restriction = _restriction(call, restriction_pk)
    form = WaiverForm(request.POST)
    if not form.is_valid():
        return _invalid(request, _back(call), form)

    def ask() -> str:
        restrictions.request_waiver(restriction=restriction, actor=request.user,
                                    reason=form.cleaned_data["reason"])
        return (f"Waiver of the {restriction.get_kind_display().lower()} restriction asked: "
                "a second officer decides it.")

    return _act(request, _back(call), ask)


@require_POST
@desk_view(roles=WAIVER_ROLES)
def decide_waiver(request: HttpRequest, pk: int, restriction_pk: int) -> HttpResponse:
    call = _call(pk)
    restriction = _restriction(call, restriction_pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _invalid(request, _back(call), form)

    def decide() -> str:
        done = restrictions.decide_waiver(restriction=restriction, actor=request.user,
                                          approve=form.approve,
                                          reason=form.cleaned_data["reason"], today=_today())
        return (f"Waiver {'approved' if form.approve else 'rejected'}: the restriction is "
                f"{done.get_state_display().lower()}.")

    return _act(request, _back(call), decide)


# The liquidation plan -------------------------------------------------------------------------

def _plan_url(call: MarginCall) -> str:
    return reverse("desk-call-plan", args=[call.pk])


@require_GET
@desk_view(roles=EVERY_STAFF_ROLE)
def plan_detail(request: HttpRequest, pk: int) -> HttpResponse:
    call = _call(pk)
    plan = (LiquidationPlan.objects.filter(call=call).select_related(
        "snapshot", "proposed_by", "decided_by", "policy").first())
    effect = charts = None
    if plan is not None:
        effect = plan_effect(plan)
        charts = [(group, effect_chart(group.class_group, group.points),
                   [(move_in_words(group.class_group, p.point), p) for p in group.points])
                  for group in effect.groups]
    waiting = _waiting(plans.APPROVAL_KIND, plan) if plan is not None else None
    return render(request, "desk/calls/plan.html", {
        "section": "desk-calls", "call": call, "plan": plan, "effect": effect,
        "charts": charts, "waiting": waiting,
        "basis_words": BASIS_WORDS.get(plan.basis, plan.basis) if plan is not None else "",
        "plannable": call.status in plans.PLANNED_STATES,
        "can_work": request.desk_role in WORK_ROLES,
        "can_approve": request.desk_role in PLAN_APPROVERS,
        "proposed_by_me": plan is not None and plan.proposed_by_id == request.user.pk})


@require_POST
@desk_view(roles=WORK_ROLES)
def propose_plan(request: HttpRequest, pk: int) -> HttpResponse:
    call = _call(pk)

    def propose() -> str:
        plan = plans.propose_plan(actor=request.user, call=call)
        if plan.outcome != "cured":
            return f"Plan #{plan.pk} computed: {plan.outcome.replace('_', ' ')}. {plan.message}"
        return (f"Plan #{plan.pk} proposed: {len(plan.trades)} trades costing {usd(plan.cost)}. "
                "A second person approves it.")

    return _act(request, _plan_url(call), propose)


@require_POST
@desk_view(roles=PLAN_APPROVERS)
def decide_plan(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve (a second person of the approving roles) or reject (a reason; the proposer's own
    no is a withdrawal): the service and the shared four-eyes mechanism decide who may."""
    call = _call(pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _invalid(request, _plan_url(call), form)
    chosen = str(request.POST.get("plan", ""))
    if not chosen.isdigit():
        messages.error(request, "Nothing was decided: the form names no plan (reload the page).")
        return redirect(_plan_url(call))
    plan = desk_object(LiquidationPlan.objects.filter(call=call), pk=int(chosen))

    def decide() -> str:
        if form.approve:
            done = plans.approve_plan(plan=plan, actor=request.user,
                                      reason=form.cleaned_data["reason"])
        else:
            done = plans.reject_plan(plan=plan, actor=request.user,
                                     reason=form.cleaned_data["reason"])
        call.refresh_from_db()
        return (f"Plan #{done.pk} {done.get_status_display().split(':')[0].lower()}; call "
                f"#{call.pk} is {call.get_status_display().lower()}.")

    return _act(request, _plan_url(call), decide)
