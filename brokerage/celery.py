"""Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process (the embedded default)."""

import os

from celery import Celery

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
