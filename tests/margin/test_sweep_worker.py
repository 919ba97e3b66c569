"""The sweep on the production path: a real Celery worker on the Redis broker and PostgreSQL.
A price load reaches the current margin of exactly the accounts holding the underlying, through
the debounced sweep the load's commit sends; a chunk delivered twice writes one snapshot."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.utils import timezone

from accounts import services as book
from brokerage.celery import app
from brokerage.scope import firm_scope
from margin.dirty import sweep_started
from margin.market_data import load_prices
from margin.models import AccountMargin, MarginSnapshot
from margin.sweep import claim_dirty, sweep_now
from margin.tasks import recompute_firm, sweep_dirty_chunk
from tests.factories import make_firm, shared_instrument


def _price(symbol: str, value: str) -> None:
    load_prices(observations=[{"symbol": symbol, "price": value,
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)


def _current(account) -> AccountMargin:
    return AccountMargin.cross_firm.for_compliance(reason="test").get(account=account)


def _wait(condition, what: str, seconds: float = 60.0) -> float:
    """Seconds until `condition()` holds (the worker writes through its own connection)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, f"{what} not within {seconds:.0f} s"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.django_db(transaction=True)
def test_a_worker_sweeps_a_price_load_into_the_holders_current_margin(settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "make test uses the Redis broker"
    app.conf.task_always_eager = False
    holders = [make_firm("sweepa"), make_firm("sweepb")]
    bystander = make_firm("sweepc")
    acme, othr = shared_instrument("SWPA"), shared_instrument("SWPO")
    _price("SWPA", "100")
    _price("SWPO", "40")
    for fw, instrument in ((holders[0], acme), (holders[1], acme), (bystander, othr)):
        with firm_scope(fw.firm):
            book.set_position(account=fw.account, instrument=instrument, quantity=Decimal(100),
                              actor=fw.users["margin_desk"])
    app.control.purge()  # the setup's own sweeps (and earlier runs' messages) are not this test's
    sweep_started()
    sweep_now()
    before = {fw.account.pk: _current(fw.account) for fw in (*holders, bystander)}

    finished: list[dict] = []

    def record(sender=None, retval=None, **kwargs):
        if sender is not None and sender.name == "margin.tasks.sweep_dirty_chunk":
            finished.append({**retval, "account_ids": kwargs["args"][1]})

    task_postrun.connect(record, weak=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            _price("SWPA", "88")  # on commit: holders marked, one debounced sweep sent
            seconds = _wait(lambda: all(
                _current(fw.account).computed_version > before[fw.account.pk].computed_version
                and not _current(fw.account).is_dirty for fw in holders), "the holders' sweep")
            print(f"price load to current margin through the worker: {seconds * 1000:.0f} ms "
                  f"(debounce {settings.MARGIN_SWEEP_DEBOUNCE_S} s)")
            assert [_current(fw.account).equity for fw in holders] == [Decimal("8800.00")] * 2

            # The same chunk message delivered twice (a redelivery after a lost ack). The load
            # sends its own debounced sweep, which finds the first holder held by this chunk.
            _price("SWPA", "80")
            (chunk,) = claim_dirty(account_ids=[holders[0].account.pk])
            finished.clear()
            for _ in range(2):
                sweep_dirty_chunk.delay(chunk.firm_id, chunk.account_ids, chunk.claim)
            _wait(lambda: sum(1 for r in finished if r["account_ids"] == chunk.account_ids) >= 2,
                  "both deliveries")
            _wait(lambda: not _current(holders[1].account).is_dirty, "the debounced sweep")

            untouched = _current(bystander.account)  # holds no SWPA: no sweep touched it
            assert (untouched.computed_version, untouched.snapshot_id) == (
                before[bystander.account.pk].computed_version,
                before[bystander.account.pk].snapshot_id)

            # A firm's full recompute on a worker: marked, then swept in chunks by the workers.
            recompute_firm.delay(bystander.firm.pk)
            _wait(lambda: _current(bystander.account).computed_version
                  > before[bystander.account.pk].computed_version, "the firm's recompute")
            recomputed = _current(bystander.account)
    finally:
        task_postrun.disconnect(record)

    for fw in holders:
        row = _current(fw.account)
        assert row.equity != before[fw.account.pk].equity and not row.flag
    assert _current(holders[0].account).equity == Decimal("8000.00")  # 100 x 80, no cash
    assert _current(holders[1].account).equity == Decimal("8000.00")
    # The bystander was valued only by its firm's recompute: the same inputs, the same snapshot.
    assert recomputed.snapshot_id == before[bystander.account.pk].snapshot_id
    assert not recomputed.is_dirty
    assert sorted((r["computed"], r["written"]) for r in finished
                  if r["account_ids"] == chunk.account_ids) == [(0, 0), (1, 1)]
    with firm_scope(holders[0].firm):
        # at 100 (setup), 88 (the debounced sweep), 80 (the duplicated chunk, once)
        assert MarginSnapshot.objects.filter(account=holders[0].account).count() == 3
