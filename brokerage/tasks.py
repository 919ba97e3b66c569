"""The core's Celery tasks: the audit trail's checkpoints (beat, AUDIT_CHECKPOINT_BEAT_S)."""

from celery import shared_task

from . import audit


@shared_task(name="brokerage.tasks.checkpoint_audit_chains")
def checkpoint_audit_chains() -> int:
    """Sign every chain's head into the anchor directory; returns how many heads."""
    return len(audit.checkpoint_all(reason="beat"))
