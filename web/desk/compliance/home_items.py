"""What needs compliance now (web/desk/attention.py): the trail's verification, when it is due.

Two items, each only when it is real: the latest verification of the firm's chain (a desk run or
an export's) found a break, which stays at the top until a verification holds again; or events
were recorded since the last verification and none has run today (in the firm's zone), so the
day's trail is not yet vouched for. Exports run while the officer waits (no queue), so there is
no "export pending" item. Two queries.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from brokerage import audit
from brokerage.roles import Role
from brokerage.scope import current_firm

from ..attention import AttentionItem, Urgency, provider
from .views import verification_words

#: the role whose daily control the verification is (a firm admin may run it, it is not theirs)
VERIFIES = frozenset({Role.COMPLIANCE})


@provider
def trail_verification(request: HttpRequest, role: str) -> list[AttentionItem]:
    if role not in VERIFIES:
        return []
    events = audit.events_for(current_firm())
    last = (events.filter(event_type__in=audit.VERIFYING_EVENTS).select_related("actor")
            .order_by("-seq").first())
    url = reverse("desk-compliance-chain")
    if last is not None:
        outcome = verification_words(last)
        if not outcome["ok"]:
            return [AttentionItem(
                "The audit trail failed its last verification", url, Urgency.OVERDUE, 1,
                f"{outcome['text']} (checked {timezone.localtime(last.created_at):%Y-%m-%d %H:%M})")]
        if timezone.localtime(last.created_at).date() == timezone.localdate():
            return []
    unverified = events.filter(seq__gt=last.seq).count() if last else events.count()
    when = (f"last verified {timezone.localtime(last.created_at):%Y-%m-%d %H:%M}"
            if last else "never verified")
    return [AttentionItem(
        f"{unverified:,} audit event{'s' if unverified != 1 else ''} not verified today", url,
        Urgency.TODAY, unverified, f"The trail was {when}: run the verification.")]
