"""The live path's book goes through the engine's one portfolio validator (margin.book)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from accounts.models import Instrument, Position
from margin.book import build_portfolio
from margin.engine.errors import InvalidPortfolio
from margin.engine.parameters import load_parameter_set

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
