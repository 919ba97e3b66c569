"""Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process (the embedded default)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings")
# DESIGN.md "Scale": numba's parallel kernels collapse when the cores are shared (8 ms per
# account quiet, 61-97 ms under load), so processes that value chunks run serial kernels and
# parallelism comes from more worker processes. numba reads this once, when first imported,
# which is after this module (brokerage/__init__.py imports it before any app); an explicit
# NUMBA_NUM_THREADS in the environment still wins.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

app = Celery("brokerage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task=None, **kwargs) -> None:
    """Between a worker's tasks, close a connection past CONN_MAX_AGE or left unusable
    (Django's ``close_old_connections``, what it runs around each request): with
    CELERY_DB_REUSE_MAX set the fixup keeps connections open across tasks and checks none.
    Not for an eager task: it runs inside its caller's request, maybe in its transaction."""
    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()
