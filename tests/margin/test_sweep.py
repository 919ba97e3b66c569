"""The sweep's mechanics: exactly the dirty accounts are valued, each account's current margin
is written in place at the version it was read at, a mark during the run leaves the account
dirty, a duplicated chunk writes nothing twice, and a burst of loads schedules one sweep."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from celery.signals import after_task_publish
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as book
from accounts.models import Account
from brokerage.scope import firm_scope
from margin.dirty import lease, mark_accounts, mark_holders, sweep_claimed, sweep_started
from margin.market_data import load_prices
from margin.models import AccountMargin, MarginSnapshot, PriceObservation, SweepState
from margin.signals import snapshots_written
from margin.sweep import claim_dirty, sweep_chunk, sweep_now
from margin.tasks import recompute_firm
from tests.factories import shared_instrument

pytestmark = pytest.mark.django_db


def _price(symbol: str, value: str) -> None:
    load_prices(observations=[{"symbol": symbol, "price": value,
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)


def _current(account: Account) -> AccountMargin:
    return AccountMargin.cross_firm.for_compliance(reason="test").get(account=account)


def _snapshots(account: Account) -> int:
    return MarginSnapshot.cross_firm.for_compliance(reason="test").filter(account=account).count()


@pytest.fixture
def two_books(world) -> tuple[Account, Account]:
    """Firm A's account holds 100 ACME at 100, firm B's 50 OTHR at 40, both on $20,000 cash;
    both valued once and clean."""
    holdings = ((world.a, shared_instrument("ACME"), "100"),
                (world.b, shared_instrument("OTHR"), "50"))
    _price("ACME", "100")
    _price("OTHR", "40")
    for fw, instrument, quantity in holdings:
        with firm_scope(fw.firm):
            desk = fw.users["margin_desk"]
            book.post_ledger_entry(account=fw.account, kind="deposit", amount=Decimal("20000"),
                                   actor=desk)
            book.set_position(account=fw.account, instrument=instrument,
                              quantity=Decimal(quantity), actor=desk)
    # The setup marked both in its transaction; the sweep it asked for is sent on commit,
    # which a test transaction never reaches: sweep here, and take that request as started.
    assert sweep_now().computed == 2
    sweep_started()
    return world.a.account, world.b.account


def test_a_sweep_values_exactly_the_dirty_accounts(two_books):
    acme_holder, other = two_books
    before_other = _current(other)
    assert not before_other.is_dirty and before_other.excess == Decimal("21500.00")  # $22,000 - 25 %
    _price("ACME", "88")  # a 12 % drop
    mark_holders([shared_instrument("ACME").pk], request=False)
    assert _current(acme_holder).is_dirty and not _current(other).is_dirty

    result = sweep_now()

    assert (result.computed, result.written, result.left_dirty) == (1, 1, 0)
    holder = _current(acme_holder)
    assert not holder.is_dirty and holder.computed_version == holder.dirty_version
    assert holder.equity == Decimal("28800.00")  # 20,000 + 100 x 88
    assert holder.excess == Decimal("26600.00")  # less 25 % of $8,800 (Reg T maintenance)
    assert holder.snapshot.equity == holder.equity and not holder.flag
    untouched = _current(other)
    assert (untouched.computed_at, untouched.snapshot_id, untouched.computed_version) == (
        before_other.computed_at, before_other.snapshot_id, before_other.computed_version)
    assert _snapshots(other) == 1


def test_a_mark_while_the_chunk_is_computed_leaves_the_account_dirty(two_books):
    acme_holder, _ = two_books
    _price("ACME", "90")
    mark_accounts([acme_holder.pk], request=False)
    read_at = _current(acme_holder).dirty_version

    def tick_during_the_run(sender, account_ids, **kwargs):
        # A price arrives after the chunk read its inputs, before it writes current margin.
        _price("ACME", "80")
        mark_holders([shared_instrument("ACME").pk], request=False)

    snapshots_written.connect(tick_during_the_run, dispatch_uid="test.tick")
    try:
        result = sweep_now()
    finally:
        snapshots_written.disconnect(dispatch_uid="test.tick")

    row = _current(acme_holder)
    assert result.left_dirty == 1 and row.is_dirty  # not lost: swept again
    assert row.computed_version == read_at and row.dirty_version > read_at
    assert row.equity == Decimal("29000.00")  # the run's result (at 90) is still written
    assert row.claim == 0 and row.claimed_at is None  # given back for the next sweep

    assert sweep_now().computed == 1
    row = _current(acme_holder)
    assert not row.is_dirty and row.equity == Decimal("28000.00")  # at 80


def test_a_duplicated_chunk_writes_one_snapshot_and_nothing_twice(two_books):
    acme_holder, _ = two_books
    _price("ACME", "90")  # the requirement moves 10 %: a history snapshot
    mark_accounts([acme_holder.pk], request=False)
    (chunk,) = claim_dirty()

    first = sweep_chunk(chunk)
    written = _current(acme_holder)
    again = sweep_chunk(chunk)  # the same message delivered twice

    assert (first.computed, first.written) == (1, 1)
    assert (again.computed, again.written) == (0, 0)
    assert _snapshots(acme_holder) == 2  # the setup's and this state's, once
    assert _current(acme_holder).computed_at == written.computed_at


def test_an_older_chunk_never_overwrites_a_newer_result(two_books):
    acme_holder, _ = two_books
    _price("ACME", "70")
    mark_accounts([acme_holder.pk], request=False)
    (stale,) = claim_dirty()
    # The stale chunk's worker stalls past its lease; another run takes the account over and
    # values it at a newer version first.
    AccountMargin.cross_firm.for_compliance(reason="test").filter(account=acme_holder).update(
        claimed_at=timezone.now() - timezone.timedelta(hours=1))
    _price("ACME", "60")
    mark_accounts([acme_holder.pk], request=False)
    assert sweep_now().written == 1
    newer = _current(acme_holder)

    assert sweep_chunk(stale).written == 0  # no longer its claim
    assert _current(acme_holder).equity == newer.equity == Decimal("26000.00")


def test_a_chunk_renews_its_lease_only_once_a_good_part_of_it_has_gone(two_books):
    """A chunk taken up soon after its claim leaves its rows' claim time alone (no row
    rewritten for it); one that queued longer renews the lease from the start of its work."""
    acme_holder, _ = two_books
    rows = AccountMargin.cross_firm.for_compliance(reason="test").filter(account=acme_holder)
    claimed_at = {}

    def record(sender=None, **kwargs):
        claimed_at["at"] = rows.values_list("claimed_at", flat=True).get()

    for queued, renewed in ((timedelta(seconds=5), False), (lease() / 2, True)):
        mark_accounts([acme_holder.pk], request=False)
        (chunk,) = claim_dirty()
        claimed = timezone.now() - queued
        rows.update(claimed_at=claimed)
        snapshots_written.connect(record, weak=False)
        try:
            sweep_chunk(chunk)
        finally:
            snapshots_written.disconnect(record)
        assert (claimed_at["at"] != claimed) is renewed


def test_a_chunk_gives_its_rows_back_with_their_write_and_the_others_after(two_books):
    """Written rows leave the claim in the write's own statement; a row the chunk did not
    write (its result already newer) is given back after, still dirty only if it is."""
    acme_holder, other = two_books
    mark_accounts([acme_holder.pk, other.pk], request=False)
    chunks = claim_dirty()
    rows = AccountMargin.cross_firm.for_compliance(reason="test").filter(
        account_id__in=[acme_holder.pk, other.pk])
    assert set(rows.values_list("claim", flat=True)) == {chunks[0].claim}
    # the other's result is already at a newer version (another run wrote it meanwhile)
    rows.filter(account=other).update(computed_version=F("dirty_version") + 1)
    assert sum(sweep_chunk(chunk).written for chunk in chunks) == 1
    assert set(rows.values_list("claim", "claimed_at")) == {(0, None)}


def test_accounts_another_run_holds_are_left_to_it(two_books):
    acme_holder, _ = two_books
    mark_accounts([acme_holder.pk], request=False)
    (held,) = claim_dirty()
    assert claim_dirty() == [] and sweep_now().computed == 0
    assert sweep_chunk(held).computed == 1


def test_the_claim_takes_exactly_the_dirty_rows_no_live_run_holds(world, two_books):
    acme_holder, other = two_books
    with firm_scope(world.firm_a):
        held, expired, clean = (book.open_account(
            client=world.a.client, number=f"A-{name}", registration="individual",
            margin_type="reg_t", actor=world.a.users["firm_admin"]).pk
            for name in ("HELD", "EXPIRED", "CLEAN"))
    mark_accounts([acme_holder.pk, other.pk, held, expired], request=False)
    rows = AccountMargin.cross_firm.for_compliance(reason="test")
    rows.filter(account_id=clean).update(computed_version=F("dirty_version"))
    now = timezone.now()
    rows.filter(account_id=held).update(claim=7, claimed_at=now)  # a live run's
    rows.filter(account_id=expired).update(claim=8, claimed_at=now - lease() - timedelta(seconds=1))
    chunks = claim_dirty()
    claimed = {pk for chunk in chunks for pk in chunk.account_ids}
    assert claimed == {acme_holder.pk, other.pk, expired}
    (claim,) = {chunk.claim for chunk in chunks}
    assert dict(rows.filter(account_id__in=[acme_holder.pk, other.pk, held, expired, clean])
                .values_list("account_id", "claim")) == {
        acme_holder.pk: claim, other.pk: claim, expired: claim, held: 7, clean: 0}


def test_the_dirty_rows_have_a_partial_index_by_account():
    """Only the dirty rows are indexed, by account: the claim takes them in that order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                       ["account_margin_dirty_rows"])
        (definition,) = cursor.fetchone()
    assert definition.endswith("(account_id) WHERE (dirty_version > computed_version)")


