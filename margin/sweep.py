"""The sweep: dirty accounts valued in chunks, each account's current margin updated in place.

A run claims the dirty accounts no other run holds (one UPDATE: its claim id and the time), and
splits them per firm into chunks of ``MARGIN_SWEEP_CHUNK`` accounts, one Celery task each on the
``sweep`` queue. A chunk:

1. reads the version each of its accounts is dirty at, *before* it reads any input (an input
   marks on commit, so every input up to that version is visible to the reads that follow);
2. values the accounts through ``margin.snapshots.compute_snapshots``, which keeps a history
   snapshot only where a decision rests on the change (``history_reason``: the account's
   first, excess changing sign, the requirement moving past the threshold, the end-of-day run
   having marked it), bulk-inserted with one audit event for the chunk; one snapshot per
   account and input state, so a redelivered chunk writes no second snapshot;
3. writes each account's current margin (the numbers of this valuation, snapshot or not, and
   the latest snapshot when one was kept) in one transaction, in bulk UPDATEs, each row guarded
   by ``computed_version <`` the version it read: a duplicated or late chunk writes
   nothing over a newer result, and an account whose ``dirty_version`` moved while the chunk
   ran stays dirty (its version is above the one recorded) and is swept again;
4. releases its claim and, if any account is still dirty, asks for the next sweep.

A run killed mid-chunk leaves its accounts dirty and claimed; after the lease another run takes
them over. Accounts another run holds are left to it.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.models import Account
from brokerage.id_sets import id_set
from brokerage.models import Firm
from brokerage.scope import firm_scope

from .copy_rows import column_text, copy_text
from .dirty import in_account_order, lease, next_version, request_sweep, sweeping
from .models import AccountMargin
from .snapshots import History, compute_snapshots

#: the fields a chunk writes, by what became of the account
VALUED_FIELDS = ["computed_version", "computed_at", "equity", "requirement", "excess",
                 "health_factor", "risk_arrays", "flag"]
KEPT_FIELDS = [*VALUED_FIELDS, "snapshot", "end_of_day_due"]  # valued and kept as history
FLAGGED_FIELDS = ["computed_version", "computed_at", "flag"]
FIELDS = {"valued": VALUED_FIELDS, "kept": KEPT_FIELDS, "flagged": FLAGGED_FIELDS}
CLOSED_FLAG = "closed: not valued"


#: a chunk renews its claim's lease once more than 1/RENEW_AFTER of it has gone by
RENEW_AFTER = 4
#: objects a chunk may leave to the cyclic collector (a chunk valued on a kept universe leaves
#: some thousands); past it, what survived the chunk is frozen (``_without_cycle_collection``)
FREEZE_AFTER = 200_000


@dataclass(frozen=True)
class Chunk:
    firm_id: int
    account_ids: list[int]
    claim: int


@dataclass
class ChunkResult:
    """What a chunk did: accounts valued (``computed``), history snapshots they point at
    (``snapshots``: written now, or already stored for the same inputs), accounts flagged (not
    valued), current-margin rows written, accounts left dirty (their version moved meanwhile)."""

    computed: int = 0
    snapshots: int = 0
    flagged: dict[int, str] = field(default_factory=dict)
    written: int = 0
    left_dirty: int = 0

    def add(self, other: ChunkResult) -> None:
        self.computed += other.computed
        self.snapshots += other.snapshots
        self.flagged.update(other.flagged)
        self.written += other.written
        self.left_dirty += other.left_dirty

    def as_dict(self) -> dict:
        return {"computed": self.computed, "snapshots": self.snapshots,
                "flagged": self.flagged, "written": self.written, "left_dirty": self.left_dirty}


def _rows() -> QuerySet:
    return AccountMargin.cross_firm.for_compliance(
        reason="the sweep values dirty accounts of every firm, each chunk in its firm's scope")


def chunk_size(claimed: int | None = None) -> int:
    """Accounts per chunk: ``MARGIN_SWEEP_CHUNK``; fewer when a run claims fewer than that many
    per worker process (a tick's holders), so every process takes a share of it
    (``MARGIN_SWEEP_PARALLEL`` processes, no chunk under ``MARGIN_SWEEP_MIN_CHUNK``): a tick's
    latency is its largest chunk's."""
    size = max(int(settings.MARGIN_SWEEP_CHUNK), 1)
    if claimed is None:
        return size
    share = -(-claimed // max(int(settings.MARGIN_SWEEP_PARALLEL), 1))
    return min(size, max(share, int(settings.MARGIN_SWEEP_MIN_CHUNK), 1))


def claim_dirty(*, firm_id: int | None = None,
                account_ids: list[int] | None = None) -> list[Chunk]:
    """Claim the dirty accounts no live run holds (all, a firm's, or the ones named), in one
    UPDATE: two runs at once each get their own (PostgreSQL re-checks the claim condition on a
    row another run has just claimed); then read them back in chunks per firm."""
    claim, now = next_version(), timezone.now()
    claimable = _rows().filter(dirty_version__gt=F("computed_version")).filter(
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - lease()))
    if firm_id is not None:
        claimable = claimable.filter(firm_id=firm_id)
    if account_ids is not None:
        claimable = claimable.filter(account_id__in=sorted(set(account_ids)))
    with transaction.atomic():
        claimed = in_account_order(claimable).update(claim=claim, claimed_at=now)
    if not claimed:
        return []
    return claimed_chunks(claim)


def claimed_chunks(claim: int) -> list[Chunk]:
    """The accounts a run claimed (``claim_dirty``, or the end-of-day run's mark), in chunks
    per firm."""
    by_firm: dict[int, list[int]] = defaultdict(list)
    # Read among the dirty rows (their partial index), not by ``claim`` over every row: what
    # this run claimed is still dirty, since only a chunk of this claim computes it (another
    # run's chunk ends within its time limit, inside the lease that kept these rows from us).
    for firm, account in _rows().filter(dirty_version__gt=F("computed_version"), claim=claim) \
            .order_by("firm_id", "account_id").values_list("firm_id", "account_id"):
        by_firm[firm].append(account)
    size = chunk_size(sum(len(ids) for ids in by_firm.values()))
    return [Chunk(firm, ids[start:start + size], claim) for firm, ids in sorted(by_firm.items())
            for start in range(0, len(ids), size)]


def sweep_chunk(chunk: Chunk, *, history: History = History.INTRADAY) -> ChunkResult:
    """Value one chunk and write its current margin (see the module docstring); ``history``
    FORCED keeps every valued account as history (someone asked). The cyclic collector is
    paused for the whole chunk and runs again only once the chunk's objects are freed (its
    frame returned): enabled with them alive, its first collection walked all of them
    (60 ms of a 2,000-account chunk's 0.8 s)."""
    with _without_cycle_collection():
        return _sweep_chunk(chunk, history)


def _sweep_chunk(chunk: Chunk, history: History) -> ChunkResult:
    result = ChunkResult()
    mine = _rows().filter(account_id__in=id_set(chunk.account_ids), claim=chunk.claim)
    # The lease runs from the start of the work, not from the claim (a chunk may have queued):
    # renewed where a good part of it has gone. A chunk taken up soon after its claim (an
    # end-of-day run's 50 chunks queue for a minute or two against a lease of ten) rewrites
    # none of its rows for it.
    now = timezone.now()
    with transaction.atomic():
        in_account_order(mine.filter(claimed_at__lt=now - lease() / RENEW_AFTER)).update(
            claimed_at=now)
    # No ordering: the model's (by account) joins the accounts to sort by their number. The
    # dirty test in Python: in SQL it let the planner walk the dirty rows' partial index
    # whole (every account of an end-of-day run, 1 s a chunk at 20,000) instead of finding
    # the chunk's own by key.
    read = [(account, version, due) for account, version, computed, due in mine.order_by()
            .values_list("account_id", "dirty_version", "computed_version", "end_of_day_due")
            if version > computed]
    versions = {account: version for account, version, _ in read}
    end_of_day = frozenset(account for account, _, due in read if due)
    firm = Firm.objects.filter(pk=chunk.firm_id).first()
    try:
        if versions and firm is not None:
            with firm_scope(firm), sweeping():
                accounts = list(Account.objects.filter(pk__in=id_set(versions)).order_by("pk"))
                for account in accounts:  # the chunk's one firm, not a Firm read per row
                    Account.firm.field.set_cached_value(account, firm)
                valued = [a for a in accounts if a.status != Account.Status.CLOSED]
                outcomes = compute_snapshots(accounts=valued, history=history,
                                             end_of_day=end_of_day)
            result = _write(versions, outcomes, closed=[a.pk for a in accounts
                                                        if a.status == Account.Status.CLOSED],
                            release=chunk.claim)
    finally:
        # Whatever happened, the accounts go back: still dirty unless written, so the next
        # sweep takes them (a run that raised is not left holding them until the lease ends).
        # The written ones went back with their write (``_update_current``).
        with transaction.atomic():
            in_account_order(mine).update(claim=0, claimed_at=None)
    result.left_dirty = sum(version > computed for version, computed in _rows().filter(
        account_id__in=id_set(versions)).order_by().values_list("dirty_version",
                                                                "computed_version"))
    if result.left_dirty:
        with sweeping():  # eager Celery: the caller loops rather than nest a sweep here
            request_sweep()
    return result


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while a chunk is valued: a chunk allocates some
    million objects, freed by reference counting as it goes, and each full collection the
    allocations set off walks every object of the process, the kept universe's too
    (``margin.valuing.UniverseCache``): a fifth of a chunk's time (20k bench book, 1.84 s
    against 2.3 s of CPU per 2,000 accounts). It runs again after the chunk."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_count()[0] > FREEZE_AFTER:
                # The chunk kept a universe and the market data under it (millions of objects,
                # for the process's life): frozen out of the collector's walks. Enabled with
                # them young, its first collection walked them all (1.4 s at 100k accounts)
                # and a full one followed (1.6 s), each worker once per universe built.
                # Garbage cycles the chunk left stay with them, once per such chunk.
                gc.freeze()
            gc.enable()


