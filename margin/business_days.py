"""Business days on the firm's exchange calendar (XNYS by default), via exchange-calendars.

Regulatory day counts (T+3 for an equity deficiency, FINRA 4210(g)) and the house downgrade
timeline count sessions: weekends and exchange holidays are skipped. `today()` is the exchange's
local date, whatever zone the viewer's firm is shown in; services take `today` explicitly so
tests drive a frozen clock.
"""

from __future__ import annotations

import warnings
from datetime import date, timedelta
from functools import lru_cache

import exchange_calendars
import pandas as pd
from django.utils import timezone

DEFAULT_CALENDAR = "XNYS"


class CalendarError(ValueError):
    pass


@lru_cache(maxsize=8)
def exchange(code: str = DEFAULT_CALENDAR) -> exchange_calendars.ExchangeCalendar:
    local_today = timezone.localdate()
    start = min(date(2016, 1, 1), local_today - timedelta(days=5 * 366))
    try:
        with warnings.catch_warnings():
            # exchange-calendars builds its schedule with an API pandas 3.1 deprecates; theirs
            # to fix, and harmless to the sessions it returns.
            warnings.simplefilter("ignore", DeprecationWarning)
            return exchange_calendars.get_calendar(
                code, start=start.isoformat(),
                end=(local_today + timedelta(days=3 * 366)).isoformat())
    except exchange_calendars.errors.InvalidCalendarName as exc:
        raise CalendarError(f"unknown exchange calendar {code!r}") from exc


def today(code: str = DEFAULT_CALENDAR) -> date:
    """The exchange's own date now: its sessions, not the viewer's zone, decide what day it is
    (a London firm's staff acting at 01:00 London time are still on New York's previous day)."""
    return timezone.localdate(timezone.now(), timezone=exchange(code).tz)


def _check(day: date, cal: exchange_calendars.ExchangeCalendar) -> pd.Timestamp:
    stamp = pd.Timestamp(day)
    if not cal.first_session <= stamp <= cal.last_session:
        raise CalendarError(f"{day} is outside the {cal.name} calendar loaded "
                            f"({cal.first_session.date()} to {cal.last_session.date()})")
    return stamp


def is_business_day(day: date, code: str = DEFAULT_CALENDAR) -> bool:
    cal = exchange(code)
    return bool(cal.is_session(_check(day, cal)))


def next_business_day(day: date, code: str = DEFAULT_CALENDAR) -> date:
    """The first session strictly after `day`."""
    return add_business_days(day, 1, code)


def add_business_days(day: date, count: int, code: str = DEFAULT_CALENDAR) -> date:
    """T+count: the count-th session after `day` (T+0 is `day` itself, or the next session)."""
    if count < 0:
        raise CalendarError("count business days forward only")
    cal = exchange(code)
    stamp = _check(day, cal)
    if cal.is_session(stamp):
        session = stamp
    else:
        session = cal.date_to_session(stamp, direction="next")
        count = max(count - 1, 0)
    return cal.session_offset(session, count).date()


def business_days_between(start: date, end: date, code: str = DEFAULT_CALENDAR) -> int:
    """Sessions in (start, end]: how many business days `end` is after `start`."""
    if end <= start:
        return 0
    cal = exchange(code)
    return len(cal.sessions_in_range(_check(start + timedelta(days=1), cal), _check(end, cal)))


def business_days_before(day: date, count: int, code: str = DEFAULT_CALENDAR) -> date:
    """T-count: the count-th session before `day` (T-0 is `day` itself, or the session
    before it)."""
    if count < 0:
        raise CalendarError("count business days backward only")
    cal = exchange(code)
    stamp = _check(day, cal)
    session = stamp if cal.is_session(stamp) else cal.date_to_session(stamp, direction="previous")
    return cal.session_offset(session, -count).date()
