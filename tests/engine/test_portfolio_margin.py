"""Step 3: the ``portfolio_margin`` block and the batch structure under it."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

from margin.bench import book as bench
from margin.engine import pricing
from margin.engine.errors import EngineInputError
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import LPPosition, Portfolio, Position, Underlying
from margin.engine.portfolio_margin import calculate_block
from margin.engine.series import aggregate_numba, aggregate_numpy, build_structure, series_pnl
from margin.engine.valuation import value_positions
from tests.vectors import dig, load_vectors

PARAMS = load_parameter_set()
DEFAULT_TYPE = {"equity": "stock", "future": "future", "crypto": "token", "stablecoin": "token"}
EUROPEAN_TYPES = ("index", "token")
BLOCK_KEYS = ["requirement", "regulatory_requirement", "house_requirement", "house_components",
              "minimum_charge", "product_groups", "class_groups", "driver"]
PG_KEYS = ["product_group", "offset", "class_groups", "pnl", "worst_loss", "minimum_charge",
           "requirement"]
CG_KEYS = ["class_group", "product_group", "points", "pnl", "worst_loss", "minimum_charge"]


# --------------------------------------------------------------------------- request -> Portfolio


def _lp(p: dict[str, Any]) -> LPPosition:
    ints = {k: int(p[k]) for k in (
        "liquidity", "tick_lower", "tick_upper", "tokens_owed0", "tokens_owed1",
        "fee_growth_inside_last0", "fee_growth_inside_last1", "fee_growth_global0",
        "fee_growth_global1", "tick_current", "sqrt_price_x96") if k in p}
    pairs = {k: (int(p[k][0]), int(p[k][1])) for k in (
        "fee_growth_outside_lower", "fee_growth_outside_upper") if k in p}
    return LPPosition(token0=p["token0"], token1=p["token1"], decimals0=int(p["decimals0"]),
                      decimals1=int(p["decimals1"]), **ints, **pairs)


def to_portfolio(req: dict[str, Any]) -> Portfolio:
    """A small stand-in for the calculator's parser: CALCULATOR.md request -> Portfolio."""
    vd = date.fromisoformat(req["valuation_date"])
    unds = {}
    for sym, u in req["underlyings"].items():
        cls = u["product_class"]
        cg = u.get("class_group", sym)
        unds[sym] = Underlying(
            sym, float(u["price"]), cls, u.get("type") or DEFAULT_TYPE.get(cls, "index"), cg,
            u.get("product_group", cg), float(u.get("dividend_yield", 0.0)),
            float(u.get("leverage", 1.0)), u.get("volatility"))
    positions = []
    for i, p in enumerate(req["positions"]):
        kind = p["kind"]
        kw: dict[str, Any] = {"index": i, "id": p.get("id", f"#{i}"), "kind": kind,
                              "quantity": float(p.get("quantity", 1))}
        for k in ("symbol", "underlying", "right", "strike", "price", "implied_vol",
                  "entry_price", "funding_accrued"):
            if k in p:
                kw[k] = p[k]
        if "expiry" in p:
            kw["expiry"] = date.fromisoformat(p["expiry"])
        if kind in ("option", "future_option"):
            kw["multiplier"] = float(p.get("multiplier", 100.0))
            kw["time_to_expiry"] = p["time_to_expiry"] if "time_to_expiry" in p \
                else (kw["expiry"] - vd).days / 365.0
            typ = unds[p["underlying"]].type
            kw["exercise"] = p.get("exercise",
                                   "european" if typ in EUROPEAN_TYPES else "american")
        elif "multiplier" in p:
            kw["multiplier"] = float(p["multiplier"])
        if kind == "uniswap_v3_lp":
            kw["lp"] = _lp(p)
        positions.append(Position(**kw))
    return Portfolio(vd, unds, tuple(positions), rate=float(req.get("rate", 0.0)),
                     house=req.get("house"), offsets=req.get("offsets", {}))


def pm(req: dict[str, Any], params=PARAMS) -> dict[str, Any]:
    portfolio = to_portfolio(req)
    return calculate_block(portfolio, params, value_positions(portfolio, params, True))


def request(underlyings, positions, **extra) -> dict[str, Any]:
    return {"valuation_date": "2026-01-02", "rate": 0.0, "underlyings": underlyings,
            "positions": positions, "methods": ["portfolio_margin"], **extra}


# --------------------------------------------------------------------------- published vectors