def _write(versions: dict[int, int], outcomes, *, closed: list[int],
           release: int | None = None) -> ChunkResult:
    """Each account's current margin at the version it was read at, only over an older
    result: one statement per kind of write (valued, kept, flagged) and thousand rows. A row
    is its fields' values by attname (``_update_current`` makes no model instance of it on
    PostgreSQL: building 2,000 was half of this write)."""
    result = ChunkResult()
    now = timezone.now()
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for outcome in outcomes:
        version = versions[outcome.account_id]
        if not outcome.valued:
            result.flagged[outcome.account_id] = outcome.flag
            groups["flagged"].append({
                "account_id": outcome.account_id, "computed_version": version,
                "computed_at": now, "flag": outcome.flag})
            continue
        result.computed += 1
        result.snapshots += outcome.snapshot is not None
        groups["kept" if outcome.snapshot else "valued"].append({
            "account_id": outcome.account_id, "computed_version": version, "computed_at": now,
            "snapshot_id": outcome.snapshot.pk if outcome.snapshot else None,
            "end_of_day_due": False, "equity": outcome.equity,
            "requirement": outcome.requirement, "excess": outcome.excess,
            "health_factor": outcome.health_factor, "risk_arrays": outcome.risk_arrays,
            "flag": ""})
    for account_id in closed:
        groups["flagged"].append({
            "account_id": account_id, "computed_version": versions[account_id],
            "computed_at": now, "flag": CLOSED_FLAG})
    with transaction.atomic():
        # one order for every writer of these rows (``in_account_order``): no deadlock with a
        # load marking them meanwhile
        list(_rows().filter(account_id__in=id_set(versions)).order_by("account_id")
             .select_for_update().values_list("account_id", flat=True))
        for kind, rows in sorted(groups.items()):
            result.written += _update_current(rows, FIELDS[kind], release)
    return result