def test_the_claim_and_the_backlog_queries_can_use_the_dirty_rows_index(two_books):
    """The conditions the claim, a chunk's reads and the backlog's probes are written with
    imply the index's (PostgreSQL uses a partial index only then): with sequential scans off,
    each plan reads the index rather than every row."""
    from operations.health import oldest_dirty_marked_at

    acme_holder, _ = two_books
    mark_accounts([acme_holder.pk], request=False)
    with CaptureQueriesContext(connection) as claim:
        with transaction.atomic():
            claim_dirty()
            oldest_dirty_marked_at()
            transaction.set_rollback(True)
    statements = [q["sql"] for q in claim.captured_queries
                  if '"margin_accountmargin"' in q["sql"] and "dirty_version" in q["sql"]]
    assert len(statements) == 3  # the claim, its read-back, the oldest mark
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for statement in statements:
            cursor.execute("EXPLAIN " + statement)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "account_margin_dirty_rows" in plan, plan
        transaction.set_rollback(True)


def test_chunks_follow_the_chunk_setting_and_never_mix_firms(world, two_books, settings):
    settings.MARGIN_SWEEP_CHUNK = 2
    with firm_scope(world.firm_a):
        extra = [book.open_account(client=world.a.client, number=f"A-{n}",
                                   registration="individual", margin_type="reg_t",
                                   actor=world.a.users["firm_admin"]).pk for n in range(3)]
    mark_accounts([*extra, *(a.pk for a in two_books)], request=False)
    chunks = claim_dirty()
    assert sorted(len(c.account_ids) for c in chunks) == [1, 2, 2]
    assert all(len({Account.cross_firm.for_compliance(reason="test").get(pk=pk).firm_id
                    for pk in c.account_ids}) == 1 for c in chunks)


