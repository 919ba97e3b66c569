"""The house layer (METHODOLOGY.md section 2): each component its own requirement."""

from __future__ import annotations

import numpy as np
import pytest

from margin.engine import pricing
from margin.engine.parameters import load_parameter_set
from tests.engine.test_portfolio_margin import pm, request, weth_usdc_lp

PARAMS = load_parameter_set()
HOUSE = PARAMS.house


def stock(sym, qty):
    return {"kind": "stock", "symbol": sym, "quantity": qty}


def equities(**prices):
    return {s: {"price": p, "product_class": "equity"} for s, p in prices.items()}


def test_no_house_no_components():
    block = pm(request(equities(X=100), [stock("X", 100)]))
    assert block["house_components"] == {} and block["house_requirement"] == 0.0


def test_components_are_reported_in_order_and_the_largest_counts():
    house = {"vol_shift": 0.25, "concentration": True, "stress_range": 0.25, "overrides": True}
    block = pm(request(equities(X=100), [stock("X", 100)], house=house))
    comps = block["house_components"]
    assert list(comps) == ["vol_shift", "concentration", "extended_stress", "overrides"]
    assert block["house_requirement"] == max(comps.values())
    assert block["requirement"] == max(block["regulatory_requirement"],
                                       block["house_requirement"])
    assert comps["vol_shift"] == pytest.approx(1500.0)  # stock has no vega
    assert comps["extended_stress"] == pytest.approx(2500.0)
    assert comps["concentration"] == pytest.approx(3000.0)  # the riskiest group at 30 %
    assert comps["overrides"] == pytest.approx(1500.0)
    assert block["requirement"] == pytest.approx(3000.0)


def test_only_asked_components_are_computed():
    block = pm(request(equities(X=100), [stock("X", 100)],
                       house={"stress_range": 0.2, "vol_shift": False}))
    assert block["house_components"] == {"extended_stress": pytest.approx(2000.0)}


def test_vol_shift_takes_the_worst_vol_state_per_product_group():
    unds = equities(X=100)
    legs = [{"kind": "option", "underlying": "X", "right": right, "strike": 100,
             "time_to_expiry": 0.25, "quantity": -10, "implied_vol": 0.3}
            for right in ("call", "put")]
    block = pm(request(unds, legs, house={"vol_shift": 0.25}))
    pts = np.array(block["class_groups"][0]["points"])
    worst = 0.0
    for mult in (1.0, 1.25, 0.75):
        pnl = 0.0
        for right in ("call", "put"):
            call = right == "call"
            mark = pricing.option_value(pricing.AMERICAN, 100, 100, 0.25, 0.0, 0.0, 0.3, call)
            value = pricing.option_value(pricing.AMERICAN, 100 * (1 + pts), 100, 0.25, 0.0, 0.0,
                                         0.3 * mult, call)
            pnl = pnl - 1000 * (value - mark)
        worst = max(worst, -pnl.min())
    assert block["house_components"]["vol_shift"] == pytest.approx(worst, rel=1e-9)
    assert block["house_components"]["vol_shift"] > block["regulatory_requirement"]


def test_concentration_top_class_groups_at_30_others_at_5():
    top, other = HOUSE.concentration.top_move, HOUSE.concentration.other_move
    block = pm(request(equities(A=100, B=100, C=100, D=100),
                       [stock("A", 1000), stock("B", -500), stock("C", 100), stock("D", 50)],
                       house={"concentration": True}))
    expected = 100 * (1000 + 500) * top + 100 * (100 + 50) * other
    assert block["house_components"]["concentration"] == pytest.approx(expected)
    sized = pm(request(equities(A=100, B=100, C=100), [stock("A", 1000), stock("B", -500),
                                                        stock("C", 100)],
                       house={"concentration": {"top_class_groups": 1, "top_move": 0.5,
                                                "other_move": 0.1}}))
    assert sized["house_components"]["concentration"] == pytest.approx(
        100 * 1000 * 0.5 + 100 * 600 * 0.1)


def test_concentration_keeps_the_regulatory_offsets():
    unds = {"A": {"price": 100, "product_class": "equity", "product_group": "G"},
            "B": {"price": 100, "product_class": "equity", "product_group": "G"}}
    block = pm(request(unds, [stock("A", 1000), stock("B", -500)], offsets={"G": 0.9},
                       house={"concentration": True}))
    top = HOUSE.concentration.top_move
    assert block["house_components"]["concentration"] == pytest.approx(
        100 * 1000 * top - 0.9 * 100 * 500 * top)


def test_extended_stress_reaches_the_range_on_every_grid():
    unds = {"SPY": {"price": 500, "product_class": "broad_index_high_cap"}}
    block = pm(request(unds, [stock("SPY", -100)], house={"stress_range": True}))
    assert block["house_components"]["extended_stress"] == pytest.approx(
        500 * 100 * HOUSE.stress_range)
    crypto = {"BTC": {"price": 60000, "product_class": "crypto"}}
    block = pm(request(crypto, [{"kind": "crypto", "symbol": "BTC", "quantity": 1}],
                       house={"stress_range": 0.25}))
    assert block["house_components"]["extended_stress"] == pytest.approx(
        block["regulatory_requirement"])  # the crypto grid already reaches further


def test_overrides_symbol_range_and_ineligible_low_priced_stock():
    unds = equities(X=100, PENNY=4)
    house = {"overrides": {"min_price_for_pm": 5.0, "naked_short_fraction": 0.5,
                           "symbols": {"X": {"range": 0.4}}}}
    block = pm(request(unds, [stock("X", 100), stock("PENNY", 1000)], house=house))
    assert block["house_components"]["overrides"] == pytest.approx(100 * 100 * 0.4 + 4000.0)
    # a symbol flagged ineligible is stressed by its whole value too
    flagged = pm(request(unds, [stock("X", 100)],
                         house={"overrides": {"symbols": {"X": {"eligible": False}}}}))
    assert flagged["house_components"]["overrides"] == pytest.approx(10000.0)


def test_overrides_naked_short_minimum_and_cover():
    fraction = HOUSE.overrides.naked_short_fraction
    unds = equities(X=100)
    naked = [{"kind": "option", "underlying": "X", "right": "call", "strike": 130,
              "time_to_expiry": 0.1, "quantity": -2, "implied_vol": 0.2}]
    block = pm(request(unds, naked, house={"overrides": True}))
    assert block["house_components"]["overrides"] == pytest.approx(fraction * 200 * 100)
    covered = pm(request(unds, [*naked, stock("X", 200)], house={"overrides": True}))
    assert covered["house_components"]["overrides"] == pytest.approx(
        covered["regulatory_requirement"])


def test_house_with_lp_positions_rescales_their_grid():
    unds, lp = weth_usdc_lp()
    block = pm(request(unds, [lp], house={"concentration": True, "stress_range": 0.25}))
    comps = block["house_components"]
    assert comps["extended_stress"] == pytest.approx(block["regulatory_requirement"])
    assert 0 < comps["concentration"] < block["regulatory_requirement"]  # +/-30 % < -66 %
