"""Strategy-based (Reg T) margin: margin/engine/regt.py.

Expected numbers come from the reference vectors (loaded, never copied) or are derived here from
the parameter set's ``reg_t`` percentages, so a parameter change moves both sides together.
Run without Django: ``pytest tests/engine/test_regt.py -p no:django -q``.
"""

from __future__ import annotations

import math
import time
from datetime import date, timedelta
from itertools import combinations
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.engine import regt
from margin.engine.errors import EngineInputError
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import LPPosition, Portfolio, Position, Underlying
from tests.vectors import dig, load_vectors

PARAMS = load_parameter_set()
R = PARAMS.as_mapping()["reg_t"]  # the published numbers, as stored
VD = "2026-01-02"
DEFAULT_TYPES = {"equity": "stock", "narrow_index": "index", "broad_index_high_cap": "index",
                 "broad_index": "index", "future": "future", "crypto": "token",
                 "stablecoin": "token"}


# ------------------------------------------------------------------------------------------
# A minimal request -> Portfolio converter (the calculator's parser is not used here)
# ------------------------------------------------------------------------------------------

def to_portfolio(request: dict[str, Any]) -> tuple[Portfolio, SimpleNamespace]:
    """CALCULATOR.md request -> (Portfolio, stand-in valuation with ``.marks``)."""
    vdate = date.fromisoformat(request["valuation_date"])
    unds = {}
    for sym, u in request["underlyings"].items():
        pc = u["product_class"]
        unds[sym] = Underlying(symbol=sym, price=float(u["price"]), product_class=pc,
                               type=u.get("type", DEFAULT_TYPES[pc]), class_group=sym,
                               product_group=sym, leverage=float(u.get("leverage", 1.0)))
    positions, marks = [], []
    for i, p in enumerate(request["positions"]):
        kind = p["kind"]
        kw: dict[str, Any] = {"index": i, "id": p.get("id", f"#{i}"), "kind": kind,
                              "quantity": float(p.get("quantity", 0.0))}
        mark = 0.0
        if kind in ("stock", "crypto", "perpetual"):
            kw["symbol"] = p["symbol"]
            mark = unds[p["symbol"]].price
            if kind == "perpetual":
                kw["entry_price"] = float(p.get("entry_price", mark))
        elif kind in ("option", "future_option", "future"):
            und = unds[p["underlying"]]
            expiry = date.fromisoformat(p["expiry"]) if "expiry" in p else None
            years = (expiry - vdate).days / 365 if expiry else p.get("time_to_expiry")
            kw.update(underlying=p["underlying"], expiry=expiry, time_to_expiry=years,
                      multiplier=float(p.get("multiplier", 100.0)))
            if kind == "future":
                mark = float(p.get("price", und.price))
            else:
                european = und.type in ("index", "token")
                kw.update(right=p["right"], strike=float(p["strike"]),
                          exercise=p.get("exercise", "european" if european else "american"),
                          price=p.get("price"))
                mark = float(p["price"])
        elif kind == "uniswap_v3_lp":
            kw["lp"] = LPPosition(token0=p["token0"], token1=p["token1"], decimals0=18,
                                  decimals1=6, liquidity=10**12, tick_lower=-600,
                                  tick_upper=600)
        positions.append(Position(**kw))
        marks.append(mark)
    portfolio = Portfolio(valuation_date=vdate, underlyings=unds, positions=tuple(positions))
    return portfolio, SimpleNamespace(marks=np.asarray(marks, dtype=float))


def reg_t(positions: list[dict], price: float = 100.0, product_class: str = "equity",
          params: dict | None = None, **und: Any) -> dict:
    request = {"valuation_date": VD,
               "underlyings": {"X": {"price": price, "product_class": product_class, **und}},
               "positions": positions}
    portfolio, valuation = to_portfolio(request)
    return regt.calculate_block(portfolio, params or PARAMS, valuation)


def opt(pid: str, right: str, strike: float, qty: float, price: float, days: int = 49,
        **kw: Any) -> dict:
    expiry = (date.fromisoformat(VD) + timedelta(days=days)).isoformat()
    return {"id": pid, "kind": "option", "underlying": kw.pop("underlying", "X"), "right": right,
            "strike": strike, "expiry": expiry, "quantity": qty, "price": price, **kw}


def stock(pid: str, qty: float, symbol: str = "X") -> dict:
    return {"id": pid, "kind": "stock", "symbol": symbol, "quantity": qty}


def names(block: dict) -> list[str]:
    return [s["strategy"] for s in block["strategies"]]


def rates(product_class: str = "equity", leverage: float = 1.0) -> regt.Rates:
    und = Underlying("X", 100.0, product_class, DEFAULT_TYPES[product_class], "X", "X",
                     leverage=leverage)
    return regt.rates_for(PARAMS, und)


