"""The approvals queue's items on the desk's home (web/desk/attention.py): applications to
review, applications to approve, rule-set and risk-parameter changes awaiting a second person;
each only for the roles that may act on it, and never what the staff member worked on
themselves (``approvals.awaiting`` leaves out a request's makers: four eyes)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from brokerage import approvals
from eligibility.models import Application

from ..attention import AttentionItem, Urgency, provider
from .present import person, when
from .views import APPLICATION_KIND, CHANGE_KINDS, CHANGE_ROLES, DECIDE_ROLES, REVIEW_ROLES


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


@provider
def approvals_waiting(request: HttpRequest, role: str) -> list[AttentionItem]:
    queue = reverse("desk-approvals")
    items: list[AttentionItem] = []
    if role in REVIEW_ROLES:
        submitted = (Application.objects.filter(state=Application.State.SUBMITTED)
                     .select_related("account", "submitted_by").order_by("submitted_at", "pk"))
        count = submitted.count()
        oldest = submitted.first()
        items.append(AttentionItem(
            title=_plural(count, "application to review", "applications to review"),
            url=f"{queue}#to-review", urgency=Urgency.TODAY, count=count,
            detail=(f"oldest: account {oldest.account.number}, submitted by "
                    f"{person(oldest.submitted_by)} on {when(oldest.submitted_at)}")
            if oldest else ""))
    if role in DECIDE_ROLES:
        waiting = approvals.awaiting(user=request.user, kinds=[APPLICATION_KIND]) \
            .select_related("requested_by")
        count = waiting.count()
        oldest = waiting.first()
        items.append(AttentionItem(
            title=_plural(count, "application to approve", "applications to approve"),
            url=f"{queue}#to-decide", urgency=Urgency.TODAY, count=count,
            detail=(f"reviewed by {person(oldest.requested_by)} on "
                    f"{when(oldest.requested_at)}") if oldest else ""))
    if role in CHANGE_ROLES:
        waiting = approvals.awaiting(user=request.user, kinds=list(CHANGE_KINDS)) \
            .select_related("requested_by")
        count = waiting.count()
        oldest = waiting.first()
        items.append(AttentionItem(
            title=_plural(count, "rule-set or risk-parameter change awaiting a second person",
                          "rule-set and risk-parameter changes awaiting a second person"),
            url=f"{queue}#changes", urgency=Urgency.TODAY, count=count,
            detail=(f"{oldest.summary}, proposed by {person(oldest.requested_by)}")
            if oldest else ""))
    return items