def test_a_small_run_is_shared_among_the_worker_processes(world, two_books, settings):
    """A tick's few hundred holders go out as one chunk per process, not one chunk for one
    process while the other idles (the tick's latency is its largest chunk's)."""
    settings.MARGIN_SWEEP_CHUNK, settings.MARGIN_SWEEP_PARALLEL = 2000, 2
    settings.MARGIN_SWEEP_MIN_CHUNK = 2
    with firm_scope(world.firm_a):
        extra = [book.open_account(client=world.a.client, number=f"A-{n}",
                                   registration="individual", margin_type="reg_t",
                                   actor=world.a.users["firm_admin"]).pk for n in range(4)]
    mark_accounts(extra, request=False)
    assert sorted(len(c.account_ids) for c in claim_dirty()) == [2, 2]


def test_recompute_firm_values_every_account_of_the_firm(world, two_books):
    acme_holder, other = two_books
    result = recompute_firm(world.firm_a.pk)
    assert result == {"computed": 1, "flagged": {}}
    assert not _current(acme_holder).is_dirty
    assert _current(other).computed_version < _current(acme_holder).computed_version


def test_a_closed_account_is_cleared_without_a_snapshot(world, two_books):
    acme_holder, _ = two_books
    with firm_scope(world.firm_a):
        book.change_account(account=acme_holder, actor=world.a.users["firm_admin"],
                            event_type="account.closed", status=Account.Status.CLOSED)
    mark_accounts([acme_holder.pk], request=False)
    assert sweep_now().computed == 0
    row = _current(acme_holder)
    assert not row.is_dirty and row.flag.startswith("closed") and _snapshots(acme_holder) == 1