def excess(right: str, strike: float, spot: float, pct: float = R["uncovered_equity"],
           minimum: float = R["uncovered_minimum"], m: float = 100.0) -> float:
    """The uncovered formula written out independently of the module."""
    otm = max(strike - spot, 0.0) if right == "call" else max(spot - strike, 0.0)
    base = spot if right == "call" else strike
    return m * max(pct * spot - otm, minimum * base)


# ------------------------------------------------------------------------------------------
# Reference vectors
# ------------------------------------------------------------------------------------------

CASES = load_vectors("regt.json")["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reference_vectors(case: dict) -> None:
    portfolio, valuation = to_portfolio(case["request"])
    block = regt.calculate_block(portfolio, PARAMS, valuation)
    for path, expected in case["expect"].items():
        assert dig({"reg_t": block}, path) == pytest.approx(expected, abs=case["tolerance"])


def test_block_shape_and_keys() -> None:
    block = reg_t([stock("s", 100), opt("c", "call", 105, -1, 2.0)])
    assert list(block) == ["initial", "maintenance", "minimum_equity", "strategies", "excluded"]
    assert block["minimum_equity"] == R["minimum_equity"]
    for s in block["strategies"]:
        assert list(s) == ["strategy", "positions", "initial", "maintenance"]
        assert all(isinstance(s[k], float) for k in ("initial", "maintenance"))
    assert block["initial"] == pytest.approx(sum(s["initial"] for s in block["strategies"]))
    assert block["maintenance"] == pytest.approx(
        sum(s["maintenance"] for s in block["strategies"]))


def test_minimum_equity_is_a_parameter_and_never_added() -> None:
    params = PARAMS.with_overrides({"reg_t": {"minimum_equity": 25000.0}})
    a = reg_t([stock("s", 10)], params=params)
    b = reg_t([stock("s", 10)])
    assert a["minimum_equity"] == 25000.0
    assert (a["initial"], a["maintenance"]) == (b["initial"], b["maintenance"])


# ------------------------------------------------------------------------------------------
# Stock and single options
# ------------------------------------------------------------------------------------------

def test_long_and_short_stock() -> None:
    b = reg_t([stock("s", 300)], price=40.0)
    assert names(b) == ["long_stock"]
    assert b["initial"] == pytest.approx(R["long_stock_initial"] * 40 * 300)
    assert b["maintenance"] == pytest.approx(R["long_stock_maintenance"] * 40 * 300)
    b = reg_t([stock("s", -300)], price=40.0)
    assert names(b) == ["short_stock"]
    assert b["initial"] == pytest.approx(R["short_stock_initial"] * 40 * 300)


@pytest.mark.parametrize("price", [3.0, 4.99, 5.0, 12.0, 16.0, 80.0])
def test_short_stock_maintenance_regimes(price: float) -> None:
    b = reg_t([stock("s", -1000)], price=price)
    if price < R["short_stock_low_price"]:
        per = max(R["short_stock_low_price_maintenance"] * price,
                  R["short_stock_low_price_per_share"])
    else:
        per = max(R["short_stock_maintenance"] * price, R["short_stock_maintenance_per_share"])
    assert b["maintenance"] == pytest.approx(per * 1000)


def test_long_option_paid_in_full_and_nine_month_rule() -> None:
    months = R["long_option_loan_months"]
    v = date.fromisoformat(VD)
    edge = regt.add_months(v, months)
    within = reg_t([opt("c", "call", 100, 2, 5.0, days=(edge - v).days)])
    beyond = reg_t([opt("c", "call", 100, 2, 5.0, days=(edge - v).days + 1)])
    assert names(within) == ["long_call"]
    assert within["initial"] == pytest.approx(1000.0)
    assert within["maintenance"] == pytest.approx(1000.0)
    loan = 1 - R["long_option_loan_value"]
    assert beyond["initial"] == pytest.approx(loan * 1000.0)
    assert beyond["maintenance"] == pytest.approx(loan * 1000.0)


def test_nine_months_are_calendar_months_not_days() -> None:
    assert regt.add_months(date(2026, 5, 31), 9) == date(2027, 2, 28)
    assert regt.add_months(date(2027, 5, 31), 9) == date(2028, 2, 29)
    p = Position(index=0, id="c", kind="option", quantity=1, underlying="X", right="call",
                 strike=100, expiry=date(2027, 3, 1), time_to_expiry=0.7)
    assert regt.is_long_dated(p, date(2026, 5, 31), 9)       # date decides, not t
    q = Position(index=0, id="c", kind="option", quantity=1, underlying="X", right="call",
                 strike=100, expiry=None, time_to_expiry=0.76)
    assert regt.is_long_dated(q, date(2026, 5, 31), 9)
    q2 = Position(index=0, id="c", kind="option", quantity=1, underlying="X", right="call",
                  strike=100, expiry=None, time_to_expiry=0.75)
    assert not regt.is_long_dated(q2, date(2026, 5, 31), 9)


def test_time_to_expiry_without_a_date() -> None:
    pos = {"id": "c", "kind": "option", "underlying": "X", "right": "call", "strike": 100,
           "time_to_expiry": 1.5, "quantity": 1, "price": 12.0}
    b = reg_t([pos])
    assert b["initial"] == pytest.approx((1 - R["long_option_loan_value"]) * 1200)


@pytest.mark.parametrize("right,strike,spot", [("call", 110, 100), ("call", 95, 100),
                                               ("put", 90, 100), ("put", 104, 100),
                                               ("call", 150, 100), ("put", 60, 100)])
def test_uncovered_short(right: str, strike: float, spot: float) -> None:
    b = reg_t([opt("s", right, strike, -3, 2.5)], price=spot)
    assert names(b) == [f"uncovered_{right}"]
    x = excess(right, strike, spot)
    assert b["initial"] == pytest.approx(3 * x)          # requirement less premium received
    assert b["maintenance"] == pytest.approx(3 * x)      # NLV already carries the option
    assert regt.uncovered_margin(right, strike, spot, 2.5, 100, rates()) == pytest.approx(
        250 + x)


def test_broad_index_and_leverage_scale_the_percentages() -> None:
    b = reg_t([opt("s", "put", 4000, -1, 20.0)], price=4200, product_class="broad_index")
    assert b["initial"] == pytest.approx(excess("put", 4000, 4200, R["uncovered_broad_index"]))
    lev = 3.0
    b = reg_t([opt("s", "call", 60, -1, 1.0)], price=55, leverage=lev)
    assert b["initial"] == pytest.approx(
        excess("call", 60, 55, R["uncovered_equity"] * lev, R["uncovered_minimum"] * lev))
    b = reg_t([stock("s", 100)], price=55, leverage=lev)
    assert b["maintenance"] == pytest.approx(min(1.0, R["long_stock_maintenance"] * lev) * 5500)
    assert b["initial"] >= b["maintenance"]


# ------------------------------------------------------------------------------------------
# Multi-leg strategies
# ------------------------------------------------------------------------------------------

def test_short_straddle_greater_side_plus_other_premium() -> None:
    b = reg_t([opt("c", "call", 100, -2, 4.0), opt("p", "put", 100, -2, 3.0)], price=101)
    assert names(b) == ["short_straddle"]
    xc, xp = excess("call", 100, 101), excess("put", 100, 101)
    greater = xc if xc + 400 >= xp + 300 else xp
    assert b["initial"] == pytest.approx(2 * greater)
    b = reg_t([opt("c", "call", 110, -1, 1.0), opt("p", "put", 90, -1, 1.5)])
    assert names(b) == ["short_strangle"]


def test_straddle_needs_one_expiry() -> None:
    b = reg_t([opt("c", "call", 100, -1, 4.0), opt("p", "put", 100, -1, 3.0, days=80)])
    assert sorted(names(b)) == ["uncovered_call", "uncovered_put"]


def test_vertical_credit_and_debit_spreads() -> None:
    credit = reg_t([opt("s", "put", 100, -2, 4.0), opt("l", "put", 95, 2, 2.5)])
    assert names(credit) == ["put_credit_spread"]
    assert credit["initial"] == pytest.approx(2 * (500 - 150))       # width less net credit
    assert credit["maintenance"] == pytest.approx(2 * (500 - 150))   # max loss on the marks
    debit = reg_t([opt("l", "call", 100, 1, 5.0), opt("s", "call", 110, -1, 2.0)])
    assert names(debit) == ["call_debit_spread"]
    assert debit["initial"] == pytest.approx(300.0)
    assert debit["maintenance"] == pytest.approx(300.0)
    assert debit["strategies"][0]["positions"] == ["l", "s"]


def test_spread_is_never_worse_than_uncovered() -> None:
    # a very wide credit spread: the uncovered short plus a paid long is cheaper
    b = reg_t([opt("s", "call", 100, -1, 3.0), opt("l", "call", 400, 1, 0.05)])
    alone = excess("call", 100, 100) + 5.0
    assert b["initial"] == pytest.approx(min(alone, 30000 + 5 - 300))


def test_calendar_and_diagonal() -> None:
    cal = reg_t([opt("s", "call", 100, -1, 3.0, days=30), opt("l", "call", 100, 1, 5.0, days=90)])
    assert names(cal) == ["calendar_spread"]
    assert cal["initial"] == pytest.approx(200.0)
    # the short expiring after the long: uncovered short plus a paid long
    rev = reg_t([opt("s", "call", 100, -1, 5.0, days=90), opt("l", "call", 100, 1, 3.0, days=30)])
    assert sorted(names(rev)) == ["long_call", "uncovered_call"]
    assert rev["initial"] == pytest.approx(excess("call", 100, 100) + 300)
    diag = reg_t([opt("s", "put", 100, -1, 4.0, days=30), opt("l", "put", 95, 1, 4.5, days=90)])
    assert names(diag) == ["diagonal_spread"]
    assert diag["initial"] == pytest.approx(500 + 450 - 400)


def test_long_dated_option_in_a_spread_is_paid_in_full() -> None:
    b = reg_t([opt("s", "call", 100, -1, 10.0, days=400), opt("l", "call", 95, 1, 14.0, days=400)])
    assert names(b) == ["call_debit_spread"]
    assert b["initial"] == pytest.approx(400.0)


def test_iron_condor_wider_side() -> None:
    legs = [opt("lp", "put", 85, 1, 0.5), opt("sp", "put", 90, -1, 1.2),
            opt("sc", "call", 110, -1, 1.1), opt("lc", "call", 120, 1, 0.3)]
    b = reg_t(legs)
    assert names(b) == ["iron_condor"]
    assert b["initial"] == pytest.approx(1000 + 50 + 30 - 120 - 110)
    assert b["strategies"][0]["positions"] == ["lp", "sp", "sc", "lc"]
    fly = reg_t([opt("lp", "put", 90, 1, 0.5), opt("sp", "put", 100, -1, 3.0),
                 opt("sc", "call", 100, -1, 3.2), opt("lc", "call", 110, 1, 0.6)])
    assert names(fly) == ["iron_butterfly"]
    assert fly["initial"] == pytest.approx(1000 + 50 + 60 - 300 - 320)


def test_balanced_butterfly_and_condor_pay_the_debit() -> None:
    fly = reg_t([opt("a", "call", 90, 2, 11.0), opt("b", "call", 100, -4, 4.0),
                 opt("c", "call", 110, 2, 1.0)])
    assert names(fly) == ["call_butterfly"]
    assert fly["initial"] == pytest.approx(2 * (1100 + 100 - 800))
    condor = reg_t([opt("a", "put", 85, 1, 0.4), opt("b", "put", 90, -1, 1.0),
                    opt("c", "put", 100, -1, 4.0), opt("d", "put", 105, 1, 6.5)])
    assert names(condor) == ["put_condor"]
    assert condor["initial"] == pytest.approx(40 + 650 - 100 - 400)
    # unbalanced wings are not a butterfly: two verticals
    broken = reg_t([opt("a", "call", 90, 1, 11.0), opt("b", "call", 100, -2, 4.0),
                    opt("c", "call", 115, 1, 0.5)])
    assert "call_butterfly" not in names(broken)
    assert broken["initial"] == pytest.approx(1500 + 1100 + 50 - 800)


def test_butterfly_body_parity() -> None:
    # three bodies: one butterfly, the third short in a spread against the remaining wing
    b = reg_t([opt("a", "call", 90, 1, 11.0), opt("b", "call", 100, -3, 4.0),
               opt("c", "call", 110, 2, 1.0)])
    assert names(b).count("call_butterfly") == 1
    assert b["initial"] == pytest.approx((1100 + 100 - 800) + (1000 + 100 - 400))


def test_covered_call_stock_valued_at_no_more_than_strike() -> None:
    b = reg_t([stock("s", 300), opt("c", "call", 95, -3, 7.0)], price=100)
    assert names(b) == ["covered_call"]
    assert b["initial"] == pytest.approx(R["long_stock_initial"] * 30000 - 2100)
    assert b["maintenance"] == pytest.approx(R["long_stock_maintenance"] * 95 * 300)
    otm = reg_t([stock("s", 250), opt("c", "call", 105, -2, 1.0)], price=100)
    assert sorted(names(otm)) == ["covered_call", "long_stock"]     # 50 shares left over
    assert otm["maintenance"] == pytest.approx(R["long_stock_maintenance"] * 100 * 250)


def test_covered_put_short_stock() -> None:
    b = reg_t([stock("s", -200), opt("p", "put", 105, -2, 6.0)], price=100)
    assert names(b) == ["covered_put"]
    assert b["initial"] == pytest.approx(R["short_stock_initial"] * 20000 - 1200)
    per = max(R["short_stock_maintenance"] * 105, R["short_stock_maintenance_per_share"])
    assert b["maintenance"] == pytest.approx(per * 200)


def test_protective_put_collar_and_protective_call() -> None:
    pp = reg_t([stock("s", 100), opt("p", "put", 95, 1, 2.0)])
    assert names(pp) == ["protective_put"]
    assert pp["initial"] == pytest.approx(R["long_stock_initial"] * 10000 + 200)
    assert pp["maintenance"] == pytest.approx(R["long_stock_maintenance"] * 10000 + 200)
    collar = reg_t([stock("s", 200), opt("c", "call", 110, -2, 1.5), opt("p", "put", 90, 2, 1.0)])
    assert names(collar) == ["collar"]
    assert collar["strategies"][0]["positions"] == ["s", "c", "p"]
    assert collar["initial"] == pytest.approx(R["long_stock_initial"] * 20000 - 300 + 200)
    pc = reg_t([stock("s", -100), opt("c", "call", 105, 1, 2.0)])
    assert names(pc) == ["protective_call"]
    # a long-dated put is cheaper alone (75 %) than paid in full under the stock
    leap = reg_t([stock("s", 100), opt("p", "put", 95, 1, 8.0, days=400)])
    assert sorted(names(leap)) == ["long_put", "long_stock"]


def test_option_multiplier_and_fractional_deliverable() -> None:
    b = reg_t([stock("s", 150), opt("c", "call", 105, -2, 1.0)])
    assert sorted(names(b)) == ["covered_call", "long_stock", "uncovered_call"]
    mini = reg_t([stock("s", 20), opt("c", "call", 105, -2, 1.0, multiplier=10)])
    assert names(mini) == ["covered_call"]


# ------------------------------------------------------------------------------------------
# Netting, exclusions, several underlyings
# ------------------------------------------------------------------------------------------

def test_positions_in_one_instrument_are_netted() -> None:
    b = reg_t([opt("a", "call", 100, 3, 5.0), opt("b", "call", 110, -2, 2.0),
               opt("c", "call", 100, -1, 5.0)])
    # net long 2 of the 100 calls: two debit spreads, both positions of the instrument named
    assert names(b) == ["call_debit_spread"]
    assert b["strategies"][0]["positions"] == ["a", "b", "c"]
    assert b["initial"] == pytest.approx(2 * (500 - 200))
    flat = reg_t([opt("a", "put", 95, 2, 3.0), opt("b", "put", 95, -2, 3.0), stock("s", 100),
                  stock("t", -100)])
    assert names(flat) == ["netted", "netted"]
    assert flat["initial"] == 0.0 and flat["maintenance"] == 0.0


def test_excluded_kinds() -> None:
    request = {
        "valuation_date": VD,
        "underlyings": {"X": {"price": 100, "product_class": "equity"},
                        "ES": {"price": 5000, "product_class": "future"},
                        "ETH": {"price": 3000, "product_class": "crypto"},
                        "USDC": {"price": 1, "product_class": "stablecoin"}},
        "positions": [
            {"id": "fut", "kind": "future", "underlying": "ES", "expiry": "2026-03-20",
             "quantity": 1, "multiplier": 50, "price": 5000},
            stock("s", 100),
            {"id": "fop", "kind": "future_option", "underlying": "ES", "right": "call",
             "strike": 5100, "expiry": "2026-03-20", "quantity": -1, "multiplier": 50,
             "price": 40},
            {"id": "eth", "kind": "crypto", "symbol": "ETH", "quantity": 2},
            {"id": "perp", "kind": "perpetual", "symbol": "ETH", "quantity": -1},
            {"id": "lp", "kind": "uniswap_v3_lp", "token0": "ETH", "token1": "USDC"},
            opt("ethc", "call", 3200, -1, 50.0, underlying="ETH"),
        ],
    }
    portfolio, valuation = to_portfolio(request)
    b = regt.calculate_block(portfolio, PARAMS, valuation)
    assert b["excluded"] == ["fut", "fop", "eth", "perp", "lp", "ethc"]
    assert names(b) == ["long_stock"]


def test_underlyings_are_independent() -> None:
    a = [stock("s", 100), opt("c", "call", 105, -1, 2.0)]
    b = [opt("p", "put", 95, -1, 1.5, underlying="Y"), opt("q", "put", 90, 1, 0.7, underlying="Y")]
    both = {"valuation_date": VD,
            "underlyings": {"X": {"price": 100, "product_class": "equity"},
                            "Y": {"price": 100, "product_class": "equity"}},
            "positions": a + b}
    portfolio, valuation = to_portfolio(both)
    total = regt.calculate_block(portfolio, PARAMS, valuation)
    only_y = {**both, "positions": b}
    py, vy = to_portfolio(only_y)
    assert total["initial"] == pytest.approx(
        reg_t(a)["initial"] + regt.calculate_block(py, PARAMS, vy)["initial"])
    assert names(total) == ["covered_call", "put_credit_spread"]


# ------------------------------------------------------------------------------------------
# Optimality of the pairing
# ------------------------------------------------------------------------------------------

def test_least_total_not_first_come() -> None:
    # First-come pairing would put the 100 short against the 105 long (width 500) and leave the
    # 102.5 short uncovered; the optimum swaps the covers.
    legs = [opt("s1", "call", 100, -1, 4.0), opt("l1", "call", 105, 1, 2.0),
            opt("s2", "call", 102.5, -1, 3.0), opt("l2", "call", 95, 1, 7.0)]
    b = reg_t(legs)
    greedy = (500 + 200 - 400) + (700 + excess("call", 102.5, 100))
    assert b["initial"] < greedy
    assert sorted(names(b)) == ["call_credit_spread", "call_debit_spread"]
    assert b["initial"] == pytest.approx((250 + 200 - 300) + (700 - 400))


def _units(block_legs: list[regt.Leg]) -> tuple[list[regt.Leg], regt.Leg | None]:
    return ([leg for leg in block_legs if leg.is_option],
            next((leg for leg in block_legs if leg.right == "stock"), None))


def brute_force(legs: list[regt.Leg], r: regt.Rates) -> tuple[float, float]:
    """Least (initial, then maintenance) over every partition of the book's contracts into
    recognised strategies (``regt.strategy_requirement``), stock deliverables included."""
    options, stk = _units(legs)
    units = [k for k, leg in enumerate(options) for _ in range(int(round(leg.quantity)))]
    totals: list[tuple[float, float]] = []

    def rest_of_stock(shares: float) -> tuple[float, float]:
        if stk is None or shares <= 1e-9:
            return 0.0, 0.0
        req = regt.single_requirement(stk, r, shares)
        return req.initial, req.maintenance

    def search(remaining: tuple[int, ...], shares: float, acc_i: float, acc_m: float) -> None:
        if not remaining:
            si, sm = rest_of_stock(shares)
            totals.append((acc_i + si, acc_m + sm))
            return
        head, others = remaining[0], remaining[1:]
        seen: set[tuple] = set()
        for size in range(0, min(3, len(others)) + 1):
            for pick in _combinations(len(others), size):
                group = (head, *(others[i] for i in pick))
                key = tuple(sorted(group))
                for with_stock in (False, True):
                    if (key, with_stock) in seen:
                        continue
                    seen.add((key, with_stock))
                    m = options[head].multiplier
                    if with_stock and (stk is None or shares + 1e-9 < m):
                        continue
                    counts: dict[int, int] = {}
                    for k in group:
                        counts[k] = counts.get(k, 0) + 1
                    g = [(options[k], c) for k, c in counts.items()]
                    if with_stock:
                        g.append((stk, 1))
                    found = regt.strategy_requirement(g, r)
                    if found is None:
                        continue
                    left = list(others)
                    for i in sorted(pick, reverse=True):
                        del left[i]
                    search(tuple(left), shares - (m if with_stock else 0.0),
                           acc_i + found[1].initial, acc_m + found[1].maintenance)

    search(tuple(units), stk.quantity if stk else 0.0, 0.0, 0.0)
    best_i = min(t[0] for t in totals)
    return best_i, min(t[1] for t in totals if t[0] <= best_i + 1e-6)


def _combinations(n: int, k: int):
    return combinations(range(n), k)


STRIKES = [90.0, 95.0, 100.0, 105.0, 110.0]


@st.composite
def small_books(draw) -> list[dict]:
    positions: list[dict] = []
    if draw(st.booleans()):
        positions.append(stock("stk", draw(st.sampled_from([-200, -150, -100, 100, 150, 250]))))
    n = draw(st.integers(1, 5))
    units = 0
    for k in range(n):
        right = draw(st.sampled_from(["call", "put"]))
        strike = draw(st.sampled_from(STRIKES))
        days = draw(st.sampled_from([30, 30, 60, 400]))
        qty = draw(st.integers(1, 2)) * draw(st.sampled_from([-1, 1]))
        if units + abs(qty) > 6:
            break
        units += abs(qty)
        intrinsic = max(100.0 - strike, 0.0) if right == "call" else max(strike - 100.0, 0.0)
        price = round(intrinsic + draw(st.floats(0.05, 6.0)), 2)
        positions.append(opt(f"o{k}", right, strike, qty, price, days=days))
    return positions


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_books(), st.sampled_from(["equity", "broad_index"]))
def test_pairing_is_the_exact_optimum(positions: list[dict], product_class: str) -> None:
    request = {"valuation_date": VD,
               "underlyings": {"X": {"price": 100.0, "product_class": product_class}},
               "positions": positions}
    portfolio, valuation = to_portfolio(request)
    block = regt.calculate_block(portfolio, PARAMS, valuation)
    legs_by, _, _ = regt.build_legs(portfolio, valuation.marks, PARAMS)
    if not legs_by:
        assert block["initial"] == 0.0
        return
    r = regt.rates_for(PARAMS, portfolio.underlyings["X"])
    legs = legs_by["X"]
    best_i, best_m = brute_force(legs, r)
    assert block["initial"] == pytest.approx(best_i, abs=1e-6)
    assert block["maintenance"] == pytest.approx(best_m, abs=1e-6)
    # never more than every leg on its own
    alone = [regt.single_requirement(leg, r, leg.quantity) for leg in legs]
    assert block["initial"] <= sum(a.initial for a in alone) + 1e-6
    # every position appears in a strategy
    used: dict[str, float] = {}
    for s in block["strategies"]:
        for pid in s["positions"]:
            used[pid] = used.get(pid, 0) + 1
    assert set(used) == {p["id"] for p in positions}


