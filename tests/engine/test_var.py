"""Historical VaR with full revaluation, parametric cross-check, stress (margin.engine.var)."""

from __future__ import annotations

import dataclasses
import math
from datetime import date
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from margin.bench.book import make_var_book
from margin.engine import pricing, var
from margin.engine.errors import EngineInputError
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import LPPosition, Portfolio, Position, StressScenario, Underlying

PARAMS = load_parameter_set()
VD = date(2026, 1, 2)
C = PARAMS.var.confidence
ES_C = PARAMS.var.es_confidence


def _closes(n: int, seed: int, vol: float = 0.02, start: float = 100.0,
            shocks: dict[int, float] | None = None) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(n - 1) * vol
    for k, v in (shocks or {}).items():
        r[k] = v
    return tuple(float(x) for x in start * np.r_[1.0, np.cumprod(1.0 + r)])


def _und(sym: str, price: float, cls: str = "equity", typ: str = "stock", group: str | None = None,
         q: float = 0.0) -> Underlying:
    return Underlying(sym, price, cls, typ, group or sym, group or sym, q)


def _stock(i: int, sym: str, qty: float) -> Position:
    return Position(i, f"p{i}", "stock", qty, symbol=sym)


def _option(i: int, sym: str, qty: float, strike: float, right: str = "call",
            tte: float = 0.25, vol: float = 0.3, exercise: str = "european") -> Position:
    return Position(i, f"p{i}", "option", qty, underlying=sym, right=right, strike=strike,
                    time_to_expiry=tte, multiplier=100.0, exercise=exercise, implied_vol=vol)


def _val(pf: Portfolio) -> SimpleNamespace:
    """The valuation fields var reads: per-position marks and implied vols."""
    marks, vols = [], []
    for p in pf.positions:
        marks.append(pf.underlyings[p.root].price if p.kind != "uniswap_v3_lp" else np.nan)
        vols.append(p.implied_vol if p.implied_vol is not None else np.nan)
    return SimpleNamespace(marks=np.array(marks, dtype=float), vols=np.array(vols, dtype=float),
                           rows=[], warnings=[])


def _pf(positions: list[Position], history: dict[str, tuple[float, ...]],
        unds: dict[str, Underlying] | None = None, stress=(), rate: float = 0.0) -> Portfolio:
    if unds is None:
        unds = {s: _und(s, h[-1]) for s, h in history.items()}
    return Portfolio(VD, unds, tuple(positions), rate=rate, history=history,
                     stress=tuple(stress))


def _inverted_cdf(x: np.ndarray, q: float) -> float:
    return float(np.quantile(x, q, method="inverted_cdf"))


# --------------------------------------------------------------------------- tail measures


def test_linear_var_is_the_empirical_quantile() -> None:
    hist = {"AAA": _closes(600, 1)}
    pf = _pf([_stock(0, "AAA", 250)], hist)
    block = var.calculate_var_block(pf, PARAMS, _val(pf))
    p = np.asarray(hist["AAA"])
    loss = -250 * p[-1] * (p[1:] / p[:-1] - 1.0)
    one = block["horizons"][0]
    assert one["days"] == 1
    assert one["historical"] == pytest.approx(_inverted_cdf(loss, C), rel=1e-12)
    srt = np.sort(loss)[::-1]
    m = (1 - ES_C) * loss.size
    fm = math.floor(m)
    es = (srt[:fm].sum() + (m - fm) * srt[fm]) / m
    assert one["expected_shortfall"] == pytest.approx(es, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=700),
       st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.995]))
def test_es_is_at_least_var_and_var_is_the_quantile(xs: list[float], c: float) -> None:
    losses = np.asarray(xs)
    v, e = var.tail_measures(losses, c, c)
    assert e[0] >= v[0] - 1e-9 * max(1.0, abs(v[0]))
    if abs(len(xs) * c - round(len(xs) * c)) > 1e-6:  # numpy may round exact counts up
        assert v[0] == _inverted_cdf(losses, c)
    assert losses.max() >= e[0] - 1e-6 * max(1.0, abs(e[0]))