# -- the debounce -------------------------------------------------------------------------------


@pytest.fixture
def sweeps_sent():
    """Sweeps published to the real broker while the test runs."""
    sent: list[str] = []

    def count(sender=None, headers=None, **kwargs):
        if sender == "margin.tasks.sweep_dirty":
            sent.append((headers or {}).get("eta"))  # None: at once

    after_task_publish.connect(count, weak=False)
    yield sent
    after_task_publish.disconnect(count)


def test_a_burst_of_loads_within_the_debounce_sends_one_sweep(
        two_books, sweeps_sent, django_capture_on_commit_callbacks):
    for price in ("99", "98", "97", "96", "95"):
        with django_capture_on_commit_callbacks(execute=True):
            _price("ACME", price)
    assert len(sweeps_sent) == 1
    sweep_started()  # the pending sweep starts: the next load asks for the next one
    with django_capture_on_commit_callbacks(execute=True):
        _price("ACME", "94")
    assert len(sweeps_sent) == 2


def test_the_first_tick_after_a_quiet_spell_is_swept_at_once_the_next_at_the_windows_end(
        two_books, sweeps_sent, django_capture_on_commit_callbacks, settings):
    settings.MARGIN_SWEEP_DEBOUNCE_S = 1.0
    SweepState.objects.filter(pk=1).update(window_from=timezone.now() - timedelta(seconds=5))
    with django_capture_on_commit_callbacks(execute=True):
        _price("ACME", "99")
    assert sweeps_sent == [None]  # no countdown: the tick does not wait out the window
    started = sweep_started()
    sweep_claimed(started)  # it had the tick's accounts to value
    with django_capture_on_commit_callbacks(execute=True):
        _price("ACME", "98")  # within the window of that start
    eta = datetime.fromisoformat(sweeps_sent[1])
    assert abs((eta - (started + timedelta(seconds=1))).total_seconds()) < 0.05


