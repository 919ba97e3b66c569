"""What-if checks staff run: a covered call and a protective put, PM beside Reg T.

The expected figures follow from the rules (METHODOLOGY.md sections 1 and 3) by arithmetic on
the request's own numbers.
"""

from __future__ import annotations

import pytest

from .requests import result_of

SHARES, SPOT = 100, 100.0
EQUITY_POINTS = [-0.15, -0.12, -0.09, -0.06, -0.03, 0.03, 0.06, 0.09, 0.12, 0.15]


def _request(option: dict) -> dict:
    return {
        "valuation_date": "2026-01-02",
        "underlyings": {"X": {"price": SPOT, "product_class": "equity"}},
        "positions": [
            {"id": "stk", "kind": "stock", "symbol": "X", "quantity": SHARES},
            {"id": "opt", "kind": "option", "underlying": "X", "expiry": "2026-02-20",
             **option},
        ],
        "methods": ["portfolio_margin", "reg_t"],
    }


def _strategy(document: dict, name: str) -> dict:
    strategies = document["reg_t"]["strategies"]
    found = [s for s in strategies if s["strategy"] == name]
    assert found, strategies
    return found[0]


def _check_risk_array(pm: dict) -> list[float]:
    (class_group,) = pm["class_groups"]
    assert class_group["class_group"] == "X"
    assert class_group["points"] == EQUITY_POINTS
    pnl = class_group["pnl"]
    assert len(pnl) == len(EQUITY_POINTS)
    assert class_group["worst_loss"] == pytest.approx(max(0.0, -min(pnl)), abs=0.01)
    assert pm["requirement"] == pytest.approx(max(class_group["worst_loss"],
                                                  pm["minimum_charge"]), abs=0.01)
    assert pm["driver"] == {"product_group": "X", "point": EQUITY_POINTS[pnl.index(min(pnl))]}
    return pnl


def test_covered_call_pm_beside_reg_t():
    premium = 2.0
    document = result_of(_request({"right": "call", "strike": 105, "quantity": -1,
                                    "price": premium}))
    reg_t = document["reg_t"]
    # 50 % of the stock, the call needs nothing, its premium credited.
    assert reg_t["initial"] == pytest.approx(0.5 * SHARES * SPOT - premium * 100, abs=0.01)
    assert _strategy(document, "covered_call")["positions"] == ["stk", "opt"]
    pnl = _check_risk_array(document["portfolio_margin"])
    # Down 15 %: the stock loses 1,500, the short call gains at most its premium.
    assert -SHARES * SPOT * 0.15 < pnl[0] <= -SHARES * SPOT * 0.15 + premium * 100
    # Up 15 %: the gain is capped near the strike (105 - 100 + premium, per share).
    assert pnl[-1] <= (105 - SPOT + premium) * SHARES + 0.01
    assert document["portfolio_margin"]["requirement"] < reg_t["initial"]


def test_protective_put_pm_beside_reg_t():
    premium = 1.5
    document = result_of(_request({"right": "put", "strike": 95, "quantity": 1,
                                   "price": premium}))
    reg_t = document["reg_t"]
    # 50 % of the stock plus the put paid in full.
    assert reg_t["initial"] == pytest.approx(0.5 * SHARES * SPOT + premium * 100, abs=0.01)
    assert _strategy(document, "protective_put")["positions"] == ["stk", "opt"]
    pnl = _check_risk_array(document["portfolio_margin"])
    # The put floors the loss: at most (100 - 95 + premium) per share at any point.
    max_loss = (SPOT - 95 + premium) * SHARES
    assert min(pnl) >= -max_loss - 0.01
    assert document["portfolio_margin"]["requirement"] <= max_loss + 0.01


def test_option_expiring_today_is_worth_its_intrinsic_value():
    document = result_of({
        "valuation_date": "2026-01-02",
        "underlyings": {"X": {"price": SPOT, "product_class": "equity"}},
        "positions": [{"id": "p", "kind": "option", "underlying": "X", "right": "put",
                       "strike": 110, "expiry": "2026-01-02", "quantity": 1,
                       "implied_vol": 0.3}],
        "methods": ["portfolio_margin"],
    })
    (row,) = document["positions"]
    assert row["theoretical_price"] == pytest.approx(10.0)
    assert row["market_value"] == pytest.approx(1000.0)
