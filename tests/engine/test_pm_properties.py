"""Properties of the regulatory portfolio-margin requirement (house layer off)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import Portfolio, Position, Underlying
from margin.engine.portfolio_margin import calculate_block
from margin.engine.valuation import value_positions

PARAMS = load_parameter_set()
MPC = PARAMS.portfolio_margin.minimum_per_contract
SYMBOLS = ("A", "B", "C")
PRICES = {"A": 100.0, "B": 40.0, "C": 250.0}
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def underlyings(shared_pg: bool) -> dict[str, Underlying]:
    return {s: Underlying(s, PRICES[s], "equity", "stock", s, "G" if shared_pg else s)
            for s in SYMBOLS}


option_st = st.builds(
    lambda sym, right, moneyness, t, iv, qty, american: dict(
        kind="option", underlying=sym, right=right, strike=round(PRICES[sym] * moneyness, 2),
        time_to_expiry=t, implied_vol=iv, quantity=float(qty), multiplier=100.0,
        exercise="american" if american else "european"),
    st.sampled_from(SYMBOLS), st.sampled_from(["call", "put"]), st.floats(0.7, 1.3),
    st.floats(0.02, 1.0), st.floats(0.1, 0.8),
    st.integers(-20, 20).filter(bool), st.booleans())
stock_st = st.builds(lambda sym, qty: dict(kind="stock", symbol=sym, quantity=float(qty)),
                     st.sampled_from(SYMBOLS), st.integers(-500, 500).filter(bool))
position_st = st.one_of(option_st, option_st, stock_st)
book_st = st.tuples(st.lists(position_st, min_size=1, max_size=8), st.booleans(),
                    st.floats(0.0, 1.0))


def portfolio(specs, shared_pg: bool, offset: float) -> Portfolio:
    positions = tuple(Position(index=i, id=f"p{i}", **spec) for i, spec in enumerate(specs))
    return Portfolio(date(2026, 1, 2), underlyings(shared_pg), positions, rate=0.03,
                     offsets={"G": offset} if shared_pg else {})


def block(p: Portfolio) -> dict:
    return calculate_block(p, PARAMS, value_positions(p, PARAMS, True))


def requirement(p: Portfolio) -> float:
    return block(p)["regulatory_requirement"]


@SETTINGS
@given(book_st, option_st.map(lambda o: {**o, "quantity": abs(o["quantity"])}))
def test_adding_a_long_option_costs_at_most_its_value_plus_its_minimum(book, long_option):
    specs, shared, offset = book
    before = requirement(portfolio(specs, shared, offset))
    after_p = portfolio([*specs, long_option], shared, offset)
    val = value_positions(after_p, PARAMS, True)
    after = calculate_block(after_p, PARAMS, val)["regulatory_requirement"]
    mv = val.rows[-1]["market_value"]
    units = long_option["quantity"] * long_option["multiplier"]
    minimum = units * min(MPC, val.marks[-1])
    assert after <= before + mv + minimum + 1e-7 * max(1.0, before)


@SETTINGS
@given(book_st, st.sampled_from([0.5, 2.0, 3.0, 7.0]))
def test_scaling_quantities_scales_the_requirement(book, k):
    specs, shared, offset = book
    base = requirement(portfolio(specs, shared, offset))
    scaled = [{**s, "quantity": s["quantity"] * k} for s in specs]
    assert requirement(portfolio(scaled, shared, offset)) == pytest.approx(
        k * base, rel=1e-9, abs=1e-7)


@SETTINGS
@given(book_st)
def test_requirement_never_below_the_sum_of_minimum_charges(book):
    b = block(portfolio(*book))
    assert b["regulatory_requirement"] >= b["minimum_charge"] - 1e-9
    assert b["regulatory_requirement"] >= sum(g["minimum_charge"]
                                              for g in b["class_groups"]) - 1e-9
    assert b["regulatory_requirement"] >= max(g["worst_loss"] for g in b["product_groups"])


@SETTINGS
@given(book_st, st.randoms(use_true_random=False))
def test_class_group_netting_is_permutation_invariant(book, rnd):
    specs, shared, offset = book
    base = block(portfolio(specs, shared, offset))
    shuffled = list(specs)
    rnd.shuffle(shuffled)
    other = block(portfolio(shuffled, shared, offset))
    assert other["regulatory_requirement"] == pytest.approx(base["regulatory_requirement"],
                                                            rel=1e-12, abs=1e-9)
    by_name = {g["class_group"]: g for g in base["class_groups"]}
    for g in other["class_groups"]:
        assert g["pnl"] == pytest.approx(by_name[g["class_group"]]["pnl"], rel=1e-12, abs=1e-9)
    assert other["minimum_charge"] == pytest.approx(base["minimum_charge"])


@SETTINGS
@given(book_st)
def test_splitting_a_position_changes_nothing(book):
    specs, shared, offset = book
    split = []
    for s in specs:
        split += [{**s, "quantity": s["quantity"] * 0.25}, {**s, "quantity": s["quantity"] * 0.75}]
    a, b = block(portfolio(specs, shared, offset)), block(portfolio(split, shared, offset))
    assert b["regulatory_requirement"] == pytest.approx(a["regulatory_requirement"], rel=1e-9,
                                                        abs=1e-7)
    assert b["minimum_charge"] == pytest.approx(a["minimum_charge"], rel=1e-9, abs=1e-7)

