"""The operations layer: health, readiness, metrics, logs, and a backup restored and verified.

Readiness is seen turning unready by pointing the broker at a closed port in this process's
settings (never by stopping the Redis the other suites share), and ready with a real worker
subprocess and a real beat on the test database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import READY_S, REPO, Worker, _test_database_url, wait_for
from tests.integration.conftest import start_worker as start_worker  # noqa: F401  (a fixture)

__all__ = ["READY_S", "Worker", "wait_for"]

#: nothing listens here (the discard port): a broker that cannot be reached
CLOSED_BROKER = "redis://127.0.0.1:9/0"


@pytest.fixture
def broker_at(settings) -> Iterator[Callable[[str], None]]:
    """Point this process's broker at a URL (settings and the Celery app's copy of them), tasks
    sent rather than run eagerly; both restored afterwards."""
    from brokerage.celery import app

    names = ("broker_url", "broker_read_url", "broker_write_url", "task_always_eager")
    saved = {name: app.conf[name] for name in names}

    def point(url: str) -> None:
        settings.CELERY_BROKER_URL = url
        # Celery resolved its read and write URLs from the broker's when it was configured.
        app.conf.update(broker_url=url, broker_read_url=url, broker_write_url=url,
                        task_always_eager=False)

    try:
        yield point
    finally:
        app.conf.update(saved)


@pytest.fixture
def start_beat(transactional_db, settings, tmp_path) -> Iterator[Callable[[], subprocess.Popen]]:
    """`celery -A brokerage beat` on the test database and the test broker; killed in teardown."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        env = {**os.environ, "DATABASE_URL": _test_database_url(),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "PYTHONPATH": str(REPO)}
        log = (tmp_path / "beat.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "brokerage", "beat", "-l", "INFO",
             "-s", str(tmp_path / "beat-schedule")],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            os.killpg(process.pid, 9)
            process.wait(timeout=30)
