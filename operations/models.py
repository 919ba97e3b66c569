"""What the processes that serve no HTTP say about themselves, for /readyz and /metrics.

Both are a handful of rows updated in place (one per queue, one per task name), written by the
workers and beat (``operations.celery_signals``) and read at scrape time, so every web process on
every machine reports the same figures (no per-process counters to add up).
"""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """The last sign of life of a kind of process: ``worker:<queue>`` (a worker consuming the
    queue, every few seconds) or ``beat`` (beat sending a scheduled task)."""

    name = models.CharField(max_length=60, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class TaskTally(models.Model):
    """Counts of one Celery task's runs on the workers (eager runs in-process are not counted):
    finished, failed and retried runs, and the seconds they took in all and last time."""

    task = models.CharField(max_length=200, unique=True)
    succeeded = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    retried = models.BigIntegerField(default=0)
    seconds_total = models.FloatField(default=0.0, help_text="of finished runs, failed or not")
    last_seconds = models.FloatField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.task}: {self.succeeded} ok, {self.failed} failed, {self.retried} retried"
