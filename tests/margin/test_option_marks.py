"""Between option quotes the book marks options to model: a tick on the underlying makes the
older option mark stale, and its stored implied vol values it instead (margin.book.current_mark).
Without a vol the old mark is all there is, and an unusable one still flags the account."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from brokerage.scope import firm_scope
from margin.market_data import load_implied_vols, load_prices
from margin.models import AccountMargin
from margin.reproduce import explanation
from margin.snapshots import compute_snapshots
from tests.factories import shared_instrument

pytestmark = pytest.mark.django_db


def _put_book(world, *, with_vol: bool):
    stock = shared_instrument("ACME")
    expiry = timezone.localdate() + timedelta(days=45)
    put = shared_instrument(f"ACME {expiry:%y%m%d}P100", kind="equity_option",
                            underlying=stock, strike=Decimal(100), right="put", expiry=expiry,
                            multiplier=Decimal(100), exercise_style="american",
                            class_group="ACME", product_group="ACME")
    quoted = timezone.now() - timedelta(minutes=5)
    load_prices(observations=[{"symbol": "ACME", "price": "100", "observed_at": quoted},
                              {"symbol": put.symbol, "price": "3.10", "observed_at": quoted}],
                source="vendor", actor=None)
    if with_vol:
        load_implied_vols(observations=[{"symbol": put.symbol, "volatility": "0.30",
                                         "observed_at": quoted}], source="vendor", actor=None)
    with firm_scope(world.firm_a):
        desk = world.a.users["margin_desk"]
        book.post_ledger_entry(account=world.a.account, kind="deposit",
                               amount=Decimal("50000"), actor=desk)
        book.set_position(account=world.a.account, instrument=put, quantity=Decimal(-5),
                          actor=desk)
    return put


def _value(world):
    with firm_scope(world.firm_a):
        (outcome,) = compute_snapshots(accounts=[world.a.account])
    return outcome


def test_a_12_percent_drop_revalues_the_puts_at_their_vol(world):
    _put_book(world, with_vol=True)
    before = _value(world).snapshot
    load_prices(observations=[{"symbol": "ACME", "price": "88", "observed_at": timezone.now()}],
                source="vendor", actor=None)
    after = _value(world)
    assert after.flag == "" and after.snapshot.pk != before.pk
    (put,) = [p for p in explanation(after.snapshot)["positions"] if p["id"].startswith("ACME ")]
    # The old 3.10 mark sits below the new intrinsic value (12.00): the model prices the put.
    assert put["market_value"] < -5 * 100 * 12.0
    assert after.snapshot.equity < before.equity


def test_without_a_vol_the_stale_mark_is_judged_and_the_account_flagged(world):
    _put_book(world, with_vol=False)
    _value(world)
    load_prices(observations=[{"symbol": "ACME", "price": "88", "observed_at": timezone.now()}],
                source="vendor", actor=None)
    outcome = _value(world)
    assert outcome.snapshot is None and "outside_no_arbitrage_bounds" in outcome.flag
    assert AccountMargin.cross_firm.for_compliance(reason="test").filter(
        account=world.a.account).exists()


def test_a_fresh_mark_is_used_as_it_is(world):
    put = _put_book(world, with_vol=True)
    load_prices(observations=[{"symbol": put.symbol, "price": "3.40",
                               "observed_at": timezone.now()}], source="vendor", actor=None)
    outcome = _value(world)
    (row,) = [p for p in explanation(outcome.snapshot)["positions"] if p["id"] == put.symbol]
    assert row["market_value"] == pytest.approx(-5 * 100 * 3.40)
    assert date.today() <= put.expiry
