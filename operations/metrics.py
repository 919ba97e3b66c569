"""Metrics for Prometheus at /metrics: django-prometheus's (requests, latencies, per process)
and ours, read from the database at scrape time.

Ours are gauges and counters of state every process shares (the dirty backlog, open calls, the
workers' task tallies), so they are read once per scrape from PostgreSQL, whichever web process
answers; nothing is counted in a process's memory, so gunicorn's several workers and the Celery
workers on other machines need no shared directory for them. django-prometheus's own counters
live in each gunicorn worker: with ``PROMETHEUS_MULTIPROC_DIR`` set (``make serve`` sets it) they
are written to files there and summed at scrape time by prometheus_client.

Names start with ``pmargin_``; ages are seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.db.models import Count, F, Min, Q
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from brokerage.models import Firm
from margin.calls.models import MarginCall
from margin.models import AccountMargin, OracleRejection, SweepState

from .health import heartbeat_ages, latest_audit_checkpoint, oldest_dirty_marked_at
from .models import TaskTally

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _seconds_since(moment) -> float:
    return (timezone.now() - moment).total_seconds() if moment is not None else float("nan")


def _margins():
    return AccountMargin.cross_firm.for_compliance(
        reason="operations: metrics of the current margin, per firm")


def sweep_metrics() -> Iterator[Metric]:
    dirty = _margins().filter(dirty_version__gt=F("computed_version"))
    backlog = GaugeMetricFamily("pmargin_dirty_accounts",
                                "Accounts marked dirty and not yet valued at their version")
    backlog.add_metric([], dirty.count())
    yield backlog
    oldest = oldest_dirty_marked_at()
    lag = GaugeMetricFamily("pmargin_sweep_lag_seconds",
                            "Age of the oldest dirty account's mark (0: nothing waits)")
    lag.add_metric([], _seconds_since(oldest) if oldest is not None else 0.0)
    yield lag
    last = SweepState.objects.filter(pk=1).values_list("last_sweep_at", flat=True).first()
    started = GaugeMetricFamily("pmargin_sweep_last_started_age_seconds",
                                "Seconds since the last sweep started (NaN: none yet)")
    started.add_metric([], _seconds_since(last))
    yield started


def current_margin_metrics() -> Iterator[Metric]:
    slugs = dict(Firm.objects.values_list("pk", "slug"))
    age = GaugeMetricFamily("pmargin_current_margin_age_seconds",
                            "Age of the firm's least recently valued current margin",
                            labels=["firm"])
    never = GaugeMetricFamily("pmargin_current_margin_never_valued",
                              "The firm's accounts with no valuation yet", labels=["firm"])
    rows = (_margins().values("firm_id")
            .annotate(oldest=Min("computed_at"), never=Count("pk", filter=Q(computed_at__isnull=True)))
            .order_by("firm_id"))
    for row in rows:
        slug = slugs.get(row["firm_id"], str(row["firm_id"]))
        age.add_metric([slug], _seconds_since(row["oldest"]))
        never.add_metric([slug], row["never"])
    yield age
    yield never


def call_metrics() -> Iterator[Metric]:
    open_calls = GaugeMetricFamily("pmargin_open_margin_calls", "Open margin calls, by kind",
                                   labels=["kind"])
    counts = dict(MarginCall.cross_firm.for_compliance(
        reason="operations: open calls by kind, over every firm")
        .filter(status__in=MarginCall.OPEN_STATES).values_list("kind")
        .annotate(n=Count("pk")).order_by())
    for kind in MarginCall.Kind.values:
        open_calls.add_metric([kind], counts.get(kind, 0))
    yield open_calls


def oracle_metrics() -> Iterator[Metric]:
    rejections = CounterMetricFamily("pmargin_oracle_rejections",
                                     "Oracle rounds refused, by the check they failed",
                                     labels=["check"])
    for check, n in (OracleRejection.objects.values_list("failed_check")
                     .annotate(n=Count("pk")).order_by("failed_check")):
        rejections.add_metric([check], n)
    yield rejections


def task_metrics() -> Iterator[Metric]:
    runs = CounterMetricFamily("pmargin_task_runs", "Celery task runs on the workers, by outcome",
                               labels=["task", "outcome"])
    duration = CounterMetricFamily("pmargin_task_seconds",
                                   "Seconds spent in finished task runs", labels=["task"])
    finished = CounterMetricFamily("pmargin_task_finished_runs",
                                   "Finished task runs (failed or not): the divisor of "
                                   "pmargin_task_seconds", labels=["task"])
    last = GaugeMetricFamily("pmargin_task_last_duration_seconds",
                             "Duration of the task's last finished run", labels=["task"])
    for tally in TaskTally.objects.order_by("task"):
        for outcome in ("succeeded", "failed", "retried"):
            runs.add_metric([tally.task, outcome], getattr(tally, outcome))
        duration.add_metric([tally.task], tally.seconds_total)
        finished.add_metric([tally.task], tally.succeeded + tally.failed)
        if tally.last_seconds is not None:
            last.add_metric([tally.task], tally.last_seconds)
    yield from (runs, duration, finished, last)


def liveness_metrics() -> Iterator[Metric]:
    heartbeat = GaugeMetricFamily("pmargin_heartbeat_age_seconds",
                                  "Seconds since a worker of the queue, or beat, was seen",
                                  labels=["process"])
    for name, age in sorted(heartbeat_ages().items()):
        heartbeat.add_metric([name], age)
    yield heartbeat
    kind, latest = latest_audit_checkpoint()
    audit = GaugeMetricFamily("pmargin_audit_checkpoint_age_seconds",
                              "Age of the latest audit checkpoint", labels=["kind"])
    audit.add_metric([kind], _seconds_since(latest))
    yield audit


class DatabaseCollector(Collector):
    """Ours, read from the database when scraped."""

    def collect(self) -> Iterator[Metric]:
        for family in (sweep_metrics, current_margin_metrics, call_metrics, oracle_metrics,
                       task_metrics, liveness_metrics):
            yield from family()


_database = CollectorRegistry(auto_describe=False)
_database.register(DatabaseCollector())


def process_registry() -> CollectorRegistry:
    """django-prometheus's metrics: this process's, or every gunicorn worker's from the
    multiprocess directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def exposition() -> bytes:
    return generate_latest(process_registry()) + generate_latest(_database)
