"""Dirty accounts: every input that moves a requirement marks the accounts it affects.

A mark raises each affected account's ``AccountMargin.dirty_version`` to a new version, in one
UPDATE per load whatever the number of accounts (DESIGN.md "The paths data takes", step 1), and
asks for a debounced sweep (sent on commit). A mark runs in the load's own transaction: the
accounts are dirty exactly when the data is visible, and a process that dies after the commit
leaves nothing unmarked (a mark sent after commit would be lost with it).

Versions come from one global sequence: on PostgreSQL a database sequence (``margin_version``,
no lock held: loads in flight at once do not queue on a counter row) drawn per row as the row
is updated, so a load that commits later than another always leaves the higher version on the
rows they share (the row lock orders them, and a value drawn before waiting is drawn again);
on SQLite (the embedded demo, one writer at a time) a counter row, ``SweepState.last_version``.
Versions only go up on a row (GREATEST), so a sweep never sees one go down.

The debounce (leading edge): at most one sweep starts per ``MARGIN_SWEEP_DEBOUNCE_S``. The first
mark after a quiet spell sends the sweep at once (a tick reaches the current margin without
waiting out the window); a mark within the window of the last sweep's start sends one for the
window's end. Either way it sets ``SweepState.sweep_due_at``, and marks until that sweep starts
find it pending and send nothing: a burst of ticks costs the sweep at its start and at most one
more. The sweep clears the due time and records its start (``last_sweep_at``) as it starts, and
the window runs from that start once it has claimed accounts (``window_from``): beat's sweep
every few seconds mostly finds nothing, and a tick landing just after it would otherwise wait
out a window no sweep used. A due time long past (its message lost) no longer holds marks back;
beat sweeps every few seconds anyway.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    DateTimeField,
    F,
    Lookup,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Instrument, Position
from brokerage.id_sets import id_set

from .models import AccountMargin, SweepState

log = logging.getLogger(__name__)

_suspended: contextvars.ContextVar[bool] = contextvars.ContextVar("sweeps_suspended",
                                                                  default=False)
_sweeping: contextvars.ContextVar[bool] = contextvars.ContextVar("sweeping", default=False)


@contextmanager
def sweeps_suspended() -> Iterator[None]:
    """Bulk loads (the demo seed): marks are kept, but no sweep is asked for until the load
    ends (it recomputes once at its end)."""
    token = _suspended.set(True)
    try:
        yield
    finally:
        _suspended.reset(token)


def sweeps_are_suspended() -> bool:
    return _suspended.get()


@contextmanager
def sweeping() -> Iterator[None]:
    """Inside a sweep: with eager Celery (the demo) a sweep asked for from within one would run
    inside it; the running sweep's caller loops instead (see ``margin.sweep``)."""
    token = _sweeping.set(True)
    try:
        yield
    finally:
        _sweeping.reset(token)


# --------------------------------------------------------------------------- versions


def _state_row() -> None:
    # Made by the migration; a test database flushed between tests loses it.
    SweepState.objects.get_or_create(pk=1)


#: the PostgreSQL sequence of versions (margin migration 0015)
SEQUENCE = "margin_version"