def test_tail_counts_at_exact_boundaries() -> None:
    # 500 scenarios at 99 %: P(loss <= x) >= 0.99 first holds at the 495th smallest loss
    losses = np.arange(1.0, 501.0)
    v, e = var.tail_measures(losses, 0.99, 0.975)
    assert v[0] == 495.0
    # 97.5 %: the worst 12.5 scenarios, the 13th counting half
    assert e[0] == pytest.approx((sum(range(489, 501)) + 0.5 * 488) / 12.5)


def test_batch_rows_match_single_rows() -> None:
    rng = np.random.default_rng(3)
    losses = rng.standard_t(3, (7, 520))
    v, e = var.tail_measures(losses, C, ES_C)
    for k in range(7):
        v1, e1 = var.tail_measures(losses[k], C, ES_C)
        assert v[k] == v1[0] and e[k] == pytest.approx(e1[0])


# --------------------------------------------------------------------------- horizons


def test_two_day_uses_overlapping_returns() -> None:
    hist = {"AAA": _closes(400, 2)}
    pf = _pf([_stock(0, "AAA", -100)], hist)
    p = np.asarray(hist["AAA"])
    pnl2 = var.portfolio_scenario_pnl(pf, _val(pf), 2)
    assert pnl2.shape == (p.size - 2,)
    assert pnl2 == pytest.approx(-100 * p[-1] * (p[2:] / p[:-2] - 1.0))
    block = var.calculate_var_block(pf, PARAMS, _val(pf))
    one, two = block["horizons"]
    assert two["days"] == 2
    assert two["historical"] == pytest.approx(_inverted_cdf(-pnl2, C))
    assert two["historical"] != pytest.approx(math.sqrt(2) * one["historical"], rel=1e-3)


def test_block_shape_and_params() -> None:
    hist = {"AAA": _closes(300, 4)}
    pf = _pf([_stock(0, "AAA", 10)], hist)
    block = var.calculate_var_block(pf, PARAMS, _val(pf))
    assert list(block) == ["confidence", "horizons"]
    assert block["confidence"] == C
    assert [h["days"] for h in block["horizons"]] == list(PARAMS.var.horizons)
    assert all(list(h) == ["days", "historical", "expected_shortfall", "parametric"]
               for h in block["horizons"])
    lower = PARAMS.with_overrides({"var": {"confidence": 0.95}})
    b95 = var.calculate_var_block(pf, lower, _val(pf))
    assert b95["confidence"] == 0.95
    assert b95["horizons"][0]["historical"] < block["horizons"][0]["historical"]


def test_none_without_history_and_history_errors() -> None:
    pf = Portfolio(VD, {"AAA": _und("AAA", 10.0)}, (_stock(0, "AAA", 1),))
    assert var.calculate_var_block(pf, PARAMS, _val(pf)) is None
    short = _pf([_stock(0, "AAA", 1)], {"AAA": _closes(PARAMS.var.min_history - 1, 1)})
    with pytest.raises(EngineInputError) as err:
        var.calculate_var_block(short, PARAMS, _val(short))
    assert (err.value.field, err.value.code) == ("history", "too_short")
    uneven = _pf([_stock(0, "AAA", 1)], {"AAA": _closes(300, 1), "BBB": _closes(301, 2)})
    with pytest.raises(EngineInputError) as err:
        var.calculate_var_block(uneven, PARAMS, _val(uneven))
    assert err.value.code == "unequal_lengths"


def test_missing_symbol_and_class_group_fallback() -> None:
    hist = {"SPX": _closes(300, 5, start=5000.0)}
    unds = {"SPX": _und("SPX", hist["SPX"][-1], "broad_index_high_cap", "index"),
            "SPY": _und("SPY", hist["SPX"][-1] / 10, "broad_index_high_cap", "etf", "SPX"),
            "IBM": _und("IBM", 100.0)}
    pf = _pf([_stock(0, "SPY", 100)], hist, unds)
    val = _val(pf)
    block = var.calculate_var_block(pf, PARAMS, val)
    p = np.asarray(hist["SPX"])
    loss = -100 * unds["SPY"].price * (p[1:] / p[:-1] - 1)
    assert block["horizons"][0]["historical"] == pytest.approx(_inverted_cdf(loss, C))
    assert any("SPY" in w and "class group SPX" in w for w in val.warnings)
    bad = _pf([_stock(0, "IBM", 1)], hist, unds)
    with pytest.raises(EngineInputError) as err:
        var.calculate_var_block(bad, PARAMS, _val(bad))
    assert (err.value.field, err.value.code) == ("history", "missing_symbol")


