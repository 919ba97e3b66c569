"""What the margin-call desk puts on a staff member's home (web/desk/attention.py): calls
overdue, calls due today, liquidation plans and extensions awaiting this person as the second
one, restriction waivers awaiting an officer. A few queries, each a count and the first row."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from brokerage import approvals
from margin.calls import extensions, restrictions
from margin.calls import services as call_services
from margin.calls.models import MarginCall
from margin.liquidation import services as plans
from web.templatetags.money import format_money

from ..attention import AttentionItem, Urgency, counted, provider
from .views import WAIVER_ROLES, WORK_ROLES, _today, overdue_filter

S = MarginCall.Status


def _call_item(calls, *, title_one: str, title_many: str, urgency: Urgency,
               listing: str) -> AttentionItem:
    calls = list(calls.select_related("account").order_by("due_date", "-amount_due", "pk")[:50])
    count = len(calls)
    if not count:
        return AttentionItem(title=title_many, url=listing, urgency=urgency, count=0)
    first = calls[0]
    # one call: straight to it; several: the list that holds them, the first named
    url = reverse("desk-call", args=[first.pk]) if count == 1 else listing
    plan = first.liquidation_plans.filter(status="proposed").exists()
    detail = (f"{first.account.number} {first.get_kind_display()}, "
              f"{format_money(first.amount_due)} due {first.due_date:%Y-%m-%d}"
              + ("; its liquidation plan awaits approval" if plan else ""))
    return AttentionItem(title=counted(count, title_one, title_many), url=url, urgency=urgency,
                         count=count, detail=detail)


@provider
def call_desk_items(request: HttpRequest, role: str) -> list[AttentionItem]:
    items: list[AttentionItem] = []
    listing = reverse("desk-calls")
    if role in WORK_ROLES:
        today = _today()
        open_calls = MarginCall.objects.filter(status__in=MarginCall.OPEN_STATES)
        items.append(_call_item(
            open_calls.filter(overdue_filter(today)),
            title_one="call overdue", title_many="calls overdue", urgency=Urgency.OVERDUE,
            listing=f"{listing}?overdue=1"))
        items.append(_call_item(
            open_calls.filter(status__in=call_services.RUNNING, due_date=today),
            title_one="call due today", title_many="calls due today", urgency=Urgency.TODAY,
            listing=listing))
    user = request.user
    if role in plans.APPROVER_ROLES:
        waiting = list(approvals.awaiting(user=user, kinds=[plans.APPROVAL_KIND])[:50])
        items.append(_approval_item(waiting, "liquidation plan awaiting your approval",
                                    "liquidation plans awaiting your approval", listing,
                                    plan=True))
    # any staff member but its proposer decides an extension (margin.calls.extensions)
    waiting = list(approvals.awaiting(user=user, kinds=[extensions.APPROVAL_KIND])[:50])
    items.append(_approval_item(waiting, "extension request awaiting approval",
                                "extension requests awaiting approval", listing))
    if role in WAIVER_ROLES:
        waiting = list(approvals.awaiting(user=user, kinds=[restrictions.APPROVAL_KIND])[:50])
        items.append(_approval_item(waiting, "restriction waiver awaiting a decision",
                                    "restriction waivers awaiting a decision", listing,
                                    waiver=True))
    return items


def _approval_item(waiting: list, one: str, many: str, listing: str, *, plan: bool = False,
                   waiver: bool = False) -> AttentionItem:
    count = len(waiting)
    if not count:
        return AttentionItem(title=many, url=listing, urgency=Urgency.TODAY, count=0)
    first = waiting[0]
    url = listing
    call_id = _call_of(first, plan=plan, waiver=waiver)
    if call_id is not None:
        url = reverse("desk-call-plan" if plan else "desk-call", args=[call_id])
    return AttentionItem(title=counted(count, one, many), url=url, urgency=Urgency.TODAY,
                         count=count, detail=f"{_describe(first, plan=plan)} (asked by "
                                             f"{first.requested_by.username})")


def _describe(request, *, plan: bool) -> str:
    """The request's summary; a plan's with its cost as money."""
    from margin.models import LiquidationPlan

    if plan:
        found = (LiquidationPlan.objects.filter(pk=request.subject_id)
                 .select_related("account").first())
        if found is not None:
            return (f"liquidation plan for {found.account.number}: {len(found.trades)} trades "
                    f"costing {format_money(found.cost)}")
    return request.summary


def _call_of(request, *, plan: bool, waiver: bool) -> int | None:
    """The call page a pending request is worked on."""
    from margin.calls.models import CallExtension, Restriction
    from margin.models import LiquidationPlan

    if plan:
        return (LiquidationPlan.objects.filter(pk=request.subject_id)
                .values_list("call_id", flat=True).first())
    if waiver:
        return (Restriction.objects.filter(pk=request.subject_id)
                .values_list("call_id", flat=True).first())
    return (CallExtension.objects.filter(pk=request.subject_id)
            .values_list("call_id", flat=True).first())