@pytest.mark.parametrize("case", load_vectors("portfolio_margin.json")["cases"],
                         ids=lambda c: c["name"])
def test_portfolio_margin_vectors(case):
    block = pm(case["request"])
    for path, expected in case["expect"].items():
        assert dig({"portfolio_margin": block}, path) == pytest.approx(
            expected, abs=case["tolerance"])


@pytest.mark.parametrize("case", load_vectors("portfolio_margin.json")["cases"],
                         ids=lambda c: c["name"])
def test_block_shape_and_consistency(case):
    block = pm(case["request"])
    assert list(block) == BLOCK_KEYS
    assert block["requirement"] == max(block["regulatory_requirement"],
                                       block["house_requirement"])
    assert block["house_components"] == {} and block["house_requirement"] == 0.0
    for g in block["product_groups"]:
        assert list(g) == PG_KEYS
        assert g["requirement"] == max(g["worst_loss"], g["minimum_charge"])
        assert g["worst_loss"] >= 0.0
    for g in block["class_groups"]:
        assert list(g) == CG_KEYS
        assert len(g["points"]) == len(g["pnl"])
        assert g["worst_loss"] == pytest.approx(max(0.0, -min(g["pnl"])))
    assert block["regulatory_requirement"] == pytest.approx(
        sum(g["requirement"] for g in block["product_groups"]))
    assert block["minimum_charge"] == pytest.approx(
        sum(g["minimum_charge"] for g in block["product_groups"]))
    assert list(block["driver"]) == ["product_group", "point"]


def test_no_positions_no_block():
    portfolio = to_portfolio(request({"X": {"price": 1, "product_class": "equity"}}, []))
    assert calculate_block(portfolio, PARAMS, value_positions(portfolio, PARAMS, True)) is None


# --------------------------------------------------------------------------- netting


def test_product_group_nets_losses_in_full_and_gains_at_the_offset():
    req = request({"A": {"price": 100, "product_class": "equity", "product_group": "G"},
                   "B": {"price": 50, "product_class": "equity", "product_group": "G"}},
                  [{"kind": "stock", "symbol": "A", "quantity": 300},
                   {"kind": "stock", "symbol": "B", "quantity": -200}], offsets={"G": 0.6})
    block = pm(req)
    a, b = (np.array(g["pnl"]) for g in block["class_groups"])
    net = np.minimum(a, 0) + np.minimum(b, 0) + 0.6 * (np.maximum(a, 0) + np.maximum(b, 0))
    (g,) = block["product_groups"]
    assert g["class_groups"] == ["A", "B"] and g["offset"] == 0.6
    assert np.allclose(g["pnl"], net)
    assert g["worst_loss"] == pytest.approx(-net.min())


def test_default_offsets_by_product_class_and_unknown_group_zero():
    req = request({"SPX": {"price": 5000, "product_class": "broad_index_high_cap"},
                   "X": {"price": 10, "product_class": "equity"}},
                  [{"kind": "stock", "symbol": "SPX", "quantity": 1},
                   {"kind": "stock", "symbol": "X", "quantity": 1}])
    offsets = {g["product_group"]: g["offset"] for g in pm(req)["product_groups"]}
    assert offsets == {"SPX": 0.9, "X": 0.0}


def test_index_option_hedged_by_etf_in_its_class_group():
    """An ETF in an index's class group moves by the index's percentage."""
    unds = {"SPX": {"price": 5000, "product_class": "broad_index_high_cap",
                    "dividend_yield": 0.015},
            "SPY": {"price": 500, "product_class": "broad_index_high_cap", "type": "etf",
                    "class_group": "SPX"}}
    put = {"kind": "option", "underlying": "SPX", "right": "put", "strike": 4800,
           "time_to_expiry": 0.25, "quantity": 2, "implied_vol": 0.2}
    etf = {"kind": "stock", "symbol": "SPY", "quantity": 1000}
    block = pm(request(unds, [put, etf]))
    (cg,) = block["class_groups"]
    pts = np.array(cg["points"])
    value = pricing.option_value(pricing.EUROPEAN, 5000 * (1 + pts), 4800, 0.25, 0.0, 0.015,
                                 0.2, False)
    mark = float(pricing.option_value(pricing.EUROPEAN, 5000, 4800, 0.25, 0.0, 0.015, 0.2,
                                      False))
    expected = 200 * (value - mark) + 1000 * 500 * pts
    assert np.allclose(cg["pnl"], expected)
    alone = pm(request(unds, [etf]))["regulatory_requirement"]
    assert block["regulatory_requirement"] < alone


