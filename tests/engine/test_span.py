"""SPAN scanning (margin.engine.span): scenario order, Black-76 revaluation, spreads, floors.

Reference numbers come from ../shared/vectors/span.json (``load_vectors``), never copied here.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import numpy as np
import pytest

from margin.engine import pricing, span
from margin.engine.errors import EngineInputError
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import Portfolio, Position, Underlying
from tests.vectors import load_vectors

V = load_vectors("span.json")
PARAMS = load_parameter_set()
VD = date(2026, 1, 2)


def portfolio_from_request(req: dict[str, Any]) -> Portfolio:
    """The few request fields SPAN reads, as a ``Portfolio`` (no calculator needed)."""
    vd = date.fromisoformat(req["valuation_date"])
    unds = {}
    for sym, u in req["underlyings"].items():
        unds[sym] = Underlying(sym, float(u["price"]), u["product_class"],
                               u.get("type", "future"), u.get("class_group", sym),
                               u.get("product_group", sym), volatility=u.get("volatility"))
    positions = []
    for i, p in enumerate(req["positions"]):
        expiry = date.fromisoformat(p["expiry"]) if "expiry" in p else None
        tte = p.get("time_to_expiry")
        if tte is None and expiry is not None:
            tte = (expiry - vd).days / 365.0
        ra = p.get("risk_array")
        positions.append(Position(
            index=i, id=p.get("id", f"#{i}"), kind=p["kind"], quantity=float(p["quantity"]),
            underlying=p["underlying"], right=p.get("right"), strike=p.get("strike"),
            expiry=expiry, time_to_expiry=tte, multiplier=float(p.get("multiplier", 1)),
            price=p.get("price"), implied_vol=p.get("implied_vol"),
            risk_array=tuple(float(x) for x in ra) if ra is not None else None))
    return Portfolio(vd, unds, tuple(positions), rate=float(req.get("rate", 0.0)),
                     span_parameters=req.get("span_parameters", {}))


def _future(i: int, qty: float, expiry: date, sym: str = "SP", mult: float = 500.0,
            price: float | None = 400.0) -> Position:
    return Position(index=i, id=f"f{i}", kind="future", quantity=qty, underlying=sym,
                    expiry=expiry, time_to_expiry=(expiry - VD).days / 365.0,
                    multiplier=mult, price=price)


def _fop(i: int, qty: float, strike: float, right: str = "call", expiry: date = date(2026, 12, 18),
         sym: str = "SP", mult: float = 500.0, **kw: Any) -> Position:
    return Position(index=i, id=f"o{i}", kind="future_option", quantity=qty, underlying=sym,
                    right=right, strike=strike, expiry=expiry,
                    time_to_expiry=(expiry - VD).days / 365.0, multiplier=mult, **kw)


def _pf(positions: list[Position], sp: dict[str, dict] | None = None, rate: float = 0.0,
        prices: dict[str, float] | None = None) -> Portfolio:
    prices = prices or {"SP": 400.0}
    unds = {s: Underlying(s, p, "future", "future", s, s) for s, p in prices.items()}
    return Portfolio(VD, unds, tuple(positions), rate=rate, span_parameters=sp or {})


SP_PARAMS = {"SP": {"price_scan": 10000, "vol_scan": 0.04, "extreme_multiplier": 2,
                    "extreme_coverage": 0.35}}


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("case", V["cases"], ids=[c["name"] for c in V["cases"]])
def test_span_vector_cases(case: dict) -> None:
    from tests.vectors import dig

    block = span.calculate_block(portfolio_from_request(case["request"]), PARAMS)
    for path, expected in case["expect"].items():
        got = dig({"span": block}, path)
        assert got == pytest.approx(expected, abs=case["tolerance"]), path


def test_published_array_is_used_as_given() -> None:
    case = V["cases"][1]
    block = span.calculate_block(portfolio_from_request(case["request"]), PARAMS)
    assert block["combined_commodities"][0]["risk_array"] == pytest.approx(
        V["long_call_risk_array"])


# --------------------------------------------------------------------------- scenarios


def test_scenario_order_of_a_future() -> None:
    pf = _pf([_future(0, 1, date(2026, 12, 18))], SP_PARAMS)
    ra = np.array(span.calculate_block(pf, PARAMS)["combined_commodities"][0]["risk_array"])
    third = 10000 / 3
    expected = np.array([0, 0, 1, 1, -1, -1, 2, 2, -2, -2, 3, 3, -3, -3, 0, 0]) * third
    expected[14] = 2 * 10000 * 0.35
    expected[15] = -2 * 10000 * 0.35
    assert ra == pytest.approx(expected)


def test_scenario_table_shape() -> None:
    price, vol, extreme = span.scenario_moves(3.0)
    assert len(span.SCENARIOS) == span.N_SCENARIOS == 16
    assert list(price[:14]) == pytest.approx(
        [0, 0, 1 / 3, 1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3, 1, 1, -1, -1])
    assert list(vol[:14]) == [1, -1] * 7
    assert list(price[14:]) == [3.0, -3.0] and list(vol[14:]) == [0, 0]
    assert extreme.tolist() == [False] * 14 + [True, True]


def test_extreme_parameters_fall_back_to_the_parameter_set() -> None:
    pf = _pf([_future(0, 1, date(2026, 12, 18))], {"SP": {"price_scan": 9000}})
    ra = span.calculate_block(pf, PARAMS)["combined_commodities"][0]["risk_array"]
    mult = PARAMS.span.extreme_multiplier
    cov = PARAMS.span.extreme_coverage
    assert ra[14] == pytest.approx(mult * 9000 * cov)
    assert ra[15] == pytest.approx(-mult * 9000 * cov)


def test_black76_revaluation_same_date() -> None:
    rate = 0.03
    vol = 0.2
    opt = _fop(0, 1, 410.0, implied_vol=vol)
    pf = _pf([opt], SP_PARAMS, rate=rate)
    ra = np.array(span.calculate_block(pf, PARAMS)["combined_commodities"][0]["risk_array"])
    t = opt.time_to_expiry
    move = 10000 / 500.0
    base = pricing.option_value(pricing.BLACK76, 400.0, 410.0, t, rate, 0.0, vol, True)
    price, vdir, extreme = span.scenario_moves(2.0)
    for k in range(16):
        v = vol + 0.04 * vdir[k]
        val = pricing.option_value(pricing.BLACK76, 400.0 + price[k] * move, 410.0, t, rate,
                                   0.0, v, True)
        expected = (val - base) * 500.0 * (0.35 if extreme[k] else 1.0)
        assert ra[k] == pytest.approx(expected, rel=1e-9, abs=1e-6), k
    assert ra[0] > 0 > ra[1]  # vol up helps a long option, vol down hurts
    assert ra[14] > 0 > ra[15]


def test_option_vol_implied_from_its_mark_with_black76() -> None:
    opt = _fop(0, 1, 410.0, price=8.0)
    pf = _pf([opt], SP_PARAMS)
    block = span.calculate_block(pf, PARAMS)
    iv = float(pricing.implied_vol(pricing.BLACK76, 8.0, 400.0, 410.0, opt.time_to_expiry,
                                   0.0, 0.0, True))
    same = _pf([dataclasses.replace(opt, price=None, implied_vol=iv)], SP_PARAMS)
    other = span.calculate_block(same, PARAMS)
    assert block["combined_commodities"][0]["risk_array"] == pytest.approx(
        other["combined_commodities"][0]["risk_array"], abs=1e-6)
    assert block["combined_commodities"][0]["net_option_value"] == pytest.approx(8.0 * 500)


def test_option_on_the_held_futures_price() -> None:
    # the option is valued on the future of its expiry (the future position's price)
    exp = date(2026, 12, 18)
    fut = _future(0, 0, exp, price=420.0)
    opt = _fop(1, 1, 410.0, expiry=exp, implied_vol=0.2)
    lines = span.span_lines(_pf([fut, opt], SP_PARAMS), PARAMS)["SP"]
    itm = lines[1].option_value
    lines_otm = span.span_lines(_pf([opt], SP_PARAMS), PARAMS)["SP"]
    assert itm > lines_otm[0].option_value


def test_expired_option_is_intrinsic() -> None:
    opt = dataclasses.replace(_fop(0, 1, 390.0, implied_vol=0.2), time_to_expiry=0.0)
    ra = span.calculate_block(_pf([opt], SP_PARAMS), PARAMS)["combined_commodities"][0][
        "risk_array"]
    assert ra[2] == pytest.approx(10000 / 3)  # +1/3 of 20 points x 500, deep in the money
    assert ra[0] == pytest.approx(0.0)


# --------------------------------------------------------------------------- requirement


def test_long_option_never_requires_more_than_its_premium() -> None:
    opt = _fop(0, 1, 410.0, price=8.0)
    block = span.calculate_block(_pf([opt], SP_PARAMS), PARAMS)
    cc = block["combined_commodities"][0]
    assert cc["scan_risk"] <= cc["net_option_value"]
    assert block["requirement"] == 0.0  # never below zero


def test_short_option_adds_its_value() -> None:
    opt = _fop(0, -1, 410.0, price=8.0)
    block = span.calculate_block(_pf([opt], SP_PARAMS), PARAMS)
    cc = block["combined_commodities"][0]
    assert cc["net_option_value"] == pytest.approx(-4000.0)
    assert block["requirement"] == pytest.approx(cc["requirement"] + 4000.0)


def test_short_option_minimum_binds_for_far_otm_shorts() -> None:
    sp = {"SP": {**SP_PARAMS["SP"], "short_option_minimum": 150.0}}
    opt = _fop(0, -3, 800.0, right="call", implied_vol=0.15)
    cc = span.calculate_block(_pf([opt], sp), PARAMS)["combined_commodities"][0]
    assert cc["scan_risk"] < 450.0
    assert cc["short_option_minimum"] == pytest.approx(450.0)
    assert cc["requirement"] == pytest.approx(450.0)


def test_block_shape_and_key_order() -> None:
    block = span.calculate_block(_pf([_future(0, 2, date(2026, 12, 18))], SP_PARAMS), PARAMS)
    assert list(block) == ["requirement", "combined_commodities"]
    assert list(block["combined_commodities"][0]) == [
        "commodity", "risk_array", "scan_risk", "intra_spread_charge", "inter_spread_credit",
        "short_option_minimum", "net_option_value", "requirement"]
    cc = block["combined_commodities"][0]
    assert cc["commodity"] == "SP" and len(cc["risk_array"]) == 16
    assert all(isinstance(x, float) for x in cc["risk_array"])
    assert block["requirement"] == pytest.approx(20000.0)


def test_no_futures_no_block() -> None:
    unds = {"IBM": Underlying("IBM", 100.0, "equity", "stock", "IBM", "IBM")}
    pf = Portfolio(VD, unds, (Position(0, "s", "stock", 10.0, symbol="IBM"),))
    assert span.calculate_block(pf, PARAMS) is None


def test_price_scan_fallback_is_the_class_valuation_range() -> None:
    pf = _pf([_future(0, 1, date(2026, 12, 18))])
    widest = max(abs(x) for x in PARAMS.portfolio_margin.points["future"])
    cc = span.calculate_block(pf, PARAMS)["combined_commodities"][0]
    assert cc["scan_risk"] == pytest.approx(widest * 400.0 * 500.0)


# --------------------------------------------------------------------------- spreads / deltas


def test_intra_spread_flat_rate() -> None:
    sp = {"SP": {"price_scan": 1000, "intra_spread_charge": 150}}
    pf = _pf([_future(0, 2, date(2026, 3, 20)), _future(1, -3, date(2026, 6, 19))], sp)
    cc = span.calculate_block(pf, PARAMS)["combined_commodities"][0]
    assert cc["intra_spread_charge"] == pytest.approx(2 * 150)  # 2 spreads formed
    assert cc["scan_risk"] == pytest.approx(1000.0)  # the 1 unspread short
    assert cc["requirement"] == pytest.approx(1300.0)


def test_intra_spread_pairs_by_tier() -> None:
    sp = {"SP": {"price_scan": {"2026-01/2026-06": 1000, "2026-07/2027-12": 800},
                 "intra_spread_charge": [
                     {"legs": ["2026-01/2026-06", "2026-01/2026-06"], "charge": 100},
                     {"legs": ["2026-01/2026-06", "2026-07/2027-12"], "charge": 300}]}}
    pf = _pf([_future(0, 1, date(2026, 3, 20)), _future(1, -1, date(2026, 6, 19)),
              _future(2, 1, date(2026, 9, 18)), _future(3, -1, date(2026, 12, 18))], sp)
    cc = span.calculate_block(pf, PARAMS)["combined_commodities"][0]
    # within tier 1: Mar/Jun (100); tier 2 alone has Sep/Dec, which no listed pair spreads
    assert cc["intra_spread_charge"] == pytest.approx(100.0)
    assert cc["scan_risk"] == pytest.approx(0.0)


def test_tiered_price_scan_exact_month_wins() -> None:
    sp = {"SP": {"price_scan": {"2026-01/2026-12": 1000, "2026-06": 700}}}
    lines = span.span_lines(_pf([_future(0, 1, date(2026, 6, 19)),
                                 _future(1, 1, date(2026, 9, 18))], sp), PARAMS)["SP"]
    assert [ln.price_scan for ln in lines] == [700.0, 1000.0]


def test_missing_period_is_an_error() -> None:
    sp = {"SP": {"price_scan": {"2026-01/2026-06": 1000}}}
    with pytest.raises(EngineInputError) as err:
        span.calculate_block(_pf([_future(0, 1, date(2026, 9, 18))], sp), PARAMS)
    assert err.value.field == "span_parameters.SP.price_scan"
    assert err.value.code == "missing_period"


def test_bad_period_is_an_error() -> None:
    sp = {"SP": {"price_scan": {"March": 1000}}}
    with pytest.raises(EngineInputError) as err:
        span.calculate_block(_pf([_future(0, 1, date(2026, 9, 18))], sp), PARAMS)
    assert err.value.code == "invalid"


def test_composite_delta() -> None:
    exp = date(2026, 12, 18)
    pf = _pf([_future(0, 3, exp), _fop(1, -2, 400.0, expiry=exp, implied_vol=0.2)], SP_PARAMS)
    lines = span.span_lines(pf, PARAMS)["SP"]
    assert lines[0].delta == pytest.approx(1.0)
    assert 0.3 < lines[1].delta < 0.7  # an at-the-money call
    d = span.composite_deltas(pf, PARAMS)
    assert d["SP"] == pytest.approx(3.0 - 2.0 * lines[1].delta)
    # equal weights telescope: the slope over the whole scan range
    ra = lines[1].risk_array
    w = span.composite_delta(ra, 10000.0, [1, 1, 1, 1, 1, 1, 1])
    assert w == pytest.approx(lines[1].delta)
    centre = span.composite_delta(ra, 10000.0, [0, 0, 0, 1, 0, 0, 0])
    assert centre == pytest.approx((ra[2] + ra[3] - ra[4] - ra[5]) / 2 / (2 * 10000 / 3))


def test_inter_spread_credit_uses_price_risk_per_delta() -> None:
    exp = date(2026, 12, 18)
    sp = {"A": {"price_scan": 1000, "inter_spreads": [{"legs": {"A": 1, "B": 1},
                                                      "credit": 0.5}]},
          "B": {"price_scan": 2000}}
    pf = _pf([_future(0, 3, exp, sym="A"), _future(1, -2, exp, sym="B")], sp,
             prices={"A": 100.0, "B": 100.0})
    block = span.calculate_block(pf, PARAMS)
    a, b = block["combined_commodities"]
    assert a["inter_spread_credit"] == pytest.approx(0.5 * 2 * 1000)
    assert b["inter_spread_credit"] == pytest.approx(0.5 * 2 * 2000)
    assert block["requirement"] == pytest.approx(3000 + 4000 - 1000 - 2000)


def test_inter_spread_needs_opposite_sides() -> None:
    exp = date(2026, 12, 18)
    sp = {"A": {"price_scan": 1000, "inter_spreads": [{"legs": {"A": 1, "B": 1},
                                                      "credit": 0.5}]},
          "B": {"price_scan": 2000}}
    pf = _pf([_future(0, 3, exp, sym="A"), _future(1, 2, exp, sym="B")], sp,
             prices={"A": 100.0, "B": 100.0})
    block = span.calculate_block(pf, PARAMS)
    assert [c["inter_spread_credit"] for c in block["combined_commodities"]] == [0.0, 0.0]


def test_price_risk_excludes_time_and_vol_risk() -> None:
    ra = np.zeros(16)
    ra[:14] = -100.0  # time risk 100 everywhere
    ra[13] = -400.0  # worst: -3/3 vol down; its pair (-3/3 vol up) loses 200
    ra[12] = -200.0
    assert span.scan_risk(ra) == 400.0
    # vol risk = (400 - 200) / 2 = 100, time risk 100: price risk 200
    assert span.price_risk(ra) == pytest.approx(200.0)