# Books where the LP relaxation has a fractional (half-butterfly) vertex among its optima:
# the block falls back to integrality on that underlying and must still match the exhaustive
# optimum.
HALF_BUTTERFLY_BOOKS = [
    [stock("s", -200), opt("a", "put", 95, -3, 1.11), opt("b", "put", 90, 2, 1.05),
     opt("c", "call", 100, 3, 1.93, days=60), opt("d", "put", 100, 3, 1.66)],
    [stock("s", 250), opt("a", "put", 90, 2, 3.41), opt("b", "put", 100, 3, 2.99),
     opt("c", "call", 105, -3, 5.48), opt("d", "put", 95, -2, 4.21),
     opt("e", "call", 110, 3, 3.73)],
]


@pytest.mark.parametrize("positions", HALF_BUTTERFLY_BOOKS)
def test_half_integral_vertices(positions: list[dict]) -> None:
    request = {"valuation_date": VD,
               "underlyings": {"X": {"price": 100.0, "product_class": "equity"}},
               "positions": positions}
    portfolio, valuation = to_portfolio(request)
    block = regt.calculate_block(portfolio, PARAMS, valuation)
    legs_by, _, _ = regt.build_legs(portfolio, valuation.marks, PARAMS)
    best_i, best_m = brute_force(legs_by["X"], regt.rates_for(PARAMS, portfolio.underlyings["X"]))
    assert block["initial"] == pytest.approx(best_i, abs=1e-6)
    assert block["maintenance"] == pytest.approx(best_m, abs=1e-6)