def test_each_option_keeps_its_own_implied_vol():
    unds = {"X": {"price": 100, "product_class": "equity"}}
    legs = [{"kind": "option", "underlying": "X", "right": "call", "strike": 100,
             "time_to_expiry": 0.5, "quantity": 1, "implied_vol": 0.2},
            {"kind": "option", "underlying": "X", "right": "call", "strike": 110,
             "time_to_expiry": 0.5, "quantity": -1, "implied_vol": 0.35}]
    (cg,) = pm(request(unds, legs))["class_groups"]
    pts = np.array(cg["points"])
    expected = 0.0
    for leg, sign in ((legs[0], 1), (legs[1], -1)):
        args = (pricing.AMERICAN, 100 * (1 + pts), leg["strike"], 0.5, 0.0, 0.0,
                leg["implied_vol"], True)
        mark = pricing.option_value(pricing.AMERICAN, 100, leg["strike"], 0.5, 0.0, 0.0,
                                    leg["implied_vol"], True)
        expected = expected + sign * 100 * (pricing.option_value(*args) - mark)
    assert np.allclose(cg["pnl"], expected)


def test_pnl_is_against_the_mark_not_the_model_value():
    unds = {"X": {"price": 100, "product_class": "equity"}}
    leg = {"kind": "option", "underlying": "X", "right": "call", "strike": 100,
           "time_to_expiry": 0.5, "quantity": 1, "implied_vol": 0.2, "price": 7.0}
    (cg,) = pm(request(unds, [leg]))["class_groups"]
    pts = np.array(cg["points"])
    value = pricing.option_value(pricing.AMERICAN, 100 * (1 + pts), 100, 0.5, 0.0, 0.0, 0.2,
                                 True)
    assert np.allclose(cg["pnl"], 100 * (value - 7.0))


# --------------------------------------------------------------------------- minimum charge


def _opt(right, strike, qty, iv=0.2, t=0.1, **kw):
    return {"kind": "option", "underlying": "X", "right": right, "strike": strike,
            "time_to_expiry": t, "quantity": qty, "implied_vol": iv, **kw}


def test_minimum_per_contract_long_or_short_and_the_long_cap():
    unds = {"X": {"price": 100, "product_class": "equity"}}
    mpc = PARAMS.portfolio_margin.minimum_per_contract
    short = pm(request(unds, [_opt("call", 150, -4)]))
    assert short["minimum_charge"] == pytest.approx(4 * 100 * mpc)
    # a far out-of-the-money long worth less than the minimum: capped at its market value
    portfolio = to_portfolio(request(unds, [_opt("call", 130, 4)]))
    val = value_positions(portfolio, PARAMS, True)
    assert 0 < val.rows[0]["market_value"] < 4 * 100 * mpc
    block = calculate_block(portfolio, PARAMS, val)
    assert block["minimum_charge"] == pytest.approx(val.rows[0]["market_value"])
    assert block["regulatory_requirement"] <= val.rows[0]["market_value"] + 1e-9
    # a long worth more than the minimum pays the full minimum
    atm = pm(request(unds, [_opt("call", 100, 4)]))
    assert atm["minimum_charge"] == pytest.approx(4 * 100 * mpc)


def test_minimum_nets_holdings_of_one_contract_and_skips_stock():
    unds = {"X": {"price": 100, "product_class": "equity"}}
    block = pm(request(unds, [_opt("put", 90, 3), _opt("put", 90, -3),
                              {"kind": "stock", "symbol": "X", "quantity": 100}]))
    assert block["minimum_charge"] == 0.0
    assert block["regulatory_requirement"] == pytest.approx(1500.0)


def test_security_futures_carry_the_minimum_index_futures_do_not():
    mpc = PARAMS.portfolio_margin.minimum_per_contract
    unds = {"X": {"price": 100, "product_class": "equity"},
            "ES": {"price": 5000, "product_class": "future"}}
    fut = [{"kind": "future", "underlying": "X", "expiry": "2026-03-20", "quantity": -2,
            "multiplier": 100, "price": 101},
           {"kind": "future", "underlying": "ES", "expiry": "2026-03-20", "quantity": 1,
            "multiplier": 50, "price": 5010}]
    block = pm(request(unds, fut))
    cgs = {g["class_group"]: g for g in block["class_groups"]}
    assert cgs["X"]["minimum_charge"] == pytest.approx(2 * 100 * mpc)
    assert cgs["ES"]["minimum_charge"] == 0.0
    # futures move linearly from their own price
    assert np.allclose(cgs["ES"]["pnl"], 50 * 5010 * np.array(cgs["ES"]["points"]))
    assert np.allclose(cgs["X"]["pnl"], -200 * 101 * np.array(cgs["X"]["points"]))


