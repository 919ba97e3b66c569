"""What a sweep worker keeps of the market between chunks: instruments, newest prices and vols.

A chunk of 2,000 accounts reads some 25,000 contracts with their underlyings and the newest
price and implied-vol row of each; the chunks of an end-of-day run, and every tick's, read
largely the same ones in the same state. Read per chunk, that was a quarter of a chunk's CPU
and most of PostgreSQL's reading (100,000-account bench). So a worker process keeps them and
reads again only what changed since.

What changed is known from PostgreSQL itself. Triggers on the instrument, price and vol tables
log each changed instrument with the writing transaction's id (``MarketChange``, migration
0022), whoever writes. The kept rows are current as of a transaction snapshot the process
recorded (``pg_current_snapshot``); before each chunk one query returns the instruments logged
by transactions that snapshot could not see, which are read again, and a newer snapshot. Row
ids or times could not do this: they are assigned before a commit, so a transaction that
commits late would carry an id below one already seen and be missed.

Kept only outside a transaction (a worker's chunk, a management command): a transaction's own
uncommitted writes are visible to it but not told apart by a snapshot, so a sweep run inside
one (the eager demo, a test) reads everything afresh, as before. SQLite (the embedded demo)
keeps nothing. Instances are shared by the chunks that read them and never written to.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from accounts.models import Instrument

from .market_data import PriceRow, VolRow, newest_price_rows, newest_vol_rows

_SNAPSHOT = "SELECT pg_current_snapshot()::text, pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_SYNC = """
SELECT pg_current_snapshot()::text,
       pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
       (SELECT max(pruned_through) FROM margin_marketchangehorizon),
       ARRAY(SELECT DISTINCT c.kind || ':' || c.instrument_id FROM margin_marketchange c
             WHERE c.txid >= %s
               AND NOT pg_visible_in_snapshot(c.txid::text::xid8, %s::pg_snapshot))