def test_size_grows_with_instruments_not_contracts() -> None:
    def book(q: int) -> list[dict]:
        return [opt("a", "call", 95, q, 7.0), opt("b", "call", 100, -2 * q, 4.0),
                opt("c", "call", 105, q, 2.0), opt("d", "put", 95, -q, 2.0),
                opt("e", "put", 90, q, 1.0)]
    small = reg_t(book(1))
    cols = regt.LAST_SOLVE.columns
    big = reg_t(book(1000))
    assert regt.LAST_SOLVE.columns == cols
    assert big["initial"] == pytest.approx(1000 * small["initial"])
    assert names(big) == names(small)


# ------------------------------------------------------------------------------------------
# Per-strategy functions and the classifier
# ------------------------------------------------------------------------------------------

def _leg(right: str, sign: int, strike: float = 100.0, value: float = 100.0,
         expiry: float = 0.1, m: float = 100.0, qty: float = 1.0) -> regt.Leg:
    return regt.Leg(right=right, sign=sign, quantity=qty, spot=100.0, value=value,
                    strike=strike, expiry=expiry, multiplier=m, members=(0,))


def test_strategy_requirement_classifier() -> None:
    r = rates()
    s = regt.Leg(right="stock", sign=1, quantity=100, spot=100.0, value=100.0, members=(0,))
    sc, lc = _leg("call", -1, 105, 150), _leg("call", 1, 110, 60)
    sp, lp = _leg("put", -1, 95, 140), _leg("put", 1, 90, 50)
    assert regt.strategy_requirement([(s, 1), (sc, 1)], r)[0] == "covered_call"
    assert regt.strategy_requirement([(s, 1), (lp, 1)], r)[0] == "protective_put"
    assert regt.strategy_requirement([(s, 1), (sc, 1), (lp, 1)], r)[0] == "collar"
    assert regt.strategy_requirement([(sc, 1), (lc, 1)], r)[0] == "call_credit_spread"
    assert regt.strategy_requirement([(sc, 1), (sp, 1)], r)[0] == "short_strangle"
    name, req = regt.strategy_requirement([(lp, 1), (sp, 1), (sc, 1), (lc, 1)], r)
    assert name == "iron_condor"
    assert req.initial == pytest.approx(500 + 50 + 60 - 140 - 150)
    assert regt.strategy_requirement([(s, 1), (lc, 1)], r) is None
    assert regt.strategy_requirement([(lc, 1), (lp, 1)], r) is None
    body = _leg("call", -1, 100, 400)
    name, req = regt.strategy_requirement(
        [(_leg("call", 1, 90, 1100), 1), (body, 2), (_leg("call", 1, 110, 100), 1)], r)
    assert name == "call_butterfly" and req.initial == pytest.approx(400)