def test_minimum_binds_when_larger_than_the_worst_loss():
    case = next(c for c in load_vectors("portfolio_margin.json")["cases"]
                if "minimum" in c["name"])
    block = pm(case["request"])
    (g,) = block["product_groups"]
    assert g["minimum_charge"] > g["worst_loss"]
    assert g["requirement"] == g["minimum_charge"] == block["minimum_charge"]


# --------------------------------------------------------------------------- driver and ties


def test_driver_is_the_largest_product_group_and_its_worst_point():
    req = request({"A": {"price": 100, "product_class": "equity"},
                   "B": {"price": 100, "product_class": "equity"}},
                  [{"kind": "stock", "symbol": "A", "quantity": 100},
                   {"kind": "stock", "symbol": "B", "quantity": -300}])
    assert pm(req)["driver"] == {"product_group": "B", "point": 0.15}


def test_driver_ties_go_to_the_first_listed():
    # equal requirements: the first product group; a symmetric loss: the first point
    req = request({"A": {"price": 100, "product_class": "equity", "product_group": "G"},
                   "B": {"price": 100, "product_class": "equity", "product_group": "G"},
                   "C": {"price": 50, "product_class": "equity"}},
                  [{"kind": "stock", "symbol": "A", "quantity": 100},
                   {"kind": "stock", "symbol": "B", "quantity": -100},
                   {"kind": "stock", "symbol": "C", "quantity": 200}], offsets={"G": 0.0})
    block = pm(req)
    g = block["product_groups"][0]
    assert g["pnl"][0] == g["pnl"][-1] == -1500.0
    assert block["product_groups"][1]["requirement"] == g["requirement"] == 1500.0
    assert block["driver"] == {"product_group": "G", "point": -0.15}
    # an all-zero book ties everywhere: the first point
    flat = request({"X": {"price": 100, "product_class": "equity"}},
                   [{"kind": "stock", "symbol": "X", "quantity": 0}])
    assert pm(flat)["driver"] == {"product_group": "X", "point": -0.15}


def test_groups_are_listed_by_first_appearance():
    req = request({"A": {"price": 10, "product_class": "equity", "product_group": "G2"},
                   "B": {"price": 10, "product_class": "equity", "product_group": "G1"},
                   "C": {"price": 10, "product_class": "equity", "product_group": "G2"}},
                  [{"kind": "stock", "symbol": s, "quantity": 1} for s in ("B", "C", "A")])
    block = pm(req)
    assert [g["product_group"] for g in block["product_groups"]] == ["G1", "G2"]
    assert [g["class_groups"] for g in block["product_groups"]] == [["B"], ["C", "A"]]
    assert [g["class_group"] for g in block["class_groups"]] == ["B", "C", "A"]


# --------------------------------------------------------------------------- Cboe IBM shape


def ibm_request(with_call: bool = True) -> dict[str, Any]:
    """CALCULATOR.md's example: 10,000 IBM long and 100 short Apr 100 calls (Cboe 2007)."""
    positions = [{"id": "stk", "kind": "stock", "symbol": "IBM", "quantity": 10000}]
    if with_call:
        positions.append({"id": "c100", "kind": "option", "underlying": "IBM", "right": "call",
                          "strike": 100, "expiry": "2007-04-20", "quantity": -100,
                          "price": 1.68})
    return {"valuation_date": "2007-02-23", "rate": 0.0525,
            "underlyings": {"IBM": {"price": 97.73, "product_class": "equity"}},
            "positions": positions, "methods": ["portfolio_margin", "reg_t"]}


