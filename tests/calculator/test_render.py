"""The serialiser: money to cents (half away from zero), nothing else rounded, fixed format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from margin.calculator.render import MONEY_KEYS, dumps, normalise, render_errors, round_money


@pytest.mark.parametrize("value, cents", [
    (2.675, 2.68), (-2.675, -2.68), (0.125, 0.13), (1.005, 1.01), (129816.9951, 129817.0),
    (1e-9, 0.0), (-0.004, 0.0), (-0.0, 0.0), (1234567.894999, 1234567.89), (5000, 5000.0),
])
def test_round_money_half_away_from_zero_on_the_decimal_form(value, cents):
    rounded = round_money(value)
    assert rounded == cents
    assert repr(rounded) != "-0.0"


def test_money_keys_rounded_everything_else_left_exact():
    document = {
        "market_value": -16800.004, "theoretical_price": 1.681234567, "implied_vol": 0.152181,
        "delta": -4128.2049, "pnl": [-129817.0049, 0.005, -0.0], "points": [-0.15, 0.03],
        "offset": 0.9, "house_components": {"vol_shift": 1.005, "concentration": 2.5551},
        "driver": {"product_group": "IBM", "point": -0.15},
        "ltv": 0.123456789, "amount0": "1267650600228229401496703205376",
    }
    out = normalise(document)
    assert out == {
        "market_value": -16800.0, "theoretical_price": 1.681234567, "implied_vol": 0.152181,
        "delta": -4128.2049, "pnl": [-129817.0, 0.01, 0.0], "points": [-0.15, 0.03],
        "offset": 0.9, "house_components": {"vol_shift": 1.01, "concentration": 2.56},
        "driver": {"product_group": "IBM", "point": -0.15},
        "ltv": 0.123456789, "amount0": "1267650600228229401496703205376",
    }
    assert list(out) == list(document)  # key order kept, never sorted


def test_minus_zero_is_printed_as_zero_everywhere():
    text = dumps({"delta": -0.0, "requirement": -0.0, "gamma": np.float64(-0.0)}).decode()
    assert "-0.0" not in text
    assert json.loads(text) == {"delta": 0.0, "requirement": 0.0, "gamma": 0.0}


def test_numpy_values_become_plain_json():
    out = normalise({"pnl": np.array([1.234, -5.678]), "delta": np.float64(0.5),
                     "days": np.int64(2), "worst_loss": np.float32(1.5)})
    assert out == {"pnl": [1.23, -5.68], "delta": 0.5, "days": 2, "worst_loss": 1.5}
    assert type(out["days"]) is int


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("key", ["requirement", "delta"])
def test_non_finite_numbers_never_print(key, value):
    with pytest.raises(ValueError):
        dumps({key: value})


def test_fixed_format_ascii_and_final_newline():
    out = dumps({"valuation_date": "2007-02-23", "positions": [{"id": "é", "value": 1}]})
    assert out.endswith(b"}\n") and not out.endswith(b"\n\n")
    assert out == (b'{\n  "valuation_date": "2007-02-23",\n  "positions": [\n    {\n'
                   b'      "id": "\\u00e9",\n      "value": 1.0\n    }\n  ]\n}\n')


def test_errors_body_shape():
    out = render_errors([{"field": "positions[3].strike", "code": "invalid", "message": "m"}])
    assert json.loads(out) == {"errors": [{"field": "positions[3].strike", "code": "invalid",
                                           "message": "m"}]}


def test_money_keys_cover_every_money_figure_of_the_contract():
    contract_money = {
        "market_value", "net_liquidation_value", "value", "pnl", "requirement",
        "regulatory_requirement", "house_requirement", "house_components", "minimum_charge",
        "worst_loss", "initial", "maintenance", "minimum_equity", "risk_array", "scan_risk",
        "intra_spread_charge", "inter_spread_credit", "short_option_minimum",
        "net_option_value", "historical", "expected_shortfall", "parametric", "loss",
        "stressed_loss", "effective_value", "borrowable",
    }
    assert contract_money <= MONEY_KEYS
    not_money = {"theoretical_price", "implied_vol", "delta", "gamma", "vega", "theta",
                 "points", "offset", "point", "ltv", "health_factor", "confidence", "days"}
    assert not (not_money & MONEY_KEYS)
