"""An account's audit trail: the events of the firm's chain whose object is the account or one
of its children.

Events name their object as ``object_type`` (the model's ``app_label.model``) and
``object_id`` (its primary key as text; ``brokerage.audit.record``), except a position, whose
key is ``"<account pk>:<instrument pk>"`` (``accounts.services.set_position``). A snapshot
chunk's event vouches for many accounts at once and names the chunk's first snapshot, so the
account's history is on its own tab, not here. Each child is matched by a subquery on its
account (no id list is loaded into Python), against the (object_type, object_id) index.
"""

from __future__ import annotations

from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from accounts.models import Account, LedgerEntry, Position
from brokerage import audit
from brokerage.models import AuditEvent
from eligibility.models import Application
from margin.calls.models import CallExtension, MarginCall, Restriction
from margin.executions.models import Execution
from margin.liquidation.models import LiquidationPlan


def _children(account: Account) -> list[QuerySet]:
    return [
        LedgerEntry.objects.filter(account=account),
        MarginCall.objects.filter(account=account),
        CallExtension.objects.filter(call__account=account),
        Restriction.objects.filter(account=account),
        LiquidationPlan.objects.filter(account=account),
        Execution.objects.filter(account=account),
        Application.objects.filter(account=account),
    ]


def account_events(account: Account) -> QuerySet[AuditEvent]:
    """The account's events in its firm's chain, newest first."""
    named = Q(object_type=Account._meta.label_lower, object_id=str(account.pk)) | Q(
        object_type=Position._meta.label_lower, object_id__startswith=f"{account.pk}:")
    for children in _children(account):
        keys = children.order_by().annotate(key=Cast("pk", CharField())).values("key")
        named |= Q(object_type=children.model._meta.label_lower, object_id__in=keys)
    return (audit.events_for(account.firm).filter(named).select_related("actor")
            .order_by("-seq"))
