"""Celery tasks: recompute margin when the book or a price moves, and on a schedule."""

from __future__ import annotations

import logging

from celery import shared_task

from accounts.models import Account
from brokerage.models import Firm
from brokerage.scope import firm_scope

from .snapshots import compute_snapshots

CHUNK = 500
logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def recompute_accounts(firm_id: int, account_ids: list[int]) -> dict:
    firm = Firm.objects.filter(pk=firm_id).first()
    if firm is None:  # a message that outlived its firm (deleted test or demo data)
        logger.warning("recompute for unknown firm %s dropped", firm_id)
        return {"computed": 0, "flagged": {}}
    with firm_scope(firm):
        accounts = list(Account.objects.filter(pk__in=account_ids).exclude(status="closed")
                        .select_related("firm").order_by("pk"))
        outcomes = compute_snapshots(accounts=accounts)
    return {"computed": sum(1 for o in outcomes if o.snapshot),
            "flagged": {o.account_id: o.flag for o in outcomes if o.flag}}


@shared_task(acks_late=True)
def recompute_firm(firm_id: int) -> dict:
    firm = Firm.objects.filter(pk=firm_id).first()
    if firm is None:  # a message that outlived its firm (deleted test or demo data)
        logger.warning("recompute for unknown firm %s dropped", firm_id)
        return {"computed": 0, "flagged": {}}
    with firm_scope(firm):
        ids = list(Account.objects.exclude(status="closed").order_by("pk")
                   .values_list("pk", flat=True))
    totals = {"computed": 0, "flagged": {}}
    for start in range(0, len(ids), CHUNK):
        result = recompute_accounts(firm_id, ids[start:start + CHUNK])
        totals["computed"] += result["computed"]
        totals["flagged"].update(result["flagged"])
    return totals


@shared_task
def recompute_all() -> None:
    for firm_id in Firm.objects.order_by("pk").values_list("pk", flat=True):
        recompute_firm.delay(firm_id)
