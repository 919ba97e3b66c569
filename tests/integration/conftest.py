"""Real Celery worker subprocesses (prefork, one child) on the Redis broker and the pytest-django
test database: what a worker on another machine does, including being killed.

The worker connects through its own DATABASE_URL, so these tests commit their data
(``transactional_db``); every worker started here is killed with its process group in teardown,
before the test database is flushed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from margin.bench.worker import READY_S, REPO, Worker, wait_for
from margin.bench.worker import start_worker as start_subprocess

__all__ = ["READY_S", "REPO", "Worker", "wait_for"]


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
        worker = start_subprocess(app=app, name=name, env=env, log=log,
                                  extra=["-I", "tests.integration.probe"])
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()
