"""The end-of-day run: every account of a firm kept as history after its exchange's close.

Beat asks every few minutes (``end_of_day_due``); a firm's run starts once per calendar and
session: after the close of each session of its exchange calendar (``Firm.exchange_calendar``,
XNYS by default), and at the daily crypto cut (``MARGIN_CRYPTO_DAILY_CUT``, UTC) for its
accounts holding crypto, which trades around the clock. Starting a run records it
(``EndOfDayRun``, unique per firm, calendar and session: asking again does nothing), sets
``end_of_day_due`` on the accounts' current rows and marks them dirty, all in one transaction;
the sweep then values them and keeps each valuation as history (``History.END_OF_DAY``),
clearing the flag as it writes. An account the sweep cannot value (a missing price) stays due
and is kept when it next is.

A snapshot is one per account and input state: an account whose inputs have not moved since a
snapshot kept earlier that day points at that one (it is the state at the close).
"""

from __future__ import annotations

import logging
import warnings
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

import exchange_calendars
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Account, Instrument, Position
from brokerage import audit
from brokerage.models import Firm

from .dirty import mark_accounts, next_version, request_sweep, sweeps_may_start
from .executions.expiry import settle_expiries
from .models import EndOfDayRun

logger = logging.getLogger(__name__)

#: the calendar name a crypto run is recorded under
CRYPTO = "CRYPTO"


@lru_cache(maxsize=8)
def _calendar(code: str) -> exchange_calendars.ExchangeCalendar:
    today = timezone.now().date()
    with warnings.catch_warnings():
        # exchange-calendars builds its schedule with an API pandas deprecates: harmless here.
        warnings.simplefilter("ignore", DeprecationWarning)
        return exchange_calendars.get_calendar(
            code, start=(today - timedelta(days=2 * 366)).isoformat(),
            end=(today + timedelta(days=366)).isoformat())


def last_closed_session(code: str, now: datetime) -> date | None:
    """The latest session of the calendar whose close is at or before ``now`` (None: none in
    the last week, or a calendar exchange_calendars does not know)."""
    try:
        calendar = _calendar(code)
    except exchange_calendars.errors.InvalidCalendarName:
        return None
    sessions = calendar.sessions_in_range((now - timedelta(days=7)).date().isoformat(),
                                          now.date().isoformat())
    for session in reversed(sessions):
        if calendar.session_close(session).to_pydatetime() <= now:
            return session.date()
    return None


def last_crypto_cut(now: datetime) -> date:
    """The crypto day ended by the latest cut at or before ``now``, labelled with the UTC date
    the cut falls on (a cut at 00:00 UTC on 6 December closes the day labelled 6 December)."""
    cut = time.fromisoformat(settings.MARGIN_CRYPTO_DAILY_CUT)
    return (now.astimezone(UTC) - timedelta(hours=cut.hour, minutes=cut.minute)).date()


def _runs():
    return EndOfDayRun.cross_firm.for_compliance(
        reason="beat starts each firm's end-of-day run once per session")


def _accounts(firm: Firm, *, crypto: bool) -> list[int]:
    """The firm's open accounts; for the crypto cut, those holding a crypto position."""
    accounts = Account.cross_firm.for_compliance(
        reason="the end-of-day run marks one firm's accounts").filter(firm=firm).exclude(
        status=Account.Status.CLOSED)
    if crypto:
        holding = Position.cross_firm.for_compliance(
            reason="the crypto cut marks the firm's accounts holding crypto").filter(
            firm=firm, instrument__product_class=Instrument.ProductClass.CRYPTO).exclude(
            quantity=0).values("account_id")
        accounts = accounts.filter(pk__in=holding)
    return sorted(accounts.values_list("pk", flat=True))


def start_end_of_day(*, firm: Firm, calendar: str, session: date,
                     now: datetime | None = None) -> EndOfDayRun | None:
    """Start the firm's run for the session: recorded, its accounts due and marked dirty, in
    one transaction with its audit event. None when it was already started (idempotent)."""
    now = now or timezone.now()
    account_ids = _accounts(firm, crypto=calendar == CRYPTO)
    # The run claims its accounts as it marks them and sends their chunks when its own
    # transaction commits (a claim held for a caller's transaction would keep them from every
    # other sweep until that commits): inside one, it marks them and the next sweep claims.
    claiming = not transaction.get_connection().in_atomic_block and sweeps_may_start()
    try:
        with transaction.atomic():
            run = _runs().create(firm=firm, calendar=calendar, session=session,
                                 started_at=now, accounts=len(account_ids))
            if calendar != CRYPTO:
                # Options expiring by the close: removed, exercised or assigned (booked, so
                # their accounts are marked here too) before the day's valuation.
                settle_expiries(firm=firm, session=session)
            # Marked and claimed for the run in one statement, its chunks sent on commit;
            # accounts another run holds are its to value (marked, they stay dirty for the
            # next sweep if it read them before).
            claim = next_version() if claiming else None
            mark_accounts(account_ids, request=False, end_of_day=True, claim=claim)
            audit.record(firm=firm, actor=None, event_type="margin.end_of_day", obj=run,
                         after={"calendar": calendar, "session": session,
                                "accounts": len(account_ids)})
            if claim is not None:
                transaction.on_commit(lambda: _send_claimed(claim))
            request_sweep()
    except IntegrityError:
        return None  # started already (by an earlier beat, or one running beside this one)
    return run


def _send_claimed(claim: int) -> None:
    from .sweep import claimed_chunks
    from .tasks import send_chunks

    try:
        send_chunks(claimed_chunks(claim))
    except OperationalError:
        # The broker is down: the claim's lease runs out and the next sweep takes them.
        logger.warning("end-of-day chunks of claim %s not sent: the broker is unreachable",
                       claim)


def due_runs(now: datetime | None = None) -> list[EndOfDayRun]:
    """Start every run due at ``now``: each firm's last closed session of its calendar, and
    the last crypto cut; those already started are skipped."""
    now = now or timezone.now()
    started = []
    crypto_day = last_crypto_cut(now)
    for firm in Firm.objects.order_by("pk"):
        due = [(CRYPTO, crypto_day)]
        session = last_closed_session(firm.exchange_calendar or "XNYS", now)
        if session is not None:
            due.insert(0, (firm.exchange_calendar or "XNYS", session))
        for calendar, day in due:
            if _runs().filter(firm=firm, calendar=calendar, session=day).exists():
                continue
            run = start_end_of_day(firm=firm, calendar=calendar, session=day, now=now)
            if run is not None:
                started.append(run)
    return started
