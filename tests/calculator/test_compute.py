"""Which blocks run, when the model is needed, and engine refusals as 400s (never a number)."""

from __future__ import annotations

import json

import pytest

from margin.calculator import run
from margin.calculator.compute import need_model
from margin.calculator.parse import parse_request

from .requests import base, body, errors_of, result_of

# A call marked above its underlying: outside the no-arbitrage bounds.
ABOVE_BOUNDS = {"id": "c", "kind": "option", "underlying": "IBM", "right": "call", "strike": 100,
                "expiry": "2007-04-20", "quantity": -1, "price": 120.0}


def _portfolio(**changes):
    return parse_request(body(base(**changes)))


FUTURES = {"SP": {"price": 400.0, "product_class": "future"}}
FUTURE_OPTION = {"kind": "future_option", "underlying": "SP", "right": "call", "strike": 410,
                 "expiry": "2007-12-21", "quantity": 1, "multiplier": 250, "price": 8.0}


@pytest.mark.parametrize("methods, extra, expected", [
    (["portfolio_margin"], {}, True),
    (["var"], {}, True),
    (["reg_t"], {}, False),
    (["collateral"], {}, False),
    (["reg_t"], {"stress": ["1987-10-19"]}, True),
    (["span"], {"underlyings": FUTURES, "positions": [FUTURE_OPTION]}, True),
    (["span"], {"underlyings": FUTURES,
                "positions": [{**FUTURE_OPTION, "risk_array": [0.0] * 16}]}, False),
])
def test_need_model(methods, extra, expected):
    assert need_model(_portfolio(methods=methods, **extra)) is expected


def test_mark_outside_bounds_is_a_warning_for_reg_t_alone():
    document = result_of(base(positions=[ABOVE_BOUNDS], methods=["reg_t"]))
    assert document["positions"][0]["implied_vol"] is None
    assert document["warnings"] and "positions[0].price" in document["warnings"][0]
    assert document["reg_t"] is not None


def test_mark_outside_bounds_is_an_error_when_the_model_is_needed():
    found = errors_of(base(positions=[ABOVE_BOUNDS], methods=["portfolio_margin", "reg_t"]))
    assert found == [("positions[0].price", "outside_no_arbitrage_bounds")]


def test_engine_refusal_gives_no_partial_number():
    status, out = run(body(base(positions=[ABOVE_BOUNDS], methods=["portfolio_margin"])))
    assert status == 400
    assert list(json.loads(out)) == ["errors"]


def test_methods_default_to_all_that_apply():
    request = base()
    del request["methods"]
    document = result_of(request)
    assert document["portfolio_margin"] is not None and document["reg_t"] is not None
    # No futures, no history, no stress asked, no crypto: those blocks do not apply.
    assert [document[k] for k in ("span", "var", "stress", "collateral")] == [None] * 4


def test_stress_runs_when_asked_whatever_the_methods():
    document = result_of(base(methods=["reg_t"], stress=[
        "1987-10-19", {"name": "IBM -30 %", "moves": {"IBM": -0.3}}]))
    assert [s["scenario"] for s in document["stress"]] == ["1987-10-19", "IBM -30 %"]
    assert all(list(s) == ["scenario", "loss"] for s in document["stress"])
    assert document["var"] is None
