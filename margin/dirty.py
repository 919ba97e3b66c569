"""Dirty accounts: every input that moves a requirement marks the accounts it affects.

A mark raises each affected account's ``AccountMargin.dirty_version`` to a new version drawn
from one global sequence (``SweepState.last_version``), in one UPDATE per load whatever the
number of accounts (DESIGN.md "The paths data takes", step 1), and asks for a debounced sweep.
Marks run on commit of the load (the loaders call ``*_on_commit``), so a sweep that reads the
version after the mark also reads the data the mark stands for.

Versions only go up on a row (GREATEST), so two loads whose marks land out of order never
lower an account's version below one a sweep has already seen.

The debounce: the first mark of a burst sets ``SweepState.sweep_due_at`` and sends the sweep
with that countdown; marks until the sweep starts find a sweep pending and send nothing. The
sweep clears the due time as it starts, so a mark after that asks for the next one. A due time
long past (its message lost) no longer holds marks back; beat sweeps every few seconds anyway.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, F, Q, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Position

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


def next_version() -> int:
    """The next value of the global version sequence, in one statement (UPDATE ... RETURNING,
    on PostgreSQL and SQLite alike), committed at once when not inside a transaction."""
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


def _mark(rows: QuerySet, *, request: bool = True) -> int:
    """One UPDATE raising every row of `rows` to a new version; the number of accounts marked."""
    version = next_version()
    marked = rows.update(dirty_version=Greatest(
        F("dirty_version"), Value(version), output_field=BigIntegerField()),
                         marked_at=timezone.now())
    if marked and request:
        request_sweep()
    return marked


def holders_of(instrument_ids: Iterable[int]) -> QuerySet:
    """Accounts holding the instruments, or options, perpetuals and LP positions on them, as a
    subquery (never read into Python)."""
    ids = sorted(set(instrument_ids))
    return Position.cross_firm.for_compliance(
        reason="an input moved: every account holding the instrument, in every firm").filter(
            Q(instrument_id__in=ids) | Q(instrument__underlying_id__in=ids)
            | Q(instrument__token0_id__in=ids) | Q(instrument__token1_id__in=ids)
    ).values("account_id")


def mark_holders(instrument_ids: Iterable[int], *, request: bool = True) -> int:
    """A price, vol, oracle round or history of the instruments moved."""
    return _mark(_current_margins("mark the holders of an instrument, in every firm").filter(
        account_id__in=holders_of(instrument_ids)), request=request)


def mark_accounts(account_ids: Iterable[int], *, request: bool = True) -> int:
    """A position or a ledger entry of the accounts moved."""
    return _mark(_current_margins("mark accounts named by their book (ids from the signal)")
                 .filter(account_id__in=sorted(set(account_ids))), request=request)


def mark_firm(firm_id: int, *, request: bool = True) -> int:
    """The firm's parameters changed: every account of the firm."""
    return _mark(_current_margins("mark a firm's accounts").filter(firm_id=firm_id),
                 request=request)


def mark_everyone(*, request: bool = True) -> int:
    """A rate moved: every account of every firm."""
    return _mark(_current_margins("a rate is shared by every firm"), request=request)


def mark_holders_on_commit(instrument_ids: Iterable[int]) -> None:
    ids = sorted(set(instrument_ids))
    transaction.on_commit(lambda: mark_holders(ids))


def mark_everyone_on_commit() -> None:
    transaction.on_commit(mark_everyone)


def mark_firm_on_commit(firm_id: int) -> None:
    transaction.on_commit(lambda: mark_firm(firm_id))


# --------------------------------------------------------------------------- the debounce


def request_sweep() -> bool:
    """Send one sweep after the debounce unless one is already pending; True if sent."""
    from celery import current_app

    if _suspended.get() or (_sweeping.get() and current_app.conf.task_always_eager):
        return False
    now = timezone.now()
    debounce = float(settings.MARGIN_SWEEP_DEBOUNCE_S)
    due = now + timedelta(seconds=debounce)
    lost = now - timedelta(seconds=float(settings.MARGIN_SWEEP_PENDING_GRACE_S))
    free = Q(sweep_due_at__isnull=True) | Q(sweep_due_at__lt=lost)
    won = SweepState.objects.filter(free, pk=1).update(sweep_due_at=due)
    if not won and not SweepState.objects.filter(pk=1).exists():
        _state_row()
        won = SweepState.objects.filter(free, pk=1).update(sweep_due_at=due)
    if won:
        transaction.on_commit(lambda: _send_sweep(debounce))
    return bool(won)


def _send_sweep(countdown: float) -> None:
    from .tasks import sweep_dirty

    try:
        sweep_dirty.apply_async(countdown=countdown)
    except OperationalError:
        # The broker is down: the marks stand, the next mark (or beat) asks again.
        log.exception("sweep not sent; the dirty accounts wait for the next request")
        SweepState.objects.filter(pk=1).update(sweep_due_at=None)


def sweep_started() -> None:
    """A sweep starts: marks from now on ask for the next one."""
    SweepState.objects.filter(pk=1).update(sweep_due_at=None)


def lease() -> timedelta:
    """How long a sweep run holds the accounts it claimed (past it, its worker is taken for
    dead and another run takes them over)."""
    return timedelta(seconds=float(settings.MARGIN_SWEEP_LEASE_S))
