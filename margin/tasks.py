"""Celery tasks: the sweep of dirty accounts (debounced and on beat) and full recomputes.

All run on the ``sweep`` queue (CELERY_TASK_ROUTES), acknowledged late, under the sweep's time
limits. What brings a dead worker's chunk back is its claim's lease: once it expires, the next
sweep (debounced or beat, every few seconds) claims the still-dirty accounts again; the
unacknowledged message itself returns only after the broker's visibility timeout (an hour on
Redis), and by then its claim is outdated and it writes nothing. Each task is idempotent: what
a chunk writes is guarded by versions (``margin.sweep``), so a redelivered or duplicated
message writes nothing twice (tests/integration kills a worker mid-chunk).
"""

from __future__ import annotations

import logging

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from brokerage.models import Firm

from .dirty import mark_accounts, mark_everyone, mark_firm, sweep_claimed, sweep_started
from .end_of_day import due_runs
from .snapshots import History
from .sweep import Chunk, claim_dirty, sweep_chunk, sweep_now

logger = logging.getLogger(__name__)

SWEEP_LIMITS = {"acks_late": True, "soft_time_limit": settings.MARGIN_SWEEP_SOFT_TIME_LIMIT_S,
                "time_limit": settings.MARGIN_SWEEP_TIME_LIMIT_S}
#: how often the dispatcher claims again under eager Celery (the demo), where a chunk cannot
#: ask for the next sweep without nesting one inside itself
EAGER_ROUNDS = 5


@shared_task(**SWEEP_LIMITS)
def sweep_dirty() -> dict:
    """Claim the dirty accounts and send one chunk task per chunk (debounced, and on beat)."""
    started = sweep_started()
    chunks = claim_dirty()
    if chunks:
        sweep_claimed(started)
    send_chunks(chunks)
    rounds = 1
    while current_app.conf.task_always_eager and rounds < EAGER_ROUNDS:
        more = claim_dirty()  # accounts marked while the inline chunks ran
        if not more:
            break
        for chunk in more:
            sweep_chunk(chunk)
        chunks += more
        rounds += 1
    return {"chunks": len(chunks), "accounts": sum(len(c.account_ids) for c in chunks)}


def send_chunks(chunks: list[Chunk]) -> None:
    """One chunk task per chunk, on the ``sweep`` queue."""
    for chunk in chunks:
        sweep_dirty_chunk.delay(chunk.firm_id, chunk.account_ids, chunk.claim)


@shared_task(**SWEEP_LIMITS)
def sweep_dirty_chunk(firm_id: int, account_ids: list[int], claim: int) -> dict:
    try:
        return sweep_chunk(Chunk(firm_id, list(account_ids), claim)).as_dict()
    except SoftTimeLimitExceeded:
        # The chunk gave its accounts back (still dirty) as it unwound: the next sweep has them.
        logger.warning("sweep chunk of %s accounts (firm %s) timed out", len(account_ids),
                       firm_id)
        raise


@shared_task(**SWEEP_LIMITS)
def recompute_accounts(firm_id: int, account_ids: list[int]) -> dict:
    """Mark the accounts dirty and value them now, in this process, each kept as a history
    snapshot (someone asked for these accounts)."""
    if not Firm.objects.filter(pk=firm_id).exists():  # a message that outlived its firm
        logger.warning("recompute for unknown firm %s dropped", firm_id)
        return {"computed": 0, "flagged": {}}
    mark_accounts(account_ids, request=False)
    result = sweep_now(firm_id=firm_id, account_ids=list(account_ids), history=History.FORCED)
    return {"computed": result.computed, "flagged": result.flagged}


@shared_task(bind=True, **SWEEP_LIMITS)
def recompute_firm(self, firm_id: int) -> dict:
    """Mark every account of the firm dirty and value them: in this process when called
    directly (the demo seed, a shell) or eagerly; from a worker, the sweep's chunks go across
    the workers instead (one task for a whole firm would outlast its time limit)."""
    if not Firm.objects.filter(pk=firm_id).exists():  # a message that outlived its firm
        logger.warning("recompute for unknown firm %s dropped", firm_id)
        return {"computed": 0, "flagged": {}}
    if not (self.request.called_directly or current_app.conf.task_always_eager):
        marked = mark_firm(firm_id, request=False)
        sweep_dirty.delay()
        return {"marked": marked}
    mark_firm(firm_id, request=False)
    # Called directly (the demo seed's final compute, a shell): asked for, so every account
    # is kept as history.
    result = sweep_now(firm_id=firm_id, history=History.FORCED)
    return {"computed": result.computed, "flagged": result.flagged}


@shared_task(**SWEEP_LIMITS)
def recompute_all() -> int:
    """Mark every account dirty; the sweep values them in chunks across the workers."""
    return mark_everyone()


@shared_task(acks_late=True)
def end_of_day_due() -> dict:
    """Start the end-of-day runs due now (beat, every few minutes): each firm's after its
    calendar's close and at the crypto cut, once per session; the sweep does the valuing."""
    return {"started": [[run.firm_id, run.calendar, run.session.isoformat()]
                        for run in due_runs()]}


@shared_task(acks_late=True)
def collateral_calls_due() -> dict:
    """Collateral calls whose due time has passed, made overdue (beat, every minute): due in
    hours, they do not wait for their account's next valuation or the close."""
    from .calls.issuance import collateral_overdue

    return {"overdue": collateral_overdue()}


@shared_task(acks_late=True)
def prune_market_changes() -> int:
    """The market change log's rows older than MARGIN_MARKET_CHANGES_KEPT_S (beat, hourly):
    the sweep workers read it every chunk and need only its recent rows
    (``margin.market_cache``)."""
    from datetime import timedelta

    from django.utils import timezone

    from .market_cache import prune_market_changes as prune

    kept = timedelta(seconds=float(settings.MARGIN_MARKET_CHANGES_KEPT_S))
    return prune(before=timezone.now() - kept)
