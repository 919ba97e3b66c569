"""The request files in examples/ (README's "try the calculator") stay valid and tell their story."""

from __future__ import annotations

import json

import pytest

from margin.calculator import run

from .requests import REPO

EXAMPLES = REPO / "examples"


def _run(name: str) -> tuple[int, dict]:
    status, out = run((EXAMPLES / f"{name}.json").read_bytes())
    return status, json.loads(out)


@pytest.mark.parametrize("name, strategy", [("covered_call", "covered_call"),
                                            ("protective_put", "protective_put")])
def test_hedged_stock_needs_less_under_portfolio_margin_than_reg_t(name, strategy) -> None:
    status, result = _run(name)
    assert status == 200, result
    pm, regt = result["portfolio_margin"], result["reg_t"]
    assert [s["strategy"] for s in regt["strategies"]] == [strategy]
    assert 0 < pm["requirement"] < regt["maintenance"]
    # the risk array explains the number: the worst point is the 15 % down move
    (group,) = pm["class_groups"]
    assert group["worst_loss"] == pm["requirement"] == -min(group["pnl"])
    assert pm["driver"]["point"] == -0.15


def test_crypto_collateral_example() -> None:
    status, result = _run("crypto_collateral")
    assert status == 200, result
    block = result["collateral"]
    assert [p["id"] for p in block["positions"]] == ["eth", "usdc", "eth_perp_short",
                                                     "lp_usdc_eth"]
    assert block["effective_value"] == pytest.approx(
        block["market_value"] - block["stressed_loss"], abs=0.01)
    lp = block["positions"][3]
    assert 0 < lp["effective_value"] < lp["market_value"]
    assert block["health_factor"] is not None  # the short perp is under water: there is debt


def test_stale_oracle_example_is_refused_with_its_reason() -> None:
    status, result = _run("stale_oracle")
    assert status == 400
    (error,) = result["errors"]
    assert (error["field"], error["code"]) == ("underlyings.ETH.oracle", "oracle_stale")
    assert "heartbeat 3600 s" in error["message"]