def next_version() -> int:
    """The next value of the global version sequence: ``nextval`` on PostgreSQL (never rolled
    back, never locked), the counter row elsewhere (UPDATE ... RETURNING)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(%s)", [SEQUENCE])
            return int(cursor.fetchone()[0])
    table = connection.ops.quote_name(SweepState._meta.db_table)
    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET last_version = last_version + 1 "
                           "WHERE id = 1 RETURNING last_version")
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        _state_row()
    raise RuntimeError("the sweep state row cannot be created")


# --------------------------------------------------------------------------- marking


def _current_margins(reason: str) -> QuerySet:
    return AccountMargin.cross_firm.for_compliance(reason=reason)


def _new_version():
    """The version a marked row takes: drawn as the row is updated on PostgreSQL (see the
    module docstring), one per statement elsewhere."""
    if connection.vendor == "postgresql":
        return RawSQL("nextval(%s)", [SEQUENCE], output_field=BigIntegerField())
    return Value(next_version())


def in_account_order(rows: QuerySet) -> QuerySet:
    """Current-margin ``rows`` for an UPDATE that locks them in account order first (a subquery
    ``ORDER BY account_id FOR UPDATE``), still one statement. Two multi-row UPDATEs of these
    rows (a load's mark, a sweep's claim, lease or write) otherwise lock the rows they share
    in whatever order their plans visit them, and deadlock; taken in one order they queue
    (DESIGN.md: rows locked in primary-key order). Runs inside a transaction.

    The locked keys come back as one array (``account_id = ANY(ARRAY(...))``), which the
    UPDATE looks up on the primary key. As ``account_id IN (subquery)`` the planner, taking a
    third of the table to be dirty (it has no estimate for ``dirty_version >
    computed_version``), joined the subquery to a scan of all 100,000 rows: 14-17 ms of a
    tick's mark and again of its claim, for 1,200 rows."""
    if connection.vendor != "postgresql":
        return rows  # SQLite: one writer at a time
    from django.contrib.postgres.expressions import ArraySubquery

    locked = ArraySubquery(rows.order_by("pk").select_for_update(of=("self",)).values("pk"))
    return _current_margins("the rows an UPDATE locks, in account order").filter(
        _AnyOf(F("pk"), locked))


class _AnyOf(Lookup):
    """``lhs = ANY(rhs)``, ``rhs`` an array (PostgreSQL)."""

    lookup_name = "any_of"

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


def _mark(rows: QuerySet, *, request: bool = True, end_of_day: bool = False,
          claim: int | None = None) -> int:
    """One UPDATE raising every row of `rows` to a new version (and, for the end-of-day run,
    making each due for the day's record in the same statement); the number marked. With
    ``claim``, the same statement claims for that run the rows no live run holds (the
    condition ``margin.sweep.claim_dirty`` claims on): the end-of-day run sends its chunks
    itself, and a second UPDATE of every account to claim them held its first chunk back by
    a second at 100,000 accounts."""
    due: dict = {"end_of_day_due": True} if end_of_day else {}
    if claim is not None:
        now = timezone.now()
        free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - lease())
        due |= {"claim": Case(When(free, then=Value(claim)), default=F("claim"),
                              output_field=BigIntegerField()),
                "claimed_at": Case(When(free, then=Value(now)), default=F("claimed_at"),
                                   output_field=DateTimeField())}
    with transaction.atomic():
        marked = in_account_order(rows).update(dirty_version=Greatest(
            F("dirty_version"), _new_version(), output_field=BigIntegerField()),
            marked_at=timezone.now(), **due)
    if marked and request:
        request_sweep()
    return marked


def contracts_on(instrument_ids: Iterable[int]) -> QuerySet:
    """The instruments and every contract whose value rests on one of them (options, futures
    and perpetuals on an underlying, LP positions on a pool token), as a subquery of instrument
    ids (never read into Python), in every firm. Found on the instrument table's own indexes
    (its key, ``underlying``, ``token0``, ``token1``): a few hundred rows among tens of
    thousands. The ids go as a literal list, not ``id_set``: the planner sizes a literal list
    and looks each id up; an unnested array it cannot size, and it scanned every instrument."""
    ids = sorted(set(instrument_ids))
    return Instrument.cross_firm.for_compliance(
        reason="an input moved: every contract resting on the instrument, in every firm").filter(
            Q(pk__in=ids) | Q(underlying_id__in=ids) | Q(token0_id__in=ids)
            | Q(token1_id__in=ids)).values("pk")


def holders_of(instrument_ids: Iterable[int]) -> QuerySet:
    """Accounts holding the instruments, or options, perpetuals and LP positions on them, as a
    subquery (never read into Python), in every firm.

    The contracts are found first (``contracts_on``) and their positions by ``instrument_id``
    (its index): a join of positions to instruments filtered by an OR across both tables has
    no index to start from, and PostgreSQL read all 1.8 million positions of the 100,000-account
    book for it (358 ms a tick; now a few ms)."""
    return Position.cross_firm.for_compliance(
        reason="an input moved: every account holding the instrument, in every firm").filter(
            instrument_id__in=contracts_on(instrument_ids)).values("account_id")


