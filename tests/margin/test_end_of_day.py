"""The end-of-day run: after each exchange calendar's close (and the daily crypto cut) every
account of a firm is valued and kept as history, once per firm, calendar and session."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from accounts import services as book
from brokerage import audit
from brokerage.scope import firm_scope
from margin.end_of_day import (
    CRYPTO,
    due_runs,
    last_closed_session,
    last_crypto_cut,
    start_end_of_day,
)
from margin.figures import market_ids
from margin.models import AccountMargin, EndOfDayRun, MarginSnapshot
from margin.sweep import sweep_now
from margin.tasks import end_of_day_due
from tests.factories import shared_instrument
from tests.margin.history import price_tick

pytestmark = pytest.mark.django_db

FRIDAY = date(2026, 12, 4)


def _rows():
    return AccountMargin.cross_firm.for_compliance(reason="test")


def _snapshots():
    return MarginSnapshot.cross_firm.for_compliance(reason="test")


def _runs():
    return EndOfDayRun.cross_firm.for_compliance(reason="test")


def test_the_run_keeps_every_account_of_the_firm_once_per_session(world, four):
    sweep_now()  # the first snapshots
    assert price_tick("99.5").snapshots == 0  # 0.5 %: current rows only
    before = _snapshots().count()

    run = start_end_of_day(firm=world.firm_a, calendar="XNYS", session=FRIDAY)
    assert run is not None and run.accounts == 4
    assert _rows().filter(firm=world.firm_a, end_of_day_due=True).count() == 4
    assert not _rows().get(account=world.b.account).end_of_day_due  # another firm's

    result = sweep_now()
    assert (result.computed, result.snapshots) == (4, 4)
    for account in four.values():
        row = _rows().get(account=account)
        assert not row.end_of_day_due and not row.is_dirty
        assert (row.equity, row.excess) == (row.snapshot.equity, row.snapshot.excess)
    # Every account has the day's own record, the cash account too, though nothing it holds
    # moved since its first snapshot (the same inputs, kept as the day's record).
    assert _snapshots().count() == before + 4
    assert _snapshots().filter(reason="end_of_day").count() == 4
    cash = _rows().get(account=four["cash"]).snapshot
    first = _snapshots().get(account=four["cash"], reason="first")
    assert cash.reason == "end_of_day" and cash.inputs_hash != first.inputs_hash
    held = [row[0] for row in cash.positions]
    assert (cash.equity, cash.requirement, market_ids(cash, held)) == \
        (first.equity, first.requirement, market_ids(first, held))

    # Asked again for the same session: nothing started, nothing marked, nothing written.
    assert start_end_of_day(firm=world.firm_a, calendar="XNYS", session=FRIDAY) is None
    assert sweep_now().computed == 0 and _snapshots().count() == before + 4
    assert _runs().filter(firm=world.firm_a).count() == 1
    assert audit.events_for(world.firm_a).filter(event_type="margin.end_of_day").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_run_claims_its_accounts_and_sends_their_chunks_on_commit(world, four):
    """Outside a transaction the run claims its accounts in the statement that marks them and
    sends their chunks when it commits (valued inline here: eager Celery); no sweep claims
    them again."""
    from brokerage.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        sweep_now()
        before = _snapshots().count()
        run = start_end_of_day(firm=world.firm_a, calendar="XNYS", session=FRIDAY)
        assert run is not None and run.accounts == 4
        for account in four.values():
            row = _rows().get(account=account)
            assert not row.is_dirty and not row.end_of_day_due and not row.claim
            assert row.snapshot.reason == "end_of_day"
        assert _snapshots().count() == before + 4
        assert sweep_now().computed == 0
    finally:
        app.conf.task_always_eager = eager


def test_an_account_the_sweep_cannot_value_stays_due(world, four):
    sweep_now()
    nopx = shared_instrument("NOPX")
    with firm_scope(world.firm_a):
        book.set_position(account=four["tiny"], instrument=nopx, quantity=Decimal(1),
                          actor=world.a.users["margin_desk"])
    start_end_of_day(firm=world.firm_a, calendar="XNYS", session=FRIDAY)
    result = sweep_now()
    assert four["tiny"].pk in result.flagged
    assert _rows().get(account=four["tiny"]).end_of_day_due


def test_sessions_close_on_the_firms_calendar():
    # XNYS closes at 16:00 New York, 21:00 UTC in December; Saturday has no session.
    assert last_closed_session("XNYS", datetime(2026, 12, 4, 20, 55, tzinfo=UTC)) == \
        date(2026, 12, 3)
    assert last_closed_session("XNYS", datetime(2026, 12, 4, 21, 5, tzinfo=UTC)) == FRIDAY
    assert last_closed_session("XNYS", datetime(2026, 12, 5, 12, 0, tzinfo=UTC)) == FRIDAY
    assert last_closed_session("NOPE", datetime(2026, 12, 5, 12, 0, tzinfo=UTC)) is None


def test_the_crypto_cut_is_a_setting(settings):
    at = datetime(2026, 12, 5, 0, 3, tzinfo=UTC)
    assert last_crypto_cut(at) == date(2026, 12, 5)
    settings.MARGIN_CRYPTO_DAILY_CUT = "08:00"
    assert last_crypto_cut(at) == date(2026, 12, 4)


def test_beat_starts_each_firms_runs_once(world):
    after_close = datetime(2026, 12, 4, 21, 5, tzinfo=UTC)
    started = {(r.firm_id, r.calendar, r.session) for r in due_runs(after_close)}
    assert started == {(firm.pk, calendar, FRIDAY) for firm in (world.firm_a, world.firm_b)
                       for calendar in ("XNYS", CRYPTO)}
    assert due_runs(after_close) == []  # beat every few minutes: once per session
    assert end_of_day_due()["started"] == [  # the task: today's runs (Friday's are done)
        [r.firm_id, r.calendar, r.session.isoformat()]
        for r in _runs().filter(started_at__gt=after_close).order_by("pk")]


def test_the_crypto_cut_keeps_the_accounts_holding_crypto(world):
    eth = shared_instrument("ETH", kind="crypto", product_class="crypto")
    with firm_scope(world.firm_a):
        book.set_position(account=world.a.account, instrument=eth, quantity=Decimal(2),
                          actor=world.a.users["margin_desk"])
    run = start_end_of_day(firm=world.firm_a, calendar=CRYPTO, session=FRIDAY)
    assert run.accounts == 1 and _rows().get(account=world.a.account).end_of_day_due
