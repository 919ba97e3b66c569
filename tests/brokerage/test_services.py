"""The suite runs on the real services: PostgreSQL and a Redis broker. Missing ones fail loudly."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from brokerage.celery import app


@pytest.mark.django_db
def test_the_database_is_postgresql():
    assert connection.vendor == "postgresql", (
        "make test runs on PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/pmargin")


def test_the_celery_broker_is_reachable():
    assert settings.CELERY_BROKER_URL, "make test sets CELERY_BROKER_URL to the Redis broker"
    assert not settings.CELERY_TASK_ALWAYS_EAGER
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=2)
        assert conn.connected
