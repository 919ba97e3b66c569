"""Step 2: market values, marks, implied vols and position Greeks (``value_positions``)."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from margin.engine import pricing
from margin.engine.defi import uniswap_v3
from margin.engine.errors import EngineInputError
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import LPPosition, Portfolio, Position, Underlying
from margin.engine.valuation import value_positions
from tests.engine.test_portfolio_margin import to_portfolio
from tests.vectors import dig, load_vectors

PARAMS = load_parameter_set()
OPTION_KEYS = ["id", "market_value", "theoretical_price", "implied_vol", "delta", "gamma",
               "vega", "theta"]


def und(sym, price, cls="equity", typ="stock", q=0.0, vol=None, cg=None):
    return Underlying(sym, price, cls, typ, cg or sym, cg or sym, q, 1.0, vol)


def book(*positions, underlyings, rate=0.03):
    return Portfolio(date(2026, 1, 2), {u.symbol: u for u in underlyings}, tuple(positions),
                     rate=rate)


def opt(i, sym, right, strike, t, qty, price=None, iv=None, mult=100.0, exercise=None,
        kind="option", expiry=None):
    return Position(index=i, id=f"o{i}", kind=kind, quantity=qty, underlying=sym, right=right,
                    strike=strike, time_to_expiry=t, multiplier=mult, exercise=exercise,
                    price=price, implied_vol=iv, expiry=expiry)


# --------------------------------------------------------------------------- published vectors


@pytest.mark.parametrize("case", load_vectors("pricing.json")["cases"], ids=lambda c: c["name"])
def test_pricing_vectors_through_value_positions(case):
    portfolio = to_portfolio(case["request"])
    rows = value_positions(portfolio, PARAMS, need_model=True).rows
    for path, expected in case["expect"].items():
        assert dig({"positions": rows}, path) == pytest.approx(expected, abs=case["tolerance"])


# --------------------------------------------------------------------------- linear kinds


def test_linear_kinds_rows_marks_and_nlv():
    positions = (
        Position(index=0, id="s", kind="stock", quantity=-200, symbol="X"),
        Position(index=1, id="f", kind="future", quantity=3, underlying="ES", multiplier=50.0,
                 price=5010.0, expiry=date(2026, 3, 20)),
        Position(index=2, id="c", kind="crypto", quantity=1.5, symbol="ETH"),
        Position(index=3, id="p", kind="perpetual", quantity=-2.0, symbol="ETH",
                 entry_price=3100.0, funding_accrued=12.5),
        Position(index=4, id="f2", kind="future", quantity=1, underlying="ES", multiplier=50.0),
    )
    v = value_positions(book(*positions, underlyings=[
        und("X", 40.0), und("ES", 5000.0, "future", "future"),
        und("ETH", 3000.0, "crypto", "token")]), PARAMS, need_model=True)
    assert v.rows[0] == {"id": "s", "market_value": -8000.0, "delta": -200.0}
    assert v.rows[1] == {"id": "f", "market_value": 0.0, "delta": 150.0}
    assert v.rows[2] == {"id": "c", "market_value": 4500.0, "delta": 1.5}
    assert list(v.rows[3]) == ["id", "market_value"]
    assert v.rows[3]["market_value"] == pytest.approx((3000.0 - 3100.0) * -2.0 + 12.5)
    assert v.marks.tolist() == [40.0, 5010.0, 3000.0, 3000.0, 5000.0]  # future: own price
    assert np.isnan(v.vols).all()
    assert v.net_liquidation_value == pytest.approx(-8000.0 + 4500.0 + 212.5)
    assert v.warnings == []


# --------------------------------------------------------------------------- options


def test_option_row_keys_and_position_greeks():
    p = opt(0, "X", "put", 95.0, 0.25, -3, iv=0.3)
    v = value_positions(book(p, underlyings=[und("X", 100.0)]), PARAMS, need_model=True)
    row = v.rows[0]
    assert list(row) == OPTION_KEYS
    args = (pricing.AMERICAN, 100.0, 95.0, 0.25, 0.03, 0.0)
    theo = float(pricing.option_value(*args, 0.3, False))
    g = pricing.greeks(*args, 0.3, False)
    assert row["theoretical_price"] == pytest.approx(theo, rel=1e-12)
    assert row["implied_vol"] == 0.3
    assert row["market_value"] == pytest.approx(-300.0 * theo)
    for name in ("delta", "gamma", "vega", "theta"):
        assert row[name] == pytest.approx(-300.0 * float(g[name]), rel=1e-9)
    assert v.marks[0] == pytest.approx(theo) and v.vols[0] == 0.3


@pytest.mark.parametrize(("typ", "cls", "exercise", "model"), [
    ("stock", "equity", None, pricing.AMERICAN),
    ("etf", "broad_index_high_cap", None, pricing.AMERICAN),
    ("index", "broad_index_high_cap", None, pricing.EUROPEAN),
    ("token", "crypto", None, pricing.EUROPEAN),
    ("stock", "equity", "european", pricing.EUROPEAN),
    ("index", "broad_index", "american", pricing.AMERICAN),
])
def test_model_choice_and_implied_vol_with_the_same_model(typ, cls, exercise, model):
    q = 0.02
    p = opt(0, "X", "put", 105.0, 0.5, 2, price=9.0, exercise=exercise)
    v = value_positions(book(p, underlyings=[und("X", 100.0, cls, typ, q=q)], rate=0.05),
                        PARAMS, need_model=True)
    iv = v.rows[0]["implied_vol"]
    expected = float(pricing.implied_vol(model, 9.0, 100.0, 105.0, 0.5, 0.05, q, False))
    assert iv == pytest.approx(expected, rel=1e-10)
    assert v.models[0] == model
    # the mark is reproduced by the model at the implied vol
    assert v.rows[0]["theoretical_price"] == pytest.approx(9.0, abs=1e-8)
    assert v.rows[0]["market_value"] == pytest.approx(9.0 * 200.0)


def test_future_option_is_black76_on_the_future_price():
    fut = Position(index=0, id="f", kind="future", quantity=1, underlying="CL", multiplier=1000.0,
                   price=82.0, expiry=date(2026, 3, 20))
    fo = opt(1, "CL", "call", 80.0, 0.2, 1, iv=0.35, mult=1000.0, kind="future_option",
             exercise="american", expiry=date(2026, 3, 20))
    v = value_positions(book(fut, fo, underlyings=[und("CL", 79.0, "future", "future")]), PARAMS,
                        need_model=True)
    theo = float(pricing.option_value(pricing.BLACK76, 82.0, 80.0, 0.2, 0.03, 0.0, 0.35, True))
    assert v.models[1] == pricing.BLACK76 and v.spots[1] == 82.0
    assert v.rows[1]["theoretical_price"] == pytest.approx(theo, rel=1e-12)


def test_vol_sources_price_then_given_then_underlying():
    u = und("X", 100.0, vol=0.4)
    ps = (opt(0, "X", "call", 100.0, 0.5, 1, iv=0.2),  # given vol
          opt(1, "X", "call", 100.0, 0.5, 1),  # underlying's volatility
          opt(2, "X", "call", 100.0, 0.5, 1, price=12.0, iv=0.25))  # both: mark and given vol
    v = value_positions(book(*ps, underlyings=[u]), PARAMS, need_model=True)
    assert v.vols.tolist() == [0.2, 0.4, 0.25]
    theo = pricing.option_value(pricing.AMERICAN, 100.0, 100.0, 0.5, 0.03, 0.0, [0.2, 0.4, 0.25],
                                True)
    assert v.marks[:2] == pytest.approx(theo[:2])
    assert v.marks[2] == 12.0  # the mark, not the model value, sets the market value
    assert v.rows[2]["theoretical_price"] == pytest.approx(theo[2])


def test_option_without_price_vol_or_underlying_vol_is_required():
    p = opt(0, "X", "call", 100.0, 0.5, 1)
    with pytest.raises(EngineInputError) as e:
        value_positions(book(p, underlyings=[und("X", 100.0)]), PARAMS, need_model=True)
    assert e.value.code == "required" and e.value.field == "positions[0].price"


@pytest.mark.parametrize("price", [0.5, 150.0])  # below intrinsic (S=110, K=100), above S
def test_mark_outside_no_arbitrage_bounds(price):
    p = opt(0, "X", "call", 100.0, 0.5, 1, price=price)
    portfolio = book(p, underlyings=[und("X", 110.0)])
    with pytest.raises(EngineInputError) as e:
        value_positions(portfolio, PARAMS, need_model=True)
    assert e.value.field == "positions[0].price"
    assert e.value.code == "outside_no_arbitrage_bounds"
    v = value_positions(portfolio, PARAMS, need_model=False)  # reg_t alone: mark as it is
    assert v.rows[0]["implied_vol"] is None
    assert v.rows[0]["market_value"] == pytest.approx(100.0 * price)
    assert v.marks[0] == price and math.isnan(v.vols[0])
    assert len(v.warnings) == 1 and "positions[0].price" in v.warnings[0]


def test_mark_on_the_lower_bound_is_valued():
    p = opt(0, "X", "put", 120.0, 0.5, 1, price=20.0)  # American put at intrinsic
    v = value_positions(book(p, underlyings=[und("X", 100.0)]), PARAMS, need_model=True)
    assert v.rows[0]["implied_vol"] == pytest.approx(pricing.VOL_FLOOR)
    assert v.rows[0]["theoretical_price"] == pytest.approx(20.0)


def test_option_at_expiry_is_worth_its_intrinsic_value():
    ps = (opt(0, "X", "call", 90.0, 0.0, 2), opt(1, "X", "put", 90.0, 0.0, 2, price=0.0))
    v = value_positions(book(*ps, underlyings=[und("X", 100.0)]), PARAMS, need_model=True)
    assert v.rows[0]["theoretical_price"] == 10.0 and v.rows[0]["market_value"] == 2000.0
    assert v.rows[0]["delta"] == 200.0 and v.rows[0]["gamma"] == 0.0
    assert v.rows[0]["implied_vol"] is None
    assert v.rows[1]["market_value"] == 0.0 and v.rows[1]["delta"] == 0.0


def test_lp_row_uses_uniswap_v3():
    tick = 80000  # ~ 2980 USDC per ETH with decimals 18 / 6 (token1 per token0: 1.0001**tick)
    lp = LPPosition(token0="WETH", token1="USDC", decimals0=18, decimals1=6,
                    liquidity=10**15, tick_lower=tick - 6000, tick_upper=tick + 6000,
                    tokens_owed0=10**15, tokens_owed1=2_000_000)
    price0 = 1.0001 ** tick * 10**12
    pos = Position(index=0, id="lp", kind="uniswap_v3_lp", quantity=1, lp=lp)
    portfolio = book(pos, underlyings=[und("WETH", price0, "crypto", "token"),
                                       und("USDC", 1.0, "stablecoin", "token")])
    v = value_positions(portfolio, PARAMS, need_model=True)
    row = v.rows[0]
    assert list(row) == ["id", "market_value", "amount0", "amount1", "fees0", "fees1", "value"]
    sqrt_price = uniswap_v3.lp_sqrt_price(lp, price0, 1.0)
    a0, a1, f0, f1 = uniswap_v3.lp_amounts(lp, sqrt_price)
    assert (row["amount0"], row["amount1"], row["fees0"], row["fees1"]) == \
        (str(a0), str(a1), str(f0), str(f1))
    assert row["fees0"] == str(10**15) and row["fees1"] == "2000000"
    assert row["value"] == pytest.approx(uniswap_v3.lp_value(lp, price0, 1.0))
    assert row["market_value"] == row["value"] == v.net_liquidation_value
    assert row["value"] > 0


def test_request_order_and_ids_are_kept():
    ps = (Position(index=0, id="b", kind="stock", quantity=1, symbol="Y"),
          opt(1, "X", "call", 100.0, 0.5, 1, iv=0.2),
          Position(index=2, id="#2", kind="stock", quantity=1, symbol="X"))
    v = value_positions(book(*ps, underlyings=[und("X", 100.0), und("Y", 10.0)]), PARAMS,
                        need_model=True)
    assert [r["id"] for r in v.rows] == ["b", "o1", "#2"]
