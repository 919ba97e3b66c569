"""Distance to a call in the engine: the search finds the nearest move at which the excess
turns negative (grid, then bisection), and a moved portfolio moves what it should."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from margin.engine import distance
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import Portfolio, Position, Underlying
from margin.engine.valuation import value_positions


def _linear(moves: np.ndarray) -> np.ndarray:
    # 10 shares at 100 bought with 600 of debt, 25 % maintenance: 750 (1 + m) - 600
    return 750.0 * (1.0 + np.asarray(moves)) - 600.0


def test_the_search_finds_where_a_linear_excess_reaches_zero():
    found = distance.first_deficit(_linear, distance.DOWN)
    assert found.found and found.move == pytest.approx(-0.2, abs=distance.TOLERANCE)
    assert _linear(np.array([found.move]))[0] >= 0 > _linear(np.array([found.deficit_move]))[0]
    assert abs(found.deficit_move - found.move) <= distance.TOLERANCE
    assert not distance.first_deficit(_linear, distance.UP).found  # a rise only helps


def test_the_nearest_crossing_of_a_non_monotonic_excess():
    def straddle(moves):  # a short straddle loses both ways: 100 - 1000 m^2
        return 100.0 - 1000.0 * np.asarray(moves) ** 2
    root = math.sqrt(0.1)
    assert distance.first_deficit(straddle, distance.DOWN).move == pytest.approx(-root, abs=1e-4)
    assert distance.first_deficit(straddle, distance.UP).move == pytest.approx(root, abs=1e-4)


def test_no_deficit_within_the_limit_and_a_deficit_already():
    far = distance.first_deficit(lambda m: 1.0 + 0 * np.asarray(m), distance.DOWN, limit=0.3)
    assert not far.found and far.limit == 0.3 and len(far.curve) == 13
    now = distance.first_deficit(lambda m: -1.0 + 0 * np.asarray(m), distance.DOWN)
    assert now.move == 0.0 and now.deficit_move == 0.0
    with pytest.raises(ValueError):
        distance.first_deficit(_linear, 0)


def _book() -> Portfolio:
    return Portfolio(
        valuation_date=date(2026, 12, 1), rate=0.04,
        underlyings={
            "ACME": Underlying("ACME", 100.0, "equity", "stock", "ACME", "ACME"),
            "USDC": Underlying("USDC", 1.0, "stablecoin", "token", "USDC", "USDC"),
        },
        positions=(
            Position(0, "ACME", "stock", 10.0, symbol="ACME"),
            Position(1, "ACME P90", "option", 1.0, underlying="ACME", right="put", strike=90.0,
                     time_to_expiry=0.25, multiplier=100.0, price=2.0),
            Position(2, "USDC", "crypto", 1000.0, symbol="USDC"),
        ))


def test_a_moved_book_reprices_the_underlying_and_its_options_but_not_a_stablecoin():
    params = load_parameter_set()
    book = _book()
    valued = value_positions(book, params, need_model=True, greeks=False)
    assert distance.movable_groups(book) == ["ACME"]
    down = distance.shocked(book, valued, -0.10)
    assert down.underlyings["ACME"].price == pytest.approx(90.0)
    assert down.underlyings["USDC"].price == 1.0
    put = down.positions[1]
    assert put.price is None and put.implied_vol == pytest.approx(valued.vols[1])
    moved = value_positions(down, params, need_model=True, greeks=False)
    assert moved.marks[1] > 2.0  # the put gains as the stock falls
    # unmoved, the model at the mark's own implied vol gives the mark back
    same = value_positions(distance.shocked(book, valued, 0.0), params, need_model=True,
                           greeks=False)
    assert same.marks[1] == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(Exception, match="leaves no price"):
        distance.shocked(book, valued, -1.0)
