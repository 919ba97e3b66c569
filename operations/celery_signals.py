"""Celery's side of operations: the request id rides along with the tasks a request causes,
workers and beat leave heartbeats, and every run on a worker is tallied (for /metrics).

- A task published inside a request (or inside another task) carries the request id in its
  message headers (``before_task_publish``); the worker runs the task inside that id
  (``task_prerun``/``task_postrun``), so its log lines and the audit events it writes carry it.
- A worker writes ``worker:<queue>`` for each queue it consumes every ``HEARTBEAT_S`` seconds,
  from a thread of its main process (the one that answers the broker, whatever the pool does).
- Beat writes ``beat`` as it sends a scheduled task, at most every ``HEARTBEAT_S`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack

from celery import signals
from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from brokerage.scope import current_request_id, request_id_scope

logger = logging.getLogger(__name__)

#: the message header that carries the request id
HEADER = "pmargin_request_id"
HEARTBEAT_S = 10.0

_state = {"beat": False, "beat_written": 0.0}
_stacks: dict[str, ExitStack] = {}  # task id -> the request-id scope it runs in
_started: dict[str, float] = {}


def write_heartbeat(name: str) -> None:
    from .models import Heartbeat

    Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": timezone.now()})


def _safely(what: str, write) -> None:
    """A heartbeat or a tally must never break a task or beat: log and go on."""
    try:
        close_old_connections()
        write()
    except Exception:
        logger.exception("operations: %s not recorded", what)
        connection.close()


# --------------------------------------------------------------------------- request id


@signals.before_task_publish.connect(dispatch_uid="operations.publish")
def _on_publish(sender=None, headers=None, **_kwargs) -> None:
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(HEADER, request_id)
    if _state["beat"] and time.monotonic() - _state["beat_written"] >= HEARTBEAT_S:
        _state["beat_written"] = time.monotonic()
        _safely("beat's heartbeat", lambda: write_heartbeat("beat"))


def request_id_of(task) -> str:
    request = task.request
    value = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    return value if isinstance(value, str) else ""


@signals.task_prerun.connect(dispatch_uid="operations.prerun")
def _on_prerun(task_id=None, task=None, **_kwargs) -> None:
    request_id = request_id_of(task)
    if request_id and request_id != current_request_id():
        stack = ExitStack()
        stack.enter_context(request_id_scope(request_id))
        _stacks[task_id] = stack
    _started[task_id] = time.monotonic()
    if not task.request.is_eager:
        logger.info("task %s started", task.name, extra={"task": task.name, "task_id": task_id})


@signals.task_postrun.connect(dispatch_uid="operations.postrun")
def _on_postrun(task_id=None, task=None, state=None, **_kwargs) -> None:
    started = _started.pop(task_id, None)
    try:
        if not task.request.is_eager and started is not None:
            seconds = time.monotonic() - started
            logger.info("task %s %s in %.3f s", task.name, (state or "").lower(), seconds,
                        extra={"task": task.name, "task_id": task_id, "state": state,
                               "duration_ms": round(seconds * 1000, 1)})
            _safely("task tally", lambda: tally(task.name, state or "", seconds))
    finally:
        stack = _stacks.pop(task_id, None)
        if stack is not None:
            stack.close()


def tally(task_name: str, state: str, seconds: float) -> None:
    from .models import TaskTally

    column = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}.get(state)
    if column is None:
        return
    TaskTally.objects.get_or_create(task=task_name)
    changes = {column: F(column) + 1, "last_finished_at": timezone.now()}
    if column != "retried":
        changes.update(seconds_total=F("seconds_total") + seconds, last_seconds=seconds)
    TaskTally.objects.filter(task=task_name).update(**changes)


# --------------------------------------------------------------------------- heartbeats


@signals.beat_init.connect(dispatch_uid="operations.beat_init")
def _on_beat_init(**_kwargs) -> None:
    _state["beat"] = True
    _safely("beat's heartbeat", lambda: write_heartbeat("beat"))


@signals.worker_ready.connect(dispatch_uid="operations.worker_ready")
def _on_worker_ready(sender=None, **_kwargs) -> None:
    queues = sorted(sender.app.amqp.queues.consume_from or sender.app.amqp.queues)

    def beat_forever() -> None:
        while True:
            for queue in queues:
                _safely("a worker's heartbeat", lambda q=queue: write_heartbeat(f"worker:{q}"))
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=beat_forever, name="operations-heartbeat", daemon=True).start()
