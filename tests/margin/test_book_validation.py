"""The live path's book goes through the engine's one portfolio validator (margin.book)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from accounts.models import Instrument, Position
from brokerage.scope import firm_scope
from margin.book import build_portfolio, instruments_by_id, instruments_with_related
from margin.engine.errors import InvalidPortfolio
from margin.engine.parameters import load_parameter_set
from tests.factories import make_firm, shared_instrument

TODAY = date(2026, 11, 24)


def _option(expiry: date) -> Position:
    stock = Instrument(pk=1, symbol="ACME", kind=Instrument.Kind.STOCK, product_class="equity",
                       class_group="ACME", product_group="ACME")
    option = Instrument(pk=2, symbol="ACME 261218C100", kind=Instrument.Kind.EQUITY_OPTION,
                        underlying=stock, product_class="equity", class_group="ACME",
                        product_group="ACME", strike=Decimal(100), right="call", expiry=expiry,
                        multiplier=Decimal(100), exercise_style="american")
    return Position(instrument=option, quantity=Decimal(-1))


def _build(position: Position):
    prices = {1: SimpleNamespace(price=Decimal("97.73")), 2: SimpleNamespace(price=Decimal("1.5"))}
    return build_portfolio([position], valuation_date=TODAY, prices=prices, vols={}, rate=0.04,
                           params=load_parameter_set())


def test_a_valid_book_becomes_the_engine_portfolio() -> None:
    portfolio = _build(_option(TODAY + timedelta(days=24)))
    assert portfolio.positions[0].strike == 100.0
    assert portfolio.underlyings["ACME"].price == 97.73


def test_an_expired_option_in_the_book_is_refused_as_a_request_would_be() -> None:
    with pytest.raises(InvalidPortfolio) as caught:
        _build(_option(TODAY - timedelta(days=1)))
    assert (caught.value.field, caught.value.code) == ("positions[0].expiry", "expired")



@pytest.mark.django_db
def test_instruments_read_from_rows_are_the_instances_in_bulk_makes(
        django_assert_num_queries) -> None:
    """The chunk reads instruments from their rows' values (margin.book.instruments_by_id):
    the same field values, relations followed, and usable as a loaded instance (saved,
    refreshed) as ``in_bulk``'s."""
    firm = make_firm("rows").firm
    stock = shared_instrument("ROWS")
    option = shared_instrument("ROWS 261218C100", kind=Instrument.Kind.EQUITY_OPTION,
                               underlying=stock, strike=Decimal(100), right="call",
                               expiry=TODAY, multiplier=Decimal(100), exercise_style="american")
    with firm_scope(firm):
        fast = instruments_by_id([stock.pk, option.pk])
        slow = Instrument.objects.in_bulk([stock.pk, option.pk])
        assert fast.keys() == slow.keys()
        for pk, instance in fast.items():
            assert type(instance) is Instrument and not instance._state.adding
            assert instance._state.db == slow[pk]._state.db
            for f in Instrument._meta.concrete_fields:
                assert getattr(instance, f.attname) == getattr(slow[pk], f.attname), f.name
        assert fast[option.pk].underlying == stock
        related = instruments_with_related([option.pk])
        with django_assert_num_queries(0):
            assert related[option.pk].underlying.symbol == "ROWS"
        fast[stock.pk].description = "renamed"
        fast[stock.pk].save(update_fields=["description"])
        stock.refresh_from_db()
        assert stock.description == "renamed"