# --------------------------------------------------------------------------- parametric


def test_delta_gamma_var_of_a_linear_book_is_z_sigma() -> None:
    cov = np.array([[0.0004, 0.0001], [0.0001, 0.0009]])
    delta = np.array([1e6, -5e5])
    sigma = math.sqrt(delta @ cov @ delta)
    z = float(norm.ppf(C))
    assert var.delta_gamma_var(delta, np.zeros((2, 2)), cov, C) == pytest.approx(z * sigma)


def test_delta_gamma_var_long_gamma_is_smaller() -> None:
    cov = np.array([[0.0004]])
    d = np.array([1e5])
    assert var.delta_gamma_var(d, np.array([[5e6]]), cov, C) < var.delta_gamma_var(
        d, np.zeros((1, 1)), cov, C) < var.delta_gamma_var(d, np.array([[-5e6]]), cov, C)


def test_parametric_close_to_historical_for_linear_book_on_normal_returns() -> None:
    rng = np.random.default_rng(11)
    n = 4000
    z = rng.standard_normal((n - 1, 2))
    r = np.column_stack([0.01 * z[:, 0], 0.015 * (0.6 * z[:, 0] + 0.8 * z[:, 1])])
    p = 100.0 * np.vstack([np.ones(2), np.cumprod(1 + r, axis=0)])
    hist = {"AAA": tuple(p[:, 0]), "BBB": tuple(p[:, 1])}
    pf = _pf([_stock(0, "AAA", 1000), _stock(1, "BBB", -300)], hist)
    block = var.calculate_var_block(pf, PARAMS, _val(pf))
    for hz in block["horizons"]:
        assert hz["parametric"] == pytest.approx(hz["historical"], rel=0.08)


# --------------------------------------------------------------------------- options


def _crash_history() -> dict[str, tuple[float, ...]]:
    return {"AAA": _closes(400, 6, vol=0.03, shocks={100: -0.6, 200: 0.8, 300: -0.4})}


@pytest.mark.parametrize("right", ["call", "put"])
@pytest.mark.parametrize("exercise", ["european", "american"])
def test_long_option_loss_never_exceeds_its_value(right: str, exercise: str) -> None:
    hist = _crash_history()
    price = hist["AAA"][-1]
    opt = _option(0, "AAA", 3, round(price), right, tte=30 / 365, vol=0.5, exercise=exercise)
    pf = _pf([opt], hist, rate=0.03)
    val = _val(pf)
    model = pricing.AMERICAN if exercise == "american" else pricing.EUROPEAN
    value = 300 * float(pricing.option_value(model, price, opt.strike, opt.time_to_expiry, 0.03,
                                             0.0, 0.5, right == "call"))
    for h in (1, 2):
        pnl = var.portfolio_scenario_pnl(pf, val, h)
        assert np.all(-pnl <= value + 1e-9)
    block = var.calculate_var_block(pf, PARAMS, val)
    for hz in block["horizons"]:
        assert hz["historical"] <= value and hz["expected_shortfall"] <= value


def test_option_scenarios_are_full_revaluations() -> None:
    hist = _crash_history()
    price = hist["AAA"][-1]
    unds = {"AAA": _und("AAA", price, q=0.02)}
    opt = _option(0, "AAA", -2, price * 1.05, "put", tte=45 / 365, vol=0.4, exercise="american")
    pf = _pf([opt], hist, unds, rate=0.04)
    p = np.asarray(hist["AAA"])
    for h in (1, 2):
        r = p[h:] / p[:-h] - 1
        now = pricing.option_value(pricing.AMERICAN, price, opt.strike, opt.time_to_expiry,
                                   0.04, 0.02, 0.4, False)
        later = pricing.option_value(pricing.AMERICAN, price * (1 + r), opt.strike,
                                     opt.time_to_expiry - h / 365, 0.04, 0.02, 0.4, False)
        expected = -200 * (later - now)
        assert var.portfolio_scenario_pnl(pf, _val(pf), h) == pytest.approx(expected, abs=1e-8)
    # far from a delta-gamma approximation in the crash scenario
    block = var.calculate_var_block(pf, PARAMS, _val(pf))
    assert block["horizons"][0]["historical"] > 0


