"""Real Celery worker subprocesses (prefork, one child) on the Redis broker and the pytest-django
test database: what a worker on another machine does, including being killed.

The worker connects through its own DATABASE_URL, so these tests commit their data
(``transactional_db``); every worker started here is killed with its process group in teardown,
before the test database is flushed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
READY_S = 60.0  # a cold worker imports Django, numba and the engine


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once (a machine lost mid-task)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)


def wait_for(condition: Callable[[], object], what: str, seconds: float = 30.0,
             worker: Worker | None = None) -> float:
    """Seconds until `condition()` holds, polled; fails naming `what` after `seconds`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            detail = f"\n--- {worker.name} log ---\n{worker.tail()}" if worker else ""
            raise AssertionError(f"{what} not within {seconds:.0f} s{detail}")
        time.sleep(0.02)
    return time.monotonic() - start


def _test_database_url() -> str:
    """DATABASE_URL with the test database's name (pytest-django renamed it for this run)."""
    from django.db import connection

    url = os.environ.get("DATABASE_URL", "")
    assert url.startswith("postgres"), "the integration layer needs DATABASE_URL on PostgreSQL"
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path) -> Iterator[Callable[..., Worker]]:
    """Start `celery -A brokerage worker -Q sweep,default --concurrency 1 --pool prefork`;
    `start_worker(NAME=value, ...)` adds environment (settings read theirs from it)."""
    from brokerage.celery import app

    assert settings.CELERY_BROKER_URL.startswith("redis://"), "make test sets the Redis broker"
    app.conf.task_always_eager = False
    app.control.purge()  # earlier tests' and runs' messages are not this test's
    started: list[Worker] = []

    def start(**environment: str) -> Worker:
        name = f"it{len(started)}-{uuid.uuid4().hex[:8]}@localhost"
        env = {**os.environ, "DATABASE_URL": _test_database_url(),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
               "PYTHONPATH": str(REPO), "LOG_LEVEL": "INFO"}
        # This process imported brokerage.celery, which pinned NUMBA_NUM_THREADS in its own
        # environment: the worker must decide for itself, unless a test says otherwise.
        env.pop("NUMBA_NUM_THREADS", None)
        env.update(environment)
        log = tmp_path / f"{name.split('@')[0]}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "brokerage", "worker",
                 "-Q", "sweep,default", "--concurrency", "1", "--pool", "prefork",
                 "-I", "tests.integration.probe", "-n", name, "-l", "INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group: teardown kills it whole
        worker = Worker(name, process, log)
        started.append(worker)
        wait_for(lambda: process.poll() is not None
                 or app.control.ping(destination=[name], timeout=0.2), f"worker {name} ready",
                 READY_S, worker)
        assert process.poll() is None, f"worker {name} exited:\n{worker.tail()}"
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()
