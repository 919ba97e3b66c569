"""Option expiry and assignment at the end of day: out-of-the-money options removed at zero,
in-the-money equity options exercised or assigned into stock at the strike (OCC's exercise by
exception threshold), each an audited booking, and a repeated run books nothing twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from accounts.models import Position
from accounts.services import cash_balance
from brokerage.models import AuditEvent
from brokerage.scope import firm_scope
from margin.end_of_day import start_end_of_day
from margin.executions.expiry import settle_expiries
from margin.executions.models import Execution
from margin.market_data import exchange_date, load_prices
from tests.factories import shared_instrument

pytestmark = pytest.mark.django_db


def expiring(symbol: str, right: str, strike: str, *, days: int = 0, kind="equity_option"):
    under = shared_instrument(symbol)
    expiry = exchange_date() + timedelta(days=days)
    return shared_instrument(f"{symbol} {expiry:%y%m%d}{right[0].upper()}{strike}", kind=kind,
                             underlying=under, class_group=symbol, product_group=symbol,
                             multiplier=Decimal(100), strike=Decimal(strike), right=right,
                             expiry=expiry, exercise_style="american")


@pytest.fixture
def expiring_book(world):
    """XYZ closes at 50.00: a long 45 call (ITM), a short 55 put (ITM), a long 40 put (OTM),
    a short 50.005 call (in the money by half a cent: under the threshold), and a 45 call
    expiring next month (left alone)."""
    shared_instrument("XYZ")
    load_prices(observations=[{"symbol": "XYZ", "price": "50.00",
                               "observed_at": timezone.now() - timedelta(minutes=5)}],
                source="exchange", actor=None)
    legs = {"long call": (expiring("XYZ", "call", "45"), 2),
            "short put": (expiring("XYZ", "put", "55"), -3),
            "long put": (expiring("XYZ", "put", "40"), 4),
            "short call": (expiring("XYZ", "call", "50.005"), -1),
            "later": (expiring("XYZ", "call", "45", days=30), 1)}
    with firm_scope(world.firm_a):
        account = world.a.account
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("100000"),
                               actor=None)
        for instrument, quantity in legs.values():
            book.set_position(account=account, instrument=instrument,
                              quantity=Decimal(quantity), actor=None)
    return account, {name: leg[0] for name, leg in legs.items()}


def quantity(account, instrument) -> Decimal:
    found = Position.cross_firm.filter(account=account, instrument=instrument).first()
    return found.quantity if found else Decimal(0)


def test_the_end_of_day_expires_exercises_and_assigns_once(world, expiring_book):
    account, legs = expiring_book
    xyz = shared_instrument("XYZ")
    with firm_scope(world.firm_a):
        cash = cash_balance(account)
    start_end_of_day(firm=world.firm_a, calendar="XNYS", session=exchange_date())
    with firm_scope(world.firm_a):
        for name in ("long call", "short put", "long put", "short call"):
            assert quantity(account, legs[name]) == 0, name
        assert quantity(account, legs["later"]) == 1
        # +200 shares from the call at 45, +300 from the assigned put at 55
        assert quantity(account, xyz) == 500
        assert cash_balance(account) == cash - Decimal("9000.00") - Decimal("16500.00")
        kinds = {e.instrument.symbol: e.kind for e in Execution.objects.filter(account=account)
                 if e.instrument.is_option}
        assert kinds == {legs["long call"].symbol: "exercise",
                         legs["short put"].symbol: "assignment",
                         legs["long put"].symbol: "expiry", legs["short call"].symbol: "expiry"}
        deliveries = Execution.objects.filter(kind="delivery").order_by("pk")
        assert [(d.side, d.quantity, d.price, d.origin.kind) for d in deliveries] == [
            ("buy", Decimal(200), Decimal(45), "exercise"),
            ("buy", Decimal(300), Decimal(55), "assignment")]
        assert AuditEvent.objects.filter(event_type="execution.assignment").count() == 1
        booked = Execution.objects.count()
    assert settle_expiries(firm=world.firm_a, session=exchange_date()) == []
    start_end_of_day(firm=world.firm_a, calendar="XNYS", session=exchange_date())
    with firm_scope(world.firm_a):
        assert Execution.objects.count() == booked
        assert quantity(account, xyz) == 500
