"""Health and readiness, for a load balancer and for people (`/healthz`, `/readyz`).

`/healthz` says the process answers, and touches nothing else. `/readyz` asks each dependency
in turn and reports it as ``ok`` with, where it has one, an age in seconds, and nothing else: no
hostnames, versions, counts of clients or error texts (the body is unauthenticated; the logs
say why a check failed). Each check is bounded in time, so the answer stays fast when a
dependency is down: the broker is given ``READYZ_BROKER_TIMEOUT_S``; workers and beat are read
from the heartbeats they write (``operations.celery_signals``), not asked over the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import F, Min
from django.utils import timezone

from brokerage.audit_anchors import latest_checkpoint_time
from margin.models import AccountMargin

from .models import Heartbeat

logger = logging.getLogger(__name__)

Check = dict[str, object]


def _age(moment: datetime | None) -> float | None:
    return None if moment is None else round((timezone.now() - moment).total_seconds(), 1)


def eager() -> bool:
    """No broker configured: tasks run in the web process (the embedded demo)."""
    from brokerage.celery import app

    return bool(app.conf.task_always_eager)


def check_database() -> Check:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def check_broker() -> Check:
    if eager():
        return {"ok": True, "mode": "eager"}
    from brokerage.celery import app

    timeout = float(settings.READYZ_BROKER_TIMEOUT_S)
    with app.connection_for_write(connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    return {"ok": True}


def heartbeat_ages() -> dict[str, float | None]:
    return {row.name: _age(row.seen_at) for row in Heartbeat.objects.all()}


def check_workers() -> Check:
    """A worker consuming each queue wrote its heartbeat recently."""
    if eager():
        return {"ok": True, "mode": "eager"}
    ages = heartbeat_ages()
    stale = float(settings.READYZ_WORKER_STALE_S)
    queues = {}
    for queue in sorted(q.name for q in settings.CELERY_TASK_QUEUES):
        age = ages.get(f"worker:{queue}")
        queues[queue] = {"ok": age is not None and age <= stale, "age_s": age}
    return {"ok": all(q["ok"] for q in queues.values()), "queues": queues}


def check_beat() -> Check:
    if eager():
        return {"ok": True, "mode": "eager"}
    age = heartbeat_ages().get("beat")
    return {"ok": age is not None and age <= float(settings.READYZ_BEAT_STALE_S), "age_s": age}


def oldest_dirty_marked_at() -> datetime | None:
    """When the longest-waiting dirty account was marked (None: nothing waits)."""
    return (AccountMargin.cross_firm.for_compliance(
        reason="operations: the age of the sweep's backlog, over every firm")
        .filter(dirty_version__gt=F("computed_version"))
        .aggregate(oldest=Min("marked_at"))["oldest"])


def check_dirty_accounts() -> Check:
    age = _age(oldest_dirty_marked_at())
    return {"ok": age is None or age <= float(settings.READYZ_MAX_DIRTY_AGE_S),
            "oldest_age_s": age}


def latest_audit_checkpoint() -> tuple[str, datetime | None]:
    """The latest point the audit trail can be vouched for, and what kind of point it is: the
    newest signed checkpoint in the anchor directory (``brokerage.audit_anchors``; beat takes
    one every few minutes). The one place /readyz and /metrics read it."""
    return "signed_checkpoint", latest_checkpoint_time()


def check_audit() -> Check:
    kind, latest = latest_audit_checkpoint()
    return {"ok": True, "kind": kind, "age_s": _age(latest)}


CHECKS: dict[str, Callable[[], Check]] = {
    "database": check_database,
    "broker": check_broker,
    "workers": check_workers,
    "beat": check_beat,
    "dirty_accounts": check_dirty_accounts,
    "audit": check_audit,
}


def readiness() -> tuple[bool, dict[str, Check]]:
    """Every check's answer; ready when each one is ok. A check that raises is not ok, and
    why is logged here, never sent."""
    results: dict[str, Check] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, exc.__class__.__name__,
                           exc_info=True)
            results[name] = {"ok": False}
    return all(result["ok"] for result in results.values()), results