def test_time_advances_by_the_horizon() -> None:
    flat = {"AAA": tuple([100.0] * 300)}
    opt = _option(0, "AAA", 1, 100.0, "call", tte=20 / 365, vol=0.3)
    pf = _pf([opt], flat)
    block = var.calculate_var_block(pf, PARAMS, _val(pf))
    v = [float(pricing.option_value(pricing.EUROPEAN, 100.0, 100.0, (20 - d) / 365, 0.0, 0.0,
                                    0.3, True)) for d in (0, 1, 2)]
    one, two = block["horizons"]
    assert one["historical"] == pytest.approx(100 * (v[0] - v[1]))
    assert two["historical"] == pytest.approx(100 * (v[0] - v[2]))
    assert one["expected_shortfall"] == pytest.approx(one["historical"])


def test_expiring_option_is_intrinsic_after_the_horizon() -> None:
    hist = {"AAA": _closes(300, 8)}
    price = hist["AAA"][-1]
    opt = _option(0, "AAA", 1, price * 0.9, "call", tte=0.5 / 365, vol=0.3)
    pf = _pf([opt], hist)
    p = np.asarray(hist["AAA"])
    pnl = var.portfolio_scenario_pnl(pf, _val(pf), 1)
    now = float(pricing.option_value(pricing.EUROPEAN, price, opt.strike, opt.time_to_expiry,
                                     0.0, 0.0, 0.3, True))
    intrinsic = np.maximum(price * (p[1:] / p[:-1]) - opt.strike, 0.0)
    assert pnl == pytest.approx(100 * (intrinsic - now))


def test_option_without_vol_is_refused() -> None:
    hist = {"AAA": _closes(300, 9)}
    opt = dataclasses.replace(_option(0, "AAA", 1, 100.0), implied_vol=None)
    pf = _pf([opt], hist)
    with pytest.raises(EngineInputError) as err:
        var.calculate_var_block(pf, PARAMS, _val(pf))
    assert err.value.field == "positions[0].price"


def test_with_the_engine_valuation() -> None:
    from margin.engine.valuation import value_positions

    hist = {"AAA": _closes(300, 10), "IDX": _closes(300, 11, start=4000.0)}
    unds = {"AAA": _und("AAA", hist["AAA"][-1]),
            "IDX": _und("IDX", hist["IDX"][-1], "broad_index_high_cap", "index", q=0.015)}
    c = dataclasses.replace(_option(0, "AAA", -5, round(hist["AAA"][-1]), "call"),
                            implied_vol=None, exercise=None, price=4.0)
    p = dataclasses.replace(_option(1, "IDX", 2, round(hist["IDX"][-1] * 0.95), "put"),
                            exercise=None)
    pf = _pf([c, p, _stock(2, "AAA", 300)], hist, unds, rate=0.04)
    val = value_positions(pf, PARAMS, True)
    block = var.calculate_var_block(pf, PARAMS, val)
    assert all(h["historical"] > 0 and h["parametric"] > 0 for h in block["horizons"])
    # the mark's implied vol reprices the call at its mark when nothing moves
    s = var._build_book(pf, val, {"AAA": 0, "IDX": 1}).series
    base = var.option_base_values(s, 0.04)
    assert base[0] == pytest.approx(4.0, abs=1e-8)
    assert s.model.tolist()[:2] == [pricing.AMERICAN, pricing.EUROPEAN]


# --------------------------------------------------------------------------- LP