def test_requirement_functions() -> None:
    r = rates()
    sc, lc = _leg("call", -1, 100, 300), _leg("call", 1, 105, 150)
    assert regt.spread_requirement(sc, lc) == regt.Requirement(350.0, 350.0)
    # arbitrage marks: maintenance (maximum loss) never below zero
    assert regt.spread_requirement(_leg("call", -1, 105, 300), _leg("call", 1, 100, 250)
                                   ).maintenance == 0.0
    c, p = _leg("call", -1, 100, 700), _leg("put", -1, 100, 100)
    xc, xp = excess("call", 100, 100), excess("put", 100, 100)
    assert xc + 700 > xp + 100      # the call side is the greater requirement
    assert regt.straddle_requirement(c, p, r).initial == pytest.approx(xc)
    assert regt.covered_call_requirement(100.0, _leg("call", -1, 90, 1100), r).maintenance == \
        pytest.approx(R["long_stock_maintenance"] * 90 * 100)
    assert regt.long_option_requirement(1000.0, True, r).initial == pytest.approx(
        (1 - R["long_option_loan_value"]) * 1000)
    assert regt.short_stock_maintenance_per_share(4.0, r) == pytest.approx(
        max(R["short_stock_low_price_maintenance"] * 4, R["short_stock_low_price_per_share"]))
    assert regt.combo_requirement(_leg("put", 1, 90), _leg("put", -1, 95),
                                  _leg("call", -1, 105), _leg("call", 1, 115)) is not None
    # the put spread above the call spread is not an iron condor
    assert regt.combo_requirement(_leg("put", 1, 100), _leg("put", -1, 110),
                                  _leg("call", -1, 105), _leg("call", 1, 115)) is None


