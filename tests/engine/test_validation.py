"""The one portfolio validator: each domain bound refused once, named by its portfolio path."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from margin.engine import var
from margin.engine.errors import EngineInputError, InvalidPortfolio
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import (
    NAMED_STRESS,
    LPPosition,
    Portfolio,
    Position,
    StressScenario,
    Underlying,
)
from margin.engine.validation import portfolio_problems, validate_portfolio

PARAMS = load_parameter_set()
DAY = date(2026, 11, 24)
IBM = Underlying("IBM", 97.73, "equity", "stock", "IBM", "IBM")
ETH = Underlying("ETH", 3000.0, "crypto", "token", "ETH", "ETH")
USDC = Underlying("USDC", 1.0, "stablecoin", "token", "USDC", "USDC")
CALL = Position(index=0, id="c", kind="option", quantity=-1.0, underlying="IBM", right="call",
                strike=100.0, expiry=date(2026, 12, 18), time_to_expiry=24 / 365,
                multiplier=100.0, exercise="american", price=1.5)
LP = LPPosition("ETH", "USDC", 18, 6, 10**18, -200040, -190020)


def _portfolio(*positions: Position, **changes) -> Portfolio:
    fields = {"valuation_date": DAY, "underlyings": {"IBM": IBM, "ETH": ETH, "USDC": USDC},
              "positions": positions or (CALL,)}
    fields.update(changes)
    return Portfolio(**fields)


def _found(portfolio: Portfolio) -> list[tuple[str, str]]:
    return [(p.field, p.code) for p in portfolio_problems(portfolio, PARAMS)]


def test_a_valid_portfolio_passes_unchanged() -> None:
    portfolio = _portfolio(CALL, Position(index=1, id="lp", kind="uniswap_v3_lp", quantity=1.0,
                                          lp=LP))
    assert portfolio_problems(portfolio, PARAMS) == []
    assert validate_portfolio(portfolio, PARAMS) is portfolio


@pytest.mark.parametrize("changes, expected", [
    ({"strike": 0.0}, ("positions[0].strike", "not_positive")),
    ({"strike": float("nan")}, ("positions[0].strike", "not_finite")),
    ({"multiplier": 0.0}, ("positions[0].multiplier", "not_positive")),
    ({"price": -0.01}, ("positions[0].price", "negative")),
    ({"implied_vol": 0.0}, ("positions[0].implied_vol", "not_positive")),
    ({"expiry": date(2026, 11, 23)}, ("positions[0].expiry", "expired")),
    ({"expiry": None, "time_to_expiry": -0.1}, ("positions[0].time_to_expiry", "negative")),
    ({"underlying": "IMB"}, ("positions[0].underlying", "undeclared_underlying")),
    ({"right": "c"}, ("positions[0].right", "invalid_choice")),
    ({"exercise": "bermudan"}, ("positions[0].exercise", "invalid_choice")),
    ({"kind": "swap"}, ("positions[0].kind", "invalid_choice")),
    ({"price": None}, ("positions[0].price", "required")),
])
def test_each_position_bound_names_its_path(changes, expected) -> None:
    assert _found(_portfolio(dataclasses.replace(CALL, **changes))) == [expected]


def test_an_option_expiring_on_the_valuation_date_is_valid() -> None:
    assert _found(_portfolio(dataclasses.replace(CALL, expiry=DAY, time_to_expiry=0.0))) == []


@pytest.mark.parametrize("changes, expected", [
    ({"price": 0.0}, ("underlyings.IBM.price", "not_positive")),
    ({"price": float("inf")}, ("underlyings.IBM.price", "not_finite")),
    ({"leverage": -2.0}, ("underlyings.IBM.leverage", "not_positive")),
    ({"volatility": 0.0}, ("underlyings.IBM.volatility", "not_positive")),
    ({"product_class": "equities"}, ("underlyings.IBM.product_class", "invalid_choice")),
    ({"type": "share"}, ("underlyings.IBM.type", "invalid_choice")),
])
def test_each_underlying_bound_names_its_path(changes, expected) -> None:
    underlyings = {"IBM": dataclasses.replace(IBM, **changes)}
    assert _found(_portfolio(underlyings=underlyings)) == [expected]


def test_class_group_mixing_product_classes_and_product_group_mixing_grids() -> None:
    spx = Underlying("SPX", 1451.19, "broad_index_high_cap", "index", "SPX", "SPX")
    qqq = Underlying("QQQ", 400.0, "narrow_index", "etf", "SPX", "SPX")
    btc = Underlying("BTC", 60000.0, "crypto", "token", "BTC", "IBM")
    es = Underlying("ES", 1450.0, "future", "future", "SPX", "SPX")  # a future may join
    found = _found(_portfolio(underlyings={"IBM": IBM, "SPX": spx, "QQQ": qqq, "ES": es,
                                           "BTC": btc}))
    assert found == [("underlyings.QQQ.class_group", "mixed_product_classes"),
                     ("underlyings.BTC.product_group", "mixed_grids")]


@pytest.mark.parametrize("changes, expected", [
    ({"tick_upper": 887273}, ("positions[0].lp.tick_upper", "out_of_range")),
    ({"liquidity": 2**128}, ("positions[0].lp.liquidity", "out_of_range")),
    ({"liquidity": -1}, ("positions[0].lp.liquidity", "out_of_range")),
    ({"decimals0": 256}, ("positions[0].lp.decimals0", "out_of_range")),
    ({"sqrt_price_x96": 1}, ("positions[0].lp.sqrt_price_x96", "out_of_range")),
    ({"fee_growth_outside_lower": (0, 2**256)},
     ("positions[0].lp.fee_growth_outside_lower[1]", "out_of_range")),
    ({"tick_lower": -190020, "tick_upper": -200040},
     ("positions[0].lp.tick_upper", "out_of_range")),
    ({"token1": "ETH"}, ("positions[0].lp.token1", "invalid")),
    ({"token1": "DAI"}, ("positions[0].lp.token1", "undeclared_underlying")),
    ({"fee_growth_inside_last0": 0}, ("positions[0].lp.fee_growth_global0", "required")),
    ({"tick_lower": None}, ("positions[0].lp.tick_lower", "required")),
])
def test_lp_positions_within_v3_core_bounds(changes, expected) -> None:
    lp = dataclasses.replace(LP, **changes)
    position = Position(index=0, id="lp", kind="uniswap_v3_lp", quantity=1.0, lp=lp)
    assert _found(_portfolio(position)) == [expected]


def test_request_options_are_bounded_too() -> None:
    portfolio = _portfolio(
        house={"vol_shift": 1.5, "concentration": {"top_class_groups": 0},
               "overrides": {"symbols": {"GME": {"range": 0.5}}}},
        offsets={"IBM": 1.2, "IBN": 0.5},
        span_parameters={"IBM": {"extreme_coverage": 2.0}, "SP": {}},
        stress=(StressScenario("1929-10-29", {}), StressScenario("crash", {"IBM": -1.5})),
    )
    assert _found(portfolio) == [
        ("house.vol_shift", "out_of_range"),
        ("house.concentration.top_class_groups", "out_of_range"),
        ("house.overrides.symbols.GME", "undeclared_underlying"),
        ("offsets.IBM", "out_of_range"),
        ("offsets.IBN", "undeclared_product_group"),
        ("span_parameters.IBM.extreme_coverage", "out_of_range"),
        ("span_parameters.SP", "undeclared_underlying"),
        ("stress[0]", "invalid_choice"),
        ("stress[1].moves.IBM", "out_of_range"),
    ]


@pytest.mark.parametrize("house, expected", [
    # A move down takes a price to zero at most: 150 % would price a long stock below zero and
    # charge more than it is worth.
    ({"stress_range": 1.5}, [("house.stress_range", "out_of_range")]),
    ({"overrides": {"ineligible_range": 2.0}}, [("house.overrides.ineligible_range",
                                                  "out_of_range")]),
    ({"overrides": {"symbols": {"IBM": {"range": 1.5, "down": 3.0, "up": 2.0}}}},
     [("house.overrides.symbols.IBM.range", "out_of_range"),
      ("house.overrides.symbols.IBM.down", "out_of_range")]),
    ({"stress_range": 1.0, "overrides": {"symbols": {"IBM": {"down": 1.0, "up": 4.0}}}}, []),
])
def test_a_house_move_down_stops_at_a_zero_price(house, expected) -> None:
    assert _found(_portfolio(house=house)) == expected


def test_history_long_enough_of_one_length_and_covering_what_var_moves() -> None:
    n = PARAMS.var.min_history
    ok = tuple(100.0 + i for i in range(n))
    portfolio = _portfolio(methods=("var",), history={"IBM": ok[:-1], "ETH": ok + (0.0,)})
    assert _found(portfolio) == [
        ("history.IBM", "too_short"),
        (f"history.ETH[{n}]", "not_positive"),
        ("history.ETH", "unequal_lengths"),
    ]
    covered = _portfolio(methods=("var",), history={"ETH": ok})
    assert _found(covered) == [("history.IBM", "required")]


def test_invalid_portfolio_lists_every_problem_and_is_an_engine_input_error() -> None:
    bad = _portfolio(dataclasses.replace(CALL, strike=-1.0, multiplier=0.0),
                     dataclasses.replace(CALL, index=1))  # the same id twice
    with pytest.raises(InvalidPortfolio) as caught:
        validate_portfolio(bad, PARAMS)
    assert isinstance(caught.value, EngineInputError)
    assert [(p.field, p.code) for p in caught.value.problems] == [
        ("positions[0].strike", "not_positive"), ("positions[0].multiplier", "not_positive"),
        ("positions[1].id", "duplicate_id")]
    assert (caught.value.field, caught.value.code) == ("positions[0].strike", "not_positive")


def test_named_stress_scenarios_are_the_shipped_ones() -> None:
    assert NAMED_STRESS == tuple(var.named_scenarios())
