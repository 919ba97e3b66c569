"""Equity (the latest snapshot, else margin values the book now) and XNYS business days."""

from __future__ import annotations

import zoneinfo
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from eligibility import calendar as cal
from eligibility import equity
from margin.market_data import load_prices
from tests.factories import shared_instrument


def test_business_days_skip_weekends_and_thanksgiving():
    assert not cal.is_business_day(date(2026, 11, 26))  # Thanksgiving
    assert not cal.is_business_day(date(2026, 11, 28))  # Saturday
    assert cal.is_business_day(date(2026, 11, 27))  # early close, still a session
    assert cal.next_business_day(date(2026, 11, 25)) == date(2026, 11, 27)
    assert cal.next_business_day(date(2026, 11, 27)) == date(2026, 11, 30)
    assert cal.add_business_days(date(2026, 11, 24), 3) == date(2026, 11, 30)
    assert cal.add_business_days(date(2026, 11, 24), 5) == date(2026, 12, 2)
    assert cal.add_business_days(date(2026, 11, 28), 0) == date(2026, 11, 30)
    assert cal.add_business_days(date(2026, 11, 28), 1) == date(2026, 11, 30)
    assert cal.business_days_between(date(2026, 11, 24), date(2026, 11, 30)) == 3


def test_dates_outside_the_calendar_and_unknown_calendars_are_clear_errors():
    with pytest.raises(cal.CalendarError, match="outside the XNYS calendar"):
        cal.is_business_day(date(1990, 1, 2))
    with pytest.raises(cal.CalendarError, match="unknown exchange calendar"):
        cal.exchange("NOPE")


def test_today_is_the_exchanges_date_whatever_zone_a_firm_is_shown_in():
    """A firm's time zone changes what its people see, never which session it is: Kiritimati
    (UTC+14) and Pago Pago (UTC-11) are always on different dates, and both get New York's."""
    new_york = timezone.localdate(timezone.now(), timezone=zoneinfo.ZoneInfo("America/New_York"))
    seen = set()
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        with timezone.override(zoneinfo.ZoneInfo(zone)):
            seen.add(timezone.localdate())
            assert cal.today() == new_york
    assert len(seen) == 2


def test_without_a_snapshot_margin_values_the_book_at_latest_prices(in_desk_firm):
    desk = in_desk_firm
    stock = shared_instrument("EQX")
    option = shared_instrument("EQX 261218C50", kind="equity_option", multiplier=Decimal(100),
                               underlying=stock, strike=Decimal(50), right="call",
                               expiry=date(2026, 12, 18))
    earlier = timezone.now() - timedelta(hours=2)
    load_prices(observations=[{"symbol": "EQX", "price": "40", "observed_at": earlier},
                              {"symbol": "EQX", "price": "50", "observed_at": earlier + timedelta(hours=1)},
                              {"symbol": "EQX 261218C50", "price": "2.5", "observed_at": earlier}],
                source="exchange", actor=None)
    book.set_position(account=desk.account, instrument=stock, quantity=Decimal(100), actor=None)
    book.set_position(account=desk.account, instrument=option, quantity=Decimal(-10), actor=None)
    # 200,000 cash + 100 x 1 x 50 - 10 x 100 x 2.5
    assert _amount_and_source(desk.account) == (Decimal("202500.00"), "book")


def test_a_position_without_a_price_makes_the_reading_incomplete(in_desk_firm):
    desk = in_desk_firm
    book.set_position(account=desk.account, instrument=shared_instrument("NOPRICE"),
                      quantity=Decimal(5), actor=None)
    reading = equity.read_equity(desk.account)
    assert reading.source == "book_incomplete" and reading.unpriced == ("NOPRICE",)
    assert not reading.complete


def _amount_and_source(account) -> tuple[Decimal, str]:
    reading = equity.read_equity(account)
    return reading.amount, reading.source


def snapshot(account, equity: str, *, at=None, tag: str = "a"):
    from margin.models import MarginSnapshot

    amount = Decimal(equity)
    return MarginSnapshot.objects.create(
        firm=account.firm, account=account, computed_at=at or timezone.now(),
        inputs_hash=tag * 64, engine_version="test", parameter_set="test",
        margin_type=account.margin_type, cash=amount, net_liquidation_value=Decimal(0),
        equity=amount, requirement=Decimal(0), excess=amount, result={})


def test_the_latest_margin_snapshot_is_the_equity(in_desk_firm):
    desk = in_desk_firm
    snapshot(desk.account, "150000.00", at=timezone.now() + timedelta(seconds=1), tag="a")
    latest = snapshot(desk.account, "98765.43", at=timezone.now() + timedelta(seconds=2), tag="b")
    assert _amount_and_source(desk.account) == (Decimal("98765.43"), "margin_snapshot")
    assert equity.read_equity(desk.account).snapshot_id == latest.pk


def test_a_snapshot_older_than_the_book_gives_way_to_the_book(in_desk_firm):
    desk = in_desk_firm
    snapshot(desk.account, "150000.00", at=timezone.now() - timedelta(minutes=5))
    # The deposit of $200,000 (conftest) was booked after that snapshot: the engine has not
    # caught up, so the book at current prices is the equity.
    assert _amount_and_source(desk.account) == (Decimal("200000.00"), "book")
