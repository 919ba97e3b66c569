"""The production path: a Celery worker takes the recompute task from the Redis broker and
writes the snapshot to PostgreSQL. Nothing here is eager or mocked."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from accounts import services as book
from brokerage.celery import app
from brokerage.scope import firm_scope
from margin.market_data import load_prices
from margin.models import MarginSnapshot
from margin.reproduce import explanation
from margin.tasks import recompute_accounts
from tests.factories import make_firm, shared_instrument


@pytest.mark.django_db(transaction=True)
def test_a_worker_recomputes_an_account_through_the_redis_broker(settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "make test uses the Redis broker"
    app.conf.task_always_eager = False
    fw = make_firm("worker")
    stock = shared_instrument("WRKR")
    load_prices(observations=[{"symbol": "WRKR", "price": "50",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    with firm_scope(fw.firm):
        book.set_position(account=fw.account, instrument=stock, quantity=Decimal(200),
                          actor=fw.users["margin_desk"])
    app.control.purge()  # messages left by earlier runs are not this test's
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        recompute_accounts.delay(fw.firm.pk, [fw.account.pk])
        # The worker writes through its own connection: wait for the committed snapshot.
        deadline = time.monotonic() + 60
        with firm_scope(fw.firm):
            while not MarginSnapshot.objects.filter(account=fw.account).exists():
                assert time.monotonic() < deadline, "no snapshot from the worker within 60 s"
                time.sleep(0.2)
            snapshot = MarginSnapshot.objects.get(account=fw.account)
    assert explanation(snapshot)["portfolio_margin"]["regulatory_requirement"] == 1500.0  # 15 % of $10k