# ------------------------------------------------------------------------------------------
# Timing (printed, never asserted)
# ------------------------------------------------------------------------------------------

def fifty_position_account(seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    specs = [("AAA", 100.0, "equity", 1.0), ("BBB", 50.0, "equity", 1.0),
             ("SPX", 5000.0, "broad_index_high_cap", 1.0), ("QQQ", 400.0, "broad_index", 1.0),
             ("CCC", 20.0, "equity", 1.0), ("TQQ", 60.0, "equity", 3.0)]
    unds = {s: {"price": p, "product_class": pc, "leverage": lev} for s, p, pc, lev in specs}
    positions: list[dict] = []
    for s, _, pc, _ in specs:
        if "index" not in pc:
            positions.append(stock(f"{s}-stk", int(rng.choice([-1, 1])) * 100
                                   * int(rng.integers(1, 10)), symbol=s))
    while len(positions) < 50:
        s, p, pc, _ = specs[int(rng.integers(len(specs)))]
        strike = round(p * (1 + 0.025 * int(rng.integers(-6, 7))), 2)
        right = "call" if rng.random() < 0.5 else "put"
        days = int(rng.choice([14, 30, 45, 60, 90, 400]))
        intrinsic = max(p - strike, 0.0) if right == "call" else max(strike - p, 0.0)
        price = round(intrinsic + p * 0.02 * float(rng.uniform(0.2, 1.5)) * math.sqrt(days / 30),
                      2)
        qty = int(rng.choice([-1, 1])) * int(rng.integers(1, 11))
        positions.append(opt(f"p{len(positions)}", right, strike, qty, price, days=days,
                             underlying=s))
    return {"valuation_date": VD, "underlyings": unds, "positions": positions}


def test_fifty_position_timing() -> None:
    portfolio, valuation = to_portfolio(fifty_position_account())
    block = regt.calculate_block(portfolio, PARAMS, valuation)
    runs = []
    for _ in range(20):
        t0 = time.perf_counter()
        regt.calculate_block(portfolio, PARAMS, valuation)
        runs.append(time.perf_counter() - t0)
    info = regt.LAST_SOLVE
    print(f"\nreg_t 50 positions: best {min(runs) * 1e3:.2f} ms, median "
          f"{sorted(runs)[len(runs) // 2] * 1e3:.2f} ms; {info.columns} columns x {info.rows} "
          f"rows, {info.lp_solves} LP solve(s), {len(block['strategies'])} strategies")
    assert block["initial"] <= sum(
        regt.single_requirement(leg, regt.rates_for(PARAMS, portfolio.underlyings[sym]),
                                leg.quantity).initial
        for sym, legs in regt.build_legs(portfolio, valuation.marks, PARAMS)[0].items()
        for leg in legs) + 1e-6


def test_a_position_without_a_finite_mark_is_an_input_error() -> None:
    portfolio, valuation = to_portfolio({
        "valuation_date": VD, "underlyings": {"X": {"price": 100, "product_class": "equity"}},
        "positions": [stock("s", 100), opt("c", "call", 105, -1, 2.0)]})
    valuation.marks[1] = np.nan
    with pytest.raises(EngineInputError) as err:
        regt.calculate_block(portfolio, PARAMS, valuation)
    assert err.value.field == "positions[1].price"


def test_stock_covering_options_of_different_multipliers() -> None:
    b = reg_t([stock("s", 150), opt("c", "call", 105, -1, 2.0),
               opt("m", "call", 105, -5, 0.2, multiplier=10)])
    assert names(b) == ["covered_call", "covered_call"]
    assert b["initial"] == pytest.approx(R["long_stock_initial"] * 15000 - 200 - 10)
    portfolio, valuation = to_portfolio({
        "valuation_date": VD, "underlyings": {"X": {"price": 100, "product_class": "equity"}},
        "positions": [stock("s", 150), opt("c", "call", 105, -1, 2.0),
                      opt("m", "call", 110, -7, 0.1, multiplier=10)]})
    block = regt.calculate_block(portfolio, PARAMS, valuation)
    legs = regt.build_legs(portfolio, valuation.marks, PARAMS)[0]["X"]
    best_i, best_m = brute_force(legs, regt.rates_for(PARAMS, portfolio.underlyings["X"]))
    assert block["initial"] == pytest.approx(best_i)
    assert block["maintenance"] == pytest.approx(best_m)