"""


#: generations whose changes ``MarketCache.changed_since`` can tell (a worker values every
#: tick's chunks; one that missed more moves than these builds its universe again)
CHANGES_KEPT = 64


class MarketCache:
    """The process's kept market data (module docstring). ``generation`` moves whenever kept
    data is dropped as changed: what was built from it (the kept universe,
    ``margin.valuing.UniverseCache``) is current while it stays the same."""

    def __init__(self) -> None:
        self.generation = 0
        self.syncs = self.reread = 0
        self._forget()

    def _forget(self) -> None:
        self.snapshot: str | None = None
        self.xmin = 0
        self.instruments: dict[int, Instrument] = {}
        self.prices: dict[int, PriceRow | None] = {}  # None: no price (read, none found)
        self.vols: dict[int, VolRow | None] = {}
        self._derived: dict[str, tuple[int, dict]] = {}
        #: generation -> the instruments whose price or vol rows were dropped to reach it;
        #: None where an instrument itself changed (what rests on it may be another contract).
        #: Emptied here: a generation missing from it is one nothing can be carried across.
        self._changes: dict[int, frozenset[int] | None] = {}
        self.generation += 1

    def clear(self) -> None:
        self._forget()

    @property
    def keeping(self) -> bool:
        return connection.vendor == "postgresql" and not connection.in_atomic_block

    @property
    def synced(self) -> bool:
        """Rows read now may be kept: a snapshot they are at least as new as is recorded
        (``sync`` first; read before any, a change between the read and the snapshot would
        pass unseen)."""
        return self.keeping and self.snapshot is not None

    def sync(self) -> None:
        """Bring the kept data up to date before a chunk reads it (one query): drop what
        transactions the recorded snapshot could not see changed, and record a newer one.
        Everything is dropped where nothing can be kept (module docstring)."""
        if not self.keeping:
            if self.snapshot is not None or self.instruments or self.prices or self.vols:
                self._forget()
            return
        with connection.cursor() as cursor:
            if self.snapshot is None:
                cursor.execute(_SNAPSHOT)
                snapshot, xmin = cursor.fetchone()
                pruned, changed = None, []
            else:
                cursor.execute(_SYNC, [self.xmin, self.snapshot])
                snapshot, xmin, pruned, changed = cursor.fetchone()
        self.syncs += 1
        if pruned is not None and pruned >= self.xmin:
            # Log rows this snapshot may need were pruned: start afresh.
            self._forget()
        elif changed:
            self._drop(changed)
        self.snapshot, self.xmin = snapshot, xmin

    def _drop(self, changed: list[str]) -> None:
        ids: dict[str, set[int]] = {"instrument": set(), "price": set(), "vol": set()}
        for entry in changed:
            kind, pk = entry.split(":")
            ids[kind].add(int(pk))
        gone = ids["instrument"]
        if gone:
            # An instrument changed: it, and the contracts whose kept instance points at it
            # (an option's underlying, an LP's tokens), are read again.
            gone |= {pk for pk, i in self.instruments.items()
                     if i.underlying_id in gone or i.token0_id in gone or i.token1_id in gone}
        dropped = 0
        for kept, pks in ((self.instruments, gone), (self.prices, ids["price"]),
                          (self.vols, ids["vol"])):
            for pk in pks:
                dropped += kept.pop(pk, False) is not False
        if dropped:
            self.reread += dropped
            self.generation += 1
            self._changes[self.generation] = None if gone else frozenset(ids["price"] | ids["vol"])
            self._changes.pop(self.generation - CHANGES_KEPT, None)

    def changed_since(self, generation: int) -> frozenset[int] | None:
        """The instruments whose market rows changed since ``generation`` (none: the same
        generation), or None when more than prices and vols changed, or the kept data was
        dropped whole, or it is too long ago to tell: what was built at it is built again."""
        if generation == self.generation:
            return frozenset()
        if generation > self.generation:
            return None
        changed: set[int] = set()
        for step in range(generation + 1, self.generation + 1):
            found = self._changes.get(step)
            if found is None:
                return None
            changed |= found
        return frozenset(changed)

    def derived(self, name: str) -> dict:
        """A dict the caller fills with what it derives from kept data alone (a contract's
        coverage by the batch, ``margin.valuing.ChunkInputs``): kept with the data, emptied
        when the generation moves. Only while synced: otherwise nothing read is kept."""
        found = self._derived.get(name)
        if found is None or found[0] != self.generation:
            found = self._derived[name] = (self.generation, {})
        return found[1]

    # -- reads: what is kept, the rest read now (and kept when it may be) -------------------

    def instruments_with_related(self, ids: Iterable[int]) -> dict[int, Instrument]:
        """``margin.book.instruments_with_related``, from what is kept where it can."""
        from .book import instruments_with_related

        wanted = set(ids)
        if not self.synced:
            return instruments_with_related(wanted)
        missing = wanted - self.instruments.keys()
        if missing:
            self.instruments.update(instruments_with_related(missing))
        kept = self.instruments
        return {pk: kept[pk] for pk in wanted if pk in kept}

    def price_rows(self, ids: Iterable[int]) -> dict[int, PriceRow]:
        """``newest_price_rows``, from what is kept where it can."""
        return self._rows(self.prices, newest_price_rows, ids)

    def vol_rows(self, ids: Iterable[int]) -> dict[int, VolRow]:
        """``newest_vol_rows``, from what is kept where it can."""
        return self._rows(self.vols, newest_vol_rows, ids)

    def _rows(self, kept: dict, read, ids: Iterable[int]) -> dict:
        wanted = set(ids)
        if not self.synced:
            return read(wanted)
        missing = wanted - kept.keys()
        if missing:
            found = read(missing)
            for pk in missing:
                kept[pk] = found.get(pk)
        return {pk: row for pk in wanted if (row := kept[pk]) is not None}


#: this process's kept market data (a sweep worker values chunk after chunk)
MARKET = MarketCache()


def prune_market_changes(*, before) -> int:
    """Delete the change log's rows logged before ``before`` (beat, hourly), recording the
    newest transaction pruned in the same transaction: kept data whose snapshot could not see
    it is read again whole (``MarketCache.sync``). Returns the rows deleted."""
    from django.db import transaction
    from django.db.models import Max

    from .models import MarketChange, MarketChangeHorizon

    with transaction.atomic():
        old = MarketChange.objects.filter(logged_at__lt=before)
        newest = old.aggregate(newest=Max("txid"))["newest"]
        if newest is None:
            return 0
        horizon, _ = MarketChangeHorizon.objects.select_for_update().get_or_create(pk=1)
        horizon.pruned_through = max(horizon.pruned_through, newest)
        horizon.save(update_fields=["pruned_through"])
        # Only rows up to the horizon recorded: one committed meanwhile stays for the next run.
        deleted, _ = old.filter(txid__lte=newest).delete()
    return deleted