def mark_holders(instrument_ids: Iterable[int], *, request: bool = True) -> int:
    """A price, vol, oracle round or history of the instruments moved."""
    return _mark(_current_margins("mark the holders of an instrument, in every firm").filter(
        account_id__in=holders_of(instrument_ids)), request=request)


def mark_accounts(account_ids: Iterable[int], *, request: bool = True,
                  end_of_day: bool = False, claim: int | None = None) -> int:
    """A position or a ledger entry of the accounts moved; or the end-of-day run
    (``end_of_day``: each due for the day's record too; ``claim``: see ``_mark``)."""
    return _mark(_current_margins("mark accounts named by their book (ids from the signal)")
                 .filter(account_id__in=id_set(account_ids)), request=request,
                 end_of_day=end_of_day, claim=claim)


def mark_firm(firm_id: int, *, request: bool = True) -> int:
    """The firm's parameters changed: every account of the firm."""
    return _mark(_current_margins("mark a firm's accounts").filter(firm_id=firm_id),
                 request=request)


def mark_everyone(*, request: bool = True) -> int:
    """A rate moved: every account of every firm."""
    return _mark(_current_margins("a rate is shared by every firm"), request=request)


# --------------------------------------------------------------------------- the debounce


def sweeps_may_start() -> bool:
    """Whether a sweep may be sent now: not while suspended, nor from inside an eager one
    (the demo: it would nest a sweep in the chunk that asked)."""
    from celery import current_app

    return not (_suspended.get() or (_sweeping.get() and current_app.conf.task_always_eager))


def request_sweep() -> bool:
    """Send one sweep after the debounce unless one is already pending; True if sent."""
    if not sweeps_may_start():
        return False
    now = timezone.now()
    window = timedelta(seconds=float(settings.MARGIN_SWEEP_DEBOUNCE_S))
    last = SweepState.objects.filter(pk=1).values_list("window_from", flat=True).first()
    due = max(now, last + window) if last else now
    lost = now - timedelta(seconds=float(settings.MARGIN_SWEEP_PENDING_GRACE_S))
    free = Q(sweep_due_at__isnull=True) | Q(sweep_due_at__lt=lost)
    won = SweepState.objects.filter(free, pk=1).update(sweep_due_at=due)
    if not won and not SweepState.objects.filter(pk=1).exists():
        _state_row()
        won = SweepState.objects.filter(free, pk=1).update(sweep_due_at=due)
    if won:
        countdown = (due - now).total_seconds()
        transaction.on_commit(lambda: _send_sweep(countdown))
    return bool(won)


def _send_sweep(countdown: float) -> None:
    from .tasks import sweep_dirty

    try:
        sweep_dirty.apply_async(countdown=countdown if countdown > 0 else None)
    except OperationalError:
        # The broker is down: the marks stand, the next mark (or beat) asks again.
        log.exception("sweep not sent; the dirty accounts wait for the next request")
        SweepState.objects.filter(pk=1).update(sweep_due_at=None)


def sweep_started() -> datetime:
    """A sweep starts: marks from now on ask for the next one. Returns its start."""
    started = timezone.now()
    SweepState.objects.filter(pk=1).update(sweep_due_at=None, last_sweep_at=started)
    return started


def sweep_claimed(started: datetime) -> None:
    """The sweep that started at ``started`` claimed accounts: the next one is due a debounce
    window after that start."""
    SweepState.objects.filter(pk=1).update(window_from=started)


def lease() -> timedelta:
    """How long a sweep run holds the accounts it claimed (past it, its worker is taken for
    dead and another run takes them over)."""
    return timedelta(seconds=float(settings.MARGIN_SWEEP_LEASE_S))