def test_a_tick_just_after_an_empty_sweep_is_swept_at_once(
        two_books, sweeps_sent, django_capture_on_commit_callbacks, settings):
    """Beat's sweep every few seconds mostly claims nothing: it opens no debounce window."""
    settings.MARGIN_SWEEP_DEBOUNCE_S = 1.0
    SweepState.objects.filter(pk=1).update(window_from=timezone.now() - timedelta(seconds=5))
    sweep_started()  # and claims nothing
    with django_capture_on_commit_callbacks(execute=True):
        _price("ACME", "99")
    assert sweeps_sent == [None]


def test_a_load_nobody_holds_sends_no_sweep(
        two_books, sweeps_sent, django_capture_on_commit_callbacks):
    shared_instrument("NOBODY")
    with django_capture_on_commit_callbacks(execute=True):
        _price("NOBODY", "5")
    assert sweeps_sent == []


# -- manage.py load_prices ----------------------------------------------------------------------


def _csv(tmp_path: Path, body: str) -> str:
    path = tmp_path / "prices.csv"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_load_prices_stores_the_file_and_marks_the_holders(
        two_books, tmp_path, capsys, django_capture_on_commit_callbacks):
    acme_holder, other = two_books
    at = timezone.now().isoformat()
    path = _csv(tmp_path, f"# a 12 % drop in ACME\nsymbol,price,observed_at\nACME,88,{at}\n")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_prices", path, "--source", "manual")
    assert "Loaded 1 prices" in capsys.readouterr().out
    stored = PriceObservation.objects.filter(instrument__symbol="ACME").latest("observed_at")
    assert (stored.price, stored.source) == (Decimal("88"), "manual")
    assert _current(acme_holder).is_dirty and not _current(other).is_dirty


def test_load_prices_refuses_bad_rows_with_nothing_stored(two_books, tmp_path):
    acme_holder, _ = two_books
    before = (PriceObservation.objects.count(), _current(acme_holder).dirty_version)
    future = (timezone.now() + timezone.timedelta(days=2)).isoformat()
    path = _csv(tmp_path, "symbol,price,observed_at\n"
                          f"ACME,88,{timezone.now().isoformat()}\n"
                          f"NOPE,10,{timezone.now().isoformat()}\n"
                          f"ACME,-3,{timezone.now().isoformat()}\n"
                          f"ACME,90,{future}\n")
    with pytest.raises(CommandError) as refused:
        call_command("load_prices", path)
    message = str(refused.value)
    assert "nothing loaded" in message
    assert "line 3 (symbol): unknown symbol 'NOPE'" in message
    assert "line 4 (price)" in message and "line 5 (observed_at)" in message
    assert (PriceObservation.objects.count(), _current(acme_holder).dirty_version) == before


def test_load_prices_names_a_wrong_header(tmp_path):
    with pytest.raises(CommandError, match="must name the columns symbol, price and observed_at"):
        call_command("load_prices", _csv(tmp_path, "ticker,price,time\nACME,1,2026-01-01\n"))



def test_the_current_row_carries_the_latest_valuations_risk_arrays(two_books):
    """What-if and the pre-trade check start from the current row: its arrays are the last
    valuation's, whether or not that valuation was kept as history."""
    from margin.risk_arrays import unpack

    acme_holder, _ = two_books
    kept = _current(acme_holder)
    assert kept.risk_arrays and kept.risk_arrays == kept.snapshot.risk_arrays
    _price("ACME", "100.5")  # a small tick: valued, no history kept (under the threshold)
    mark_holders([shared_instrument("ACME").pk], request=False)
    assert sweep_now().snapshots == 0
    now = _current(acme_holder)
    assert now.snapshot_id == kept.snapshot_id and now.risk_arrays != kept.risk_arrays
    # 100 shares: every point's P&L scales with the price it moves from (100 -> 100.5).
    before, after = unpack(kept.risk_arrays["ACME"]), unpack(now.risk_arrays["ACME"])
    assert list(after) == pytest.approx([b * 1.005 for b in before], rel=1e-5)