def _lp_position() -> tuple[Position, dict[str, Underlying]]:
    from margin.engine.defi import uniswap_v3 as u

    unds = {"ETH": _und("ETH", 3000.0, "crypto", "token"),
            "USDC": _und("USDC", 1.0, "stablecoin", "token")}
    sqrt_p = u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6)
    tick = u.get_tick_at_sqrt_ratio(sqrt_p)
    lp = LPPosition("ETH", "USDC", 18, 6, liquidity=10 ** 15, tick_lower=(tick // 60 - 500) * 60,
                    tick_upper=(tick // 60 + 500) * 60)
    return Position(0, "lp", "uniswap_v3_lp", 1.0, lp=lp), unds


def test_lp_positions_are_revalued_with_lp_values() -> None:
    from margin.engine.defi import uniswap_v3 as u

    pos, unds = _lp_position()
    hist = {"ETH": _closes(300, 12, vol=0.04, start=3000.0), "USDC": _closes(300, 13, 0.0005, 1.0)}
    unds = {"ETH": dataclasses.replace(unds["ETH"], price=hist["ETH"][-1]),
            "USDC": dataclasses.replace(unds["USDC"], price=hist["USDC"][-1])}
    pf = _pf([pos], hist, unds)
    p0, p1 = np.asarray(hist["ETH"]), np.asarray(hist["USDC"])
    r0, r1 = p0[1:] / p0[:-1] - 1, p1[1:] / p1[:-1] - 1
    now = u.lp_value(pos.lp, p0[-1], p1[-1])
    expected = u.lp_values(pos.lp, p0[-1] * (1 + r0), p1[-1] * (1 + r1),
                           base_prices=(p0[-1], p1[-1])) - now
    assert var.portfolio_scenario_pnl(pf, _val(pf), 1) == pytest.approx(expected)
    block = var.calculate_var_block(pf, PARAMS, _val(pf))
    assert 0 < block["horizons"][0]["historical"] < now
    assert block["horizons"][0]["parametric"] == pytest.approx(
        block["horizons"][0]["historical"], rel=0.5)


# --------------------------------------------------------------------------- stress


def _stress_book() -> Portfolio:
    hist = {"SPX": _closes(300, 14, start=5000.0)}
    unds = {"IBM": _und("IBM", 100.0), "SPX": _und("SPX", 5000.0, "broad_index_high_cap", "index"),
            "SPY": _und("SPY", 500.0, "broad_index_high_cap", "etf", "SPX"),
            "ETH": _und("ETH", 3000.0, "crypto", "token"),
            "DOGE": _und("DOGE", 0.1, "crypto", "token")}
    pos = [_stock(0, "IBM", 100), _stock(1, "SPY", -10),
           Position(2, "p2", "crypto", 2.0, symbol="ETH"),
           Position(3, "p3", "crypto", 1000.0, symbol="DOGE")]
    return _pf(pos, hist, unds)


def test_named_scenarios_are_shipped_and_sourced() -> None:
    named = var.named_scenarios()
    assert {"1987-10-19", "2008-10", "2020-03-16", "2022-05", "2022-11"} <= set(named)
    for spec in named.values():
        assert spec["sources"] and spec["window"]
        assert set(spec["moves"]) == set(PARAMS.portfolio_margin.points)
        assert all(-1.0 <= m <= 0.0 for m in spec["moves"].values())
    assert named["1987-10-19"]["moves"]["equity"] == pytest.approx(-0.20)


def test_named_stress_losses() -> None:
    pf = _stress_book()
    named = var.named_scenarios()
    stress = [StressScenario(n, {}) for n in ("1987-10-19", "2022-05")]
    pf = dataclasses.replace(pf, stress=tuple(stress))
    out = var.calculate_stress_block(pf, PARAMS, _val(pf))
    assert [r["scenario"] for r in out] == ["1987-10-19", "2022-05"]
    assert all(list(r) == ["scenario", "loss"] for r in out)
    m87 = named["1987-10-19"]["moves"]
    expected87 = -(100 * 100.0 * m87["equity"] - 10 * 500.0 * m87["broad_index_high_cap"]
                   + 2 * 3000.0 * m87["crypto"] + 1000 * 0.1 * m87["crypto"])
    assert out[0]["loss"] == pytest.approx(expected87)
    s22 = named["2022-05"]
    expected22 = -(2 * 3000.0 * s22["symbols"]["ETH"] + 1000 * 0.1 * s22["moves"]["crypto"]
                   + 100 * 100.0 * s22["moves"]["equity"])
    assert out[1]["loss"] == pytest.approx(expected22)


def test_custom_stress_moves_and_class_groups() -> None:
    pf = dataclasses.replace(_stress_book(), stress=(
        StressScenario("mine", {"IBM": -0.5}), StressScenario("grp", {"SPX": 0.1})))
    out = var.calculate_stress_block(pf, PARAMS, _val(pf))
    assert out[0] == {"scenario": "mine", "loss": pytest.approx(5000.0)}
    assert out[1]["loss"] == pytest.approx(10 * 500.0 * 0.1)  # short SPY moves with SPX


def test_stress_option_vol_shift_and_revaluation() -> None:
    hist = {"SPX": _closes(300, 15, start=5000.0)}
    unds = {"SPX": _und("SPX", 5000.0, "broad_index_high_cap", "index")}
    opt = Position(0, "o", "option", -1, underlying="SPX", right="put", strike=4800.0,
                   time_to_expiry=0.1, multiplier=100.0, exercise="european", implied_vol=0.2)
    pf = _pf([opt], hist, unds, stress=[StressScenario("2020-03-16", {})])
    spec = var.named_scenarios()["2020-03-16"]
    mv = spec["moves"]["broad_index_high_cap"]
    dv = spec["vol_shift"]["broad_index_high_cap"]
    now = pricing.option_value(0, 5000.0, 4800.0, 0.1, 0.0, 0.0, 0.2, False)
    shocked = pricing.option_value(0, 5000.0 * (1 + mv), 4800.0, 0.1, 0.0, 0.0, 0.2 + dv, False)
    out = var.calculate_stress_block(pf, PARAMS, _val(pf))
    assert out[0]["loss"] == pytest.approx(100 * (shocked - now))


def test_stress_errors_and_none() -> None:
    pf = _stress_book()
    assert var.calculate_stress_block(pf, PARAMS, _val(pf)) is None
    bad = dataclasses.replace(pf, stress=(StressScenario("1987-10-19", {}),
                                          StressScenario("1929-10-29", {})))
    with pytest.raises(EngineInputError) as err:
        var.calculate_stress_block(bad, PARAMS, _val(bad))
    assert (err.value.field, err.value.code) == ("stress[1]", "unknown_scenario")
    typo = dataclasses.replace(pf, stress=(StressScenario("x", {"IBMM": -0.1}),))
    with pytest.raises(EngineInputError) as err:
        var.calculate_stress_block(typo, PARAMS, _val(typo))
    assert err.value.field == "stress[0].moves.IBMM"


# --------------------------------------------------------------------------- batch


def test_batch_matches_the_per_account_computation() -> None:
    series, positions, returns = make_var_book(
        seed=5, n_accounts=300, n_positions=3000, n_series=400, n_underlyings=20,
        n_scenarios=520)
    res = var.historical_var_batch(series, positions, returns, 0.04, dtype=np.float64,
                                   chunk_rows=64, threads=2)
    pnl = var.series_scenario_pnl(series, returns, 0.04, 1.0)
    dense = positions.toarray()
    for a in (0, 17, 299):
        v, e = var.tail_measures(-(dense[a] @ pnl)[None, :], C, ES_C)
        assert res.var[a] == pytest.approx(v[0]) and res.expected_shortfall[a] == pytest.approx(
            e[0])
    f32 = var.historical_var_batch(series, positions, returns, 0.04)
    assert f32.var == pytest.approx(res.var, rel=1e-3, abs=1e-2)
    grid = var.historical_var_batch(series, positions, returns, 0.04, dtype=np.float64,
                                    american_grid=64)
    assert np.median(np.abs(grid.var - res.var) / np.maximum(res.var, 1.0)) < 1e-3


def test_batch_prices_each_series_once_per_scenario(monkeypatch) -> None:
    series, positions, returns = make_var_book(
        seed=6, n_accounts=50, n_positions=500, n_series=60, n_underlyings=6, n_scenarios=30)
    calls = []
    real = pricing.option_value

    def spy(*args, **kw):
        calls.append(np.broadcast(*args[1:]).size)
        return real(*args, **kw)

    monkeypatch.setattr(pricing, "option_value", spy)
    var.historical_var_batch(series, sp.csr_matrix(positions), returns, 0.04)
    assert calls == [60 * 30]