def test_cboe_ibm_covered_call_shape():
    req = ibm_request()
    portfolio = to_portfolio(req)
    val = value_positions(portfolio, PARAMS, True)
    block = calculate_block(portfolio, PARAMS, val)
    assert list(block) == BLOCK_KEYS
    (pg,) = block["product_groups"]
    (cg,) = block["class_groups"]
    assert pg["product_group"] == cg["class_group"] == "IBM" and pg["offset"] == 0.0
    assert tuple(cg["points"]) == PARAMS.portfolio_margin.points["equity"]
    mpc = PARAMS.portfolio_margin.minimum_per_contract
    assert block["minimum_charge"] == pytest.approx(100 * 100 * mpc)
    assert block["driver"] == {"product_group": "IBM", "point": -0.15}
    # the loss at -15 %: the stock's, less what the short call gains (American, own vol)
    iv = val.rows[1]["implied_vol"]
    t = (date(2007, 4, 20) - date(2007, 2, 23)).days / 365
    call_down = float(pricing.option_value(pricing.AMERICAN, 97.73 * 0.85, 100, t, 0.0525,
                                           0.0, iv, True))
    expected = 10000 * 97.73 * 0.15 - 10000 * (1.68 - call_down)
    assert block["regulatory_requirement"] == pytest.approx(expected, rel=1e-9)
    assert block["requirement"] == block["regulatory_requirement"]
    # the call's premium is the most it can take off the stock's requirement
    stock_alone = pm(ibm_request(with_call=False))["regulatory_requirement"]
    assert stock_alone - 10000 * 1.68 < block["regulatory_requirement"] < stock_alone


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("group", "code"), [("class_group", "mixed_product_classes"),
                                             ("product_group", "mixed_grids")])
def test_a_group_mixing_product_classes_is_an_error(group, code):
    # a class group holds one product class; a product group one grid of points
    req = request({"A": {"price": 10, "product_class": "equity", group: "G"},
                   "B": {"price": 10, "product_class": "broad_index", group: "G"}},
                  [{"kind": "stock", "symbol": "A", "quantity": 1},
                   {"kind": "stock", "symbol": "B", "quantity": 1}])
    with pytest.raises(EngineInputError) as e:
        pm(req)
    assert e.value.code == code
    assert e.value.field == f"underlyings.B.{group}"


def test_index_future_follows_its_index_class_group():
    unds = {"SPX": {"price": 5000, "product_class": "broad_index_high_cap"},
            "ES": {"price": 5000, "product_class": "future", "class_group": "SPX"}}
    block = pm(request(unds, [
        {"kind": "stock", "symbol": "SPX", "quantity": 50},
        {"kind": "future", "underlying": "ES", "expiry": "2026-03-20", "quantity": -1,
         "multiplier": 50, "price": 5000}]))
    (cg,) = block["class_groups"]
    assert tuple(cg["points"]) == PARAMS.portfolio_margin.points["broad_index_high_cap"]
    assert block["regulatory_requirement"] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- crypto and LP


def test_crypto_and_perpetual_on_the_crypto_grid_own_product_groups():
    unds = {"BTC": {"price": 60000, "product_class": "crypto"},
            "ETH": {"price": 3000, "product_class": "crypto"},
            "USDC": {"price": 1, "product_class": "stablecoin"}}
    block = pm(request(unds, [
        {"kind": "crypto", "symbol": "BTC", "quantity": 1},
        {"kind": "perpetual", "symbol": "ETH", "quantity": -10, "entry_price": 2900},
        {"kind": "crypto", "symbol": "USDC", "quantity": 10000}]))
    cgs = {g["class_group"]: g for g in block["class_groups"]}
    assert tuple(cgs["BTC"]["points"]) == PARAMS.portfolio_margin.points["crypto"]
    assert tuple(cgs["USDC"]["points"]) == PARAMS.portfolio_margin.points["stablecoin"]
    assert len(block["product_groups"]) == 3
    assert cgs["BTC"]["worst_loss"] == pytest.approx(60000 * 0.66)
    assert cgs["ETH"]["worst_loss"] == pytest.approx(30000 * 1.0)  # short perp, +100 %
    assert cgs["USDC"]["worst_loss"] == pytest.approx(2000.0)
    assert block["regulatory_requirement"] == pytest.approx(39600 + 30000 + 2000)
    assert block["driver"] == {"product_group": "BTC", "point": -0.66}


