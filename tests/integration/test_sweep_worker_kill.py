"""The sweep on real worker processes: a worker killed with SIGKILL mid-chunk writes no partial
current margin and its chunk is redone by another worker once the claim's lease runs out; a
price arriving while a chunk is being computed is not lost.

A chunk of a thousand Reg T accounts takes a few seconds on the per-account path, long enough
to act on it mid-way: the tests act once the worker has taken the chunk's message (its log
says so) and before the chunk's one write at its end (history snapshots, current margin and the
chunk's audit event in one transaction), which they check by finding nothing written yet."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db.models import Count
from django.utils import timezone

from accounts.models import Account, Position
from brokerage.scope import firm_scope
from margin.dirty import lease, mark_accounts
from margin.market_data import load_prices
from margin.models import AccountMargin, MarginSnapshot
from margin.tasks import sweep_dirty
from tests.factories import make_firm, shared_instrument
from tests.integration.conftest import wait_for

ACCOUNTS = 1000
#: the book as one chunk (a run this small is otherwise shared among the worker's processes):
#: long enough to act on mid-way
ONE_CHUNK = {"MARGIN_SWEEP_PARALLEL": "1"}
CURRENT = ["computed_version", "computed_at", "snapshot_id", "equity", "requirement", "excess",
           "flag"]


def _price(symbol: str, value: str) -> None:
    load_prices(observations=[{"symbol": symbol, "price": value,
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)


def _book(slug: str, symbol: str, count: int = ACCOUNTS) -> list[int]:
    """`count` Reg T accounts of one firm, each long 100 `symbol`, no cash; committed (bulk
    inserts: the accounts' own services are not what is tested here)."""
    fw = make_firm(slug)
    instrument = shared_instrument(symbol)
    with firm_scope(fw.firm):
        accounts = Account.objects.bulk_create([
            Account(firm=fw.firm, client=fw.client, number=f"{slug.upper()}-{n:05d}",
                    registration="individual", margin_type=Account.MarginType.REG_T,
                    opened_on=date(2025, 1, 2)) for n in range(count)])
        AccountMargin.objects.bulk_create([AccountMargin(account=a, firm=fw.firm)
                                           for a in accounts])
        Position.objects.bulk_create([Position(firm=fw.firm, account=a, instrument=instrument,
                                               quantity=Decimal(100)) for a in accounts])
    return sorted(a.pk for a in accounts)


def _rows(ids: list[int]):
    return AccountMargin.cross_firm.for_compliance(reason="test").filter(account_id__in=ids)


def _snapshots(ids: list[int]):
    return MarginSnapshot.cross_firm.for_compliance(reason="test").filter(account_id__in=ids)


def _current(ids: list[int]) -> dict[int, tuple]:
    return {row[0]: row[1:] for row in _rows(ids).values_list("account_id", *CURRENT)}


def _chunk_taken(worker) -> bool:
    return "margin.tasks.sweep_dirty_chunk[" in worker.tail(200)  # "Task ...[id] received"


def _all_clean_at(ids: list[int], equity: Decimal) -> bool:
    """Written at ``equity``, and given back (a chunk releases its claim just after its
    write commits)."""
    rows = list(_rows(ids).values_list("dirty_version", "computed_version", "equity", "claim"))
    return all(dirty == computed and value == equity and claim == 0
               for dirty, computed, value, claim in rows)


def test_a_worker_killed_mid_chunk_writes_no_current_margin_and_another_redoes_it(
        start_worker, settings):
    lease_s = 3.0
    settings.MARGIN_SWEEP_LEASE_S = lease_s  # this process reads the lease too
    ids = _book("killed", "KILA")
    _price("KILA", "50")
    mark_accounts(ids, request=False)
    before = _current(ids)
    dirty_at = dict(_rows(ids).values_list("account_id", "dirty_version"))

    first = start_worker(MARGIN_SWEEP_LEASE_S=str(lease_s), **ONE_CHUNK)
    sweep_dirty.delay()
    wait_for(lambda: _chunk_taken(first), "the chunk under way", worker=first)
    first.kill()

    assert not _snapshots(ids).exists(), "killed before the chunk's one write: nothing of it"
    assert _current(ids) == before  # no current margin written either
    claimed = set(_rows(ids).values_list("claim", "claimed_at"))
    claims = {claim for claim, _ in claimed}
    assert len(claims) == 1 and 0 not in claims  # still held by the dead run (its chunks)

    # Another worker takes the chunk over once the dead run's lease has run out (a sweep
    # before that finds the accounts held and leaves them).
    second = start_worker(MARGIN_SWEEP_LEASE_S=str(lease_s), **ONE_CHUNK)
    expires = max(at for _, at in claimed) + lease()
    wait_for(lambda: timezone.now() > expires, "the lease's end", lease_s + 5)
    sweep_dirty.delay()
    wait_for(lambda: _all_clean_at(ids, Decimal("5000.00")), "the chunk redone", worker=second)

    rows = list(_rows(ids).values_list("account_id", "computed_version", "claim", "flag"))
    wrong = [(pk, version, dirty_at[pk], claim, flag) for pk, version, claim, flag in rows
             if (version, claim, flag) != (dirty_at[pk], 0, "")]
    assert not wrong, wrong[:5]
    # The redo writes each account's snapshot once.
    per_account = _snapshots(ids).values("account_id").annotate(n=Count("id"))
    assert {row["n"] for row in per_account} == {1} and len(per_account) == len(ids)
    assert set(_rows(ids).values_list("snapshot__equity", flat=True)) == {Decimal("5000.00")}


def test_a_price_arriving_while_a_chunk_is_computed_is_swept_again(start_worker, settings):
    settings.MARGIN_SWEEP_DEBOUNCE_S = 0.2  # the load's own sweep, sent from this process
    ids = _book("ticked", "TICA")
    _price("TICA", "50")
    mark_accounts(ids, request=False)
    worker = start_worker(MARGIN_SWEEP_DEBOUNCE_S="0.2", **ONE_CHUNK)
    sweep_dirty.delay()
    wait_for(lambda: _chunk_taken(worker), "the chunk under way", worker=worker)

    _price("TICA", "40")  # on commit: every holder marked again, a sweep asked for
    assert not _snapshots(ids).exists(), "the price arrived before the chunk's write"

    wait_for(lambda: _all_clean_at(ids, Decimal("4000.00")), "the holders at the new price",
             worker=worker)
    assert set(_rows(ids).values_list("snapshot__equity", flat=True)) == {Decimal("4000.00")}