#: rows per ``bulk_update`` statement (SQLite; PostgreSQL writes through COPY)
UPDATE_BATCH = 1000


def _update_current(rows: list[dict[str, Any]], fields: list[str],
                    release: int | None = None) -> int:
    """Write ``fields`` (``computed_version`` among them) of ``rows`` (values by attname, the
    account's among them) where the stored result is older than the row's
    ``computed_version``; on PostgreSQL, with ``release`` (a chunk's claim), give back each
    written row that claim still holds in the same statement (the chunk's release then finds
    only the rows not written, instead of writing every row of the chunk once more).

    On PostgreSQL the rows go into a temporary table with COPY (text written a column at a
    time, ``margin.copy_rows``) and one ``UPDATE ... FROM`` it writes them, each row guarded
    by its own version: Django's ``bulk_update`` builds a CASE expression per field and row,
    which cost more than valuing the chunk (3.5 s for 400 accounts measured), and an
    ``UPDATE ... FROM (VALUES ...)`` of a thousand rows spent a quarter of the chunk's write
    having its 11,000 parameters placed client-side. SQLite (the embedded demo) keeps
    ``bulk_update``, one per version."""
    meta = AccountMargin._meta
    columns = [meta.get_field(name) for name in fields]
    if connection.vendor != "postgresql":
        by_version: dict[int, list[AccountMargin]] = defaultdict(list)
        for row in rows:
            by_version[row["computed_version"]].append(AccountMargin(**row))
        return sum(_rows().filter(computed_version__lt=version).bulk_update(
            same, fields, batch_size=UPDATE_BATCH) for version, same in sorted(by_version.items()))
    if not rows:
        return 0
    key = meta.get_field("account")
    quote = connection.ops.quote_name
    names = ", ".join(quote(f.column) for f in [key, *columns])
    assign = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns)
    if release is not None:
        held = f"m.{quote('claim')} = {int(release)}"
        assign += (f", {quote('claim')} = CASE WHEN {held} THEN 0 ELSE m.{quote('claim')} END"
                   f", {quote('claimed_at')} = CASE WHEN {held} THEN NULL "
                   f"ELSE m.{quote('claimed_at')} END")
    table, pk, version = quote(meta.db_table), quote(key.column), quote("computed_version")
    text = copy_text([column_text(f, [row[f.attname] for row in rows], connection)
                      for f in [key, *columns]])
    with connection.wrap_database_errors:
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            # dropped at the commit of the caller's transaction (``_write``); a second kind
            # written in it, with other columns, replaces it
            cursor.execute("DROP TABLE IF EXISTS pg_temp.sweep_current")
            cursor.execute(f"CREATE TEMP TABLE sweep_current ON COMMIT DROP AS "
                           f"SELECT {names} FROM {table} WITH NO DATA")
            with cursor.copy(f"COPY sweep_current ({names}) FROM STDIN") as copy:
                copy.write(text)
            cursor.execute(f"UPDATE {table} AS m SET {assign} FROM sweep_current AS v "
                           f"WHERE m.{pk} = v.{pk} AND m.{version} < v.{version}")
            return cursor.rowcount


def sweep_now(*, firm_id: int | None = None, account_ids: list[int] | None = None,
              history: History = History.INTRADAY) -> ChunkResult:
    """Claim and value dirty accounts in this process (recompute_firm, recompute_accounts, and
    the dispatcher under eager Celery)."""
    total = ChunkResult()
    for chunk in claim_dirty(firm_id=firm_id, account_ids=account_ids):
        total.add(sweep_chunk(chunk, history=history))
    return total