def weth_usdc_lp(tick: int = 80000) -> tuple[dict[str, Any], dict[str, Any]]:
    """Underlyings and a WETH/USDC LP position 4,000 ticks either side of `tick`, the pool's
    price (WETH in USDC: 1.0001^tick, scaled by the decimals' difference)."""
    price = 1.0001 ** tick * 10**12
    unds = {"WETH": {"price": price, "product_class": "crypto"},
            "USDC": {"price": 1, "product_class": "stablecoin"}}
    lp = {"kind": "uniswap_v3_lp", "token0": "WETH", "token1": "USDC", "decimals0": 18,
          "decimals1": 6, "liquidity": 10**15, "tick_lower": tick - 4000,
          "tick_upper": tick + 4000}
    return unds, lp


def test_lp_pnl_is_added_into_its_class_group():
    from margin.engine.defi import uniswap_v3

    unds, lp = weth_usdc_lp()
    price = unds["WETH"]["price"]
    hedge = {"kind": "crypto", "symbol": "WETH", "quantity": -0.5}
    req = request(unds, [lp, hedge])
    portfolio = to_portfolio(req)
    block = pm(req)
    (cg,) = block["class_groups"]
    assert cg["class_group"] == "WETH"
    _, _, lp_pnl = uniswap_v3.lp_scenario_pnl(portfolio, portfolio.positions[0], PARAMS)
    pts = np.array(cg["points"])
    assert np.allclose(cg["pnl"], lp_pnl - 0.5 * price * pts)
    assert cg["minimum_charge"] == 0.0


# --------------------------------------------------------------------------- batch structure


@pytest.fixture(scope="module")
def small_book():
    sb = bench.make_book(seed=7, n_accounts=400, n_positions=8000, n_series=2000,
                         n_underlyings=200)
    st = build_structure(sb.book, sb.series.class_group, sb.groups.product_group)
    pnl = series_pnl(sb.series, sb.groups, bench.RATE)
    return sb, st, pnl


def test_numba_kernel_agrees_with_the_numpy_reference(small_book):
    sb, st, pnl = small_book
    ref = aggregate_numpy(st, sb.groups, sb.series, pnl)
    fast = aggregate_numba(st, sb.groups, sb.series, pnl)
    assert np.allclose(fast.account_requirement, ref.account_requirement, rtol=1e-12, atol=1e-6)
    assert np.allclose(fast.account_minimum, ref.account_minimum, rtol=1e-12, atol=1e-6)
    assert np.array_equal(fast.driver_pgrow, ref.driver_pgrow)
    assert np.array_equal(fast.driver_point, ref.driver_point)
    assert ref.account_requirement.sum() > 0


def test_numba_and_numpy_pricing_paths_give_the_same_risk_arrays(small_book, monkeypatch):
    sb, st, pnl = small_book
    # numba is a dependency: without it this is a broken install, not a machine lacking X.
    assert pricing.USE_NUMBA, "numba pricing kernels unavailable"
    monkeypatch.setattr(pricing, "USE_NUMBA", False)
    ref = series_pnl(sb.series, sb.groups, bench.RATE)
    assert np.allclose(pnl, ref, rtol=1e-9, atol=1e-9)


def test_batch_equals_single_account_calculate_block(small_book):
    sb, st, pnl = small_book
    batch = aggregate_numpy(st, sb.groups, sb.series, pnl)
    for account in range(0, 400, 13):
        ser, units = bench.account_holdings(sb, account)
        portfolio = bench.account_portfolio(sb, ser, units)
        block = calculate_block(portfolio, PARAMS, value_positions(portfolio, PARAMS, True))
        assert block["regulatory_requirement"] == pytest.approx(
            batch.account_requirement[account], rel=1e-9, abs=1e-6)
        assert block["minimum_charge"] == pytest.approx(batch.account_minimum[account],
                                                        rel=1e-9, abs=1e-6)
        k = batch.driver_pgrow[account]
        assert block["driver"]["product_group"] == sb.groups.pg_names[st.pgrow_pg[k]]
        assert bench.one_account_batch(sb, ser, units) == pytest.approx(
            batch.account_requirement[account], rel=1e-9, abs=1e-6)


def test_structure_rows_are_account_then_class_group(small_book):
    sb, st, _ = small_book
    key = st.row_account * len(sb.groups.names) + st.row_cg
    assert np.all(np.diff(key) > 0)
    assert np.all(np.diff(st.pgrow_account * 10**6 + st.pgrow_pg) > 0)
    # S nets every account's holdings of one contract
    assert st.S.nnz == len({(int(a), int(s)) for a, s in zip(sb.book.account, sb.book.series,
                                                              strict=True)})
    assert st.S.sum() == pytest.approx(sb.book.units.sum())
