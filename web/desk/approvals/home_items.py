"""The approvals queue's items on the desk's home (web/desk/attention.py): applications to
review, applications to approve, rule-set and risk-parameter changes awaiting a second person;
each only for the roles that may act on it, and never what the staff member worked on
themselves (``approvals.awaiting`` leaves out a request's makers: four eyes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from brokerage import approvals
from eligibility.models import Application

from ..attention import AttentionItem, Urgency, counted, provider
from .present import person, when
from .views import APPLICATION_KIND, CHANGE_KINDS, CHANGE_ROLES, DECIDE_ROLES, REVIEW_ROLES


def _oldest_waiting(rows, *, one: str, many: str, url: str,
                    detail: Callable[[Any], str]) -> AttentionItem:
    """What waits, counted, with the oldest named (``detail`` of the first row)."""
    count = rows.count()
    oldest = rows.first()
    return AttentionItem(title=counted(count, one, many), url=url, urgency=Urgency.TODAY,
                         count=count, detail=detail(oldest) if oldest else "")


@provider
def approvals_waiting(request: HttpRequest, role: str) -> list[AttentionItem]:
    queue = reverse("desk-approvals")
    items: list[AttentionItem] = []
    if role in REVIEW_ROLES:
        items.append(_oldest_waiting(
            Application.objects.filter(state=Application.State.SUBMITTED)
            .select_related("account", "submitted_by").order_by("submitted_at", "pk"),
            one="application to review", many="applications to review",
            url=f"{queue}#to-review",
            detail=lambda oldest: (f"oldest: account {oldest.account.number}, submitted by "
                                   f"{person(oldest.submitted_by)} on "
                                   f"{when(oldest.submitted_at)}")))
    if role in DECIDE_ROLES:
        items.append(_oldest_waiting(
            approvals.awaiting(user=request.user, kinds=[APPLICATION_KIND])
            .select_related("requested_by"),
            one="application to approve", many="applications to approve",
            url=f"{queue}#to-decide",
            detail=lambda oldest: (f"reviewed by {person(oldest.requested_by)} on "
                                   f"{when(oldest.requested_at)}")))
    if role in CHANGE_ROLES:
        items.append(_oldest_waiting(
            approvals.awaiting(user=request.user, kinds=list(CHANGE_KINDS))
            .select_related("requested_by"),
            one="rule-set or risk-parameter change awaiting a second person",
            many="rule-set and risk-parameter changes awaiting a second person",
            url=f"{queue}#changes",
            detail=lambda oldest: f"{oldest.summary}, proposed by {person(oldest.requested_by)}"))
    return items
