"""The collateral block (METHODOLOGY.md section 6) on a stand-in valuation."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import numpy as np
import pytest

from margin.engine.defi import uniswap_v3 as u
from margin.engine.defi.collateral import calculate_block, tiered_haircut
from margin.engine.errors import EngineInputError
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import LPPosition, Portfolio, Position, Underlying

PARAMS = load_parameter_set()
DEFI = PARAMS.as_mapping()["defi"]  # the published numbers, as stored


def token(symbol: str, price: float, product_class: str = "crypto") -> Underlying:
    return Underlying(symbol, price, product_class, "token", symbol, symbol)


UNDERLYINGS = {
    "BTC": token("BTC", 50000.0),
    "ETH": token("ETH", 3000.0),
    "SOL": token("SOL", 150.0),
    "PEPE": token("PEPE", 0.00001),
    "USDC": token("USDC", 1.0, "stablecoin"),
    "DAI": token("DAI", 1.0, "stablecoin"),
    "IBM": Underlying("IBM", 100.0, "equity", "stock", "IBM", "IBM"),
}


def portfolio(*positions: Position) -> Portfolio:
    numbered = tuple(Position(**{**p.__dict__, "index": i}) for i, p in enumerate(positions))
    return Portfolio(date(2026, 11, 24), UNDERLYINGS, numbered)


def stand_in_valuation(pf: Portfolio) -> SimpleNamespace:
    """What the valuation step hands over: marks per unit (underlying price for crypto and
    perpetuals, the LP's value from lp_values) and rows."""
    marks, rows = [], []
    for p in pf.positions:
        if p.kind == "uniswap_v3_lp":
            lp = p.lp
            mark = float(u.lp_values(lp, UNDERLYINGS[lp.token0].price,
                                     UNDERLYINGS[lp.token1].price))
            rows.append({"id": p.id, "market_value": mark, "value": mark})
        else:
            mark = UNDERLYINGS[p.root].price
            rows.append({"id": p.id, "market_value": mark * p.quantity})
        marks.append(mark)
    return SimpleNamespace(marks=np.array(marks), rows=rows)


def block(*positions: Position, params: dict = PARAMS) -> dict:
    pf = portfolio(*positions)
    result = calculate_block(pf, params, stand_in_valuation(pf))
    assert result is not None
    return result


def spot(symbol: str, quantity: float, pid: str | None = None) -> Position:
    return Position(0, pid or symbol.lower(), "crypto", quantity, symbol=symbol)


def perp(symbol: str, quantity: float, entry: float, funding: float = 0.0,
         pid: str = "perp") -> Position:
    return Position(0, pid, "perpetual", quantity, symbol=symbol, entry_price=entry,
                    funding_accrued=funding)


def lp_pos(lp: LPPosition, pid: str = "lp") -> Position:
    return Position(0, pid, "uniswap_v3_lp", 1.0, lp=lp)


def eth_usdc_lp(width: int = 4000, amount0: int = 10 ** 18,
                amount1: int = 3000 * 10 ** 6) -> LPPosition:
    sqrt_price = u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6)
    tick = u.get_tick_at_sqrt_ratio(sqrt_price)
    lower, upper = (tick - width) // 60 * 60, (tick + width) // 60 * 60
    liquidity = u.get_liquidity_for_amounts(sqrt_price, u.get_sqrt_ratio_at_tick(lower),
                                            u.get_sqrt_ratio_at_tick(upper), amount0, amount1)
    return LPPosition("ETH", "USDC", 18, 6, liquidity, lower, upper)


KEYS = ["market_value", "stressed_loss", "effective_value", "ltv", "borrowable",
        "health_factor", "positions"]
POSITION_KEYS = ["id", "market_value", "stressed_loss", "effective_value", "ltv", "borrowable"]


# ---------------------------------------------------------------------------- the brief

def brief_lp() -> LPPosition:
    """0.2 WBTC-side LP (8 / 6 decimals) whose range sits above $50,000: all token0, worth
    exactly $10,000 at $50,000 (getAmountsForLiquidity gives exactly 20,000,000 sats)."""
    sqrt_price = u.sqrt_price_x96_from_prices(50000.0, 1.0, 8, 6)
    lower = (u.get_tick_at_sqrt_ratio(sqrt_price) // 60 + 100) * 60
    upper = lower + 6000
    sqrt_a, sqrt_b = u.get_sqrt_ratio_at_tick(lower), u.get_sqrt_ratio_at_tick(upper)
    liquidity = u.get_liquidity_for_amount0(sqrt_a, sqrt_b, 20_000_000)
    while u.get_amounts_for_liquidity(sqrt_price, sqrt_a, sqrt_b, liquidity)[0] < 20_000_000:
        liquidity += 1
    assert u.get_amounts_for_liquidity(sqrt_price, sqrt_a, sqrt_b, liquidity) == (20_000_000, 0)
    return LPPosition("BTC", "USDC", 8, 6, liquidity, lower, upper)


def test_brief_example_lp_worth_10000_with_3000_stressed_loss_is_worth_7000() -> None:
    # a firm grid whose worst point is -30 %: the all-BTC position loses exactly $3,000 there
    params = PARAMS.with_overrides({"defi": {"crypto_grid": [-0.30, -0.15, 0.15, 0.30]}})
    result = block(lp_pos(brief_lp()), params=params)
    assert result["market_value"] == pytest.approx(10_000.0, abs=1e-9)
    assert result["stressed_loss"] == pytest.approx(3_000.0, abs=1e-9)
    assert result["effective_value"] == pytest.approx(7_000.0, abs=1e-9)
    assert result["ltv"] == pytest.approx(0.70)
    assert result["borrowable"] == pytest.approx(7_000.0, abs=1e-9)  # under 80 % x $10,000
    row = result["positions"][0]
    assert (row["market_value"], row["stressed_loss"], row["effective_value"]) == (
        result["market_value"], result["stressed_loss"], result["effective_value"])


def test_effective_is_value_minus_loss_on_a_real_lp() -> None:
    lp = eth_usdc_lp()
    result = block(lp_pos(lp))
    pnl = u.lp_values(lp, 3000.0 * (1 + np.asarray(DEFI["crypto_grid"])), 1.0) - u.lp_value(
        lp, 3000.0, 1.0)
    assert result["market_value"] == u.lp_value(lp, 3000.0, 1.0)
    assert result["stressed_loss"] == pytest.approx(-pnl.min())
    assert result["effective_value"] == result["market_value"] - result["stressed_loss"]
    # impermanent loss: the LP loses more than its starting ETH alone would at -66 %
    amount0 = u.lp_amounts(lp, u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6))[0]
    assert result["stressed_loss"] > 0.66 * 3000.0 * amount0 / 1e18
    assert result["ltv"] == pytest.approx(result["effective_value"] / result["market_value"])


# ---------------------------------------------------------------------------- shape

def test_none_without_crypto_perpetual_or_lp() -> None:
    pf = portfolio(Position(0, "stk", "stock", 100, symbol="IBM"))
    assert calculate_block(pf, PARAMS, stand_in_valuation(pf)) is None


def test_keys_in_documented_order() -> None:
    result = block(spot("BTC", 1), perp("ETH", 1, 2900.0), lp_pos(eth_usdc_lp()),
                   Position(0, "stk", "stock", 100, symbol="IBM"))
    assert list(result) == KEYS
    assert [row["id"] for row in result["positions"]] == ["btc", "perp", "lp"]
    assert list(result["positions"][0]) == POSITION_KEYS
    assert list(result["positions"][1]) == POSITION_KEYS + ["initial_margin",
                                                            "maintenance_margin"]
    for row in result["positions"]:
        assert row["effective_value"] == row["market_value"] - row["stressed_loss"]


# ---------------------------------------------------------------------------- spot

@pytest.mark.parametrize("symbol, quantity, expected", [
    ("BTC", 10, 25_000.0),                                   # $500k: 5 %
    ("BTC", 100, 50_000.0 + 0.10 * 4_000_000),               # $5M: 5 % of 1M + 10 % of 4M
    ("BTC", 400, 50_000.0 + 900_000.0 + 0.20 * 10_000_000),  # $20M: third bracket
    ("SOL", 10_000, 250_000.0 + 0.40 * 500_000),             # $1.5M, other tokens
    ("PEPE", 10 ** 10, 0.25 * 100_000),                      # $100k long tail
])
def test_spot_haircut_by_marginal_size_tiers(symbol: str, quantity: float,
                                             expected: float) -> None:
    result = block(spot(symbol, quantity))
    assert result["stressed_loss"] == pytest.approx(expected)
    value = quantity * UNDERLYINGS[symbol].price
    assert result["market_value"] == pytest.approx(value)
    assert result["ltv"] == pytest.approx(min(1 - expected / value, DEFI["max_ltv"]))


def test_tiers_have_no_cliff() -> None:
    tiers = DEFI["haircut_tiers"]["large_cap"]
    assert tiered_haircut(1_000_000, tiers) == pytest.approx(50_000)
    assert tiered_haircut(1_000_001, tiers) == pytest.approx(50_000.1)


def test_holding_is_tiered_on_the_symbol_total() -> None:
    result = block(spot("BTC", 16, "a"), spot("BTC", 16, "b"))  # 2 x $800k
    assert [row["stressed_loss"] for row in result["positions"]] == pytest.approx([40_000] * 2)
    assert result["stressed_loss"] == pytest.approx(50_000 + 0.10 * 600_000)


def test_stablecoin_by_the_depeg_grid() -> None:
    result = block(spot("USDC", 1_000_000))
    assert result["stressed_loss"] == pytest.approx(-min(DEFI["depeg_grid"]) * 1_000_000)
    assert result["ltv"] == pytest.approx(0.80)  # 1 - 20 % = the cap


def test_ltv_cap_and_advance_rate() -> None:
    result = block(spot("BTC", 2))  # $100k, 5 % haircut: effective $95k
    assert result["effective_value"] == pytest.approx(95_000)
    assert result["ltv"] == DEFI["max_ltv"]
    assert result["borrowable"] == pytest.approx(80_000)  # min(95k, 80 % x 100k) x 100 %
    half = PARAMS.with_overrides({"defi": {"advance_rate": 0.5, "max_ltv": 0.9}})
    result = block(spot("BTC", 2), params=half)
    assert result["ltv"] == pytest.approx(0.9)
    assert result["borrowable"] == pytest.approx(45_000)  # min(95k, 90k) x 50 %


# ---------------------------------------------------------------------------- perpetuals

def test_perpetual_profit_counts_after_the_haircut() -> None:
    result = block(perp("ETH", 2, 2500.0, funding=-40.0))
    row = result["positions"][0]
    assert row["market_value"] == pytest.approx((3000 - 2500) * 2 - 40)
    grid_loss = -min(DEFI["crypto_grid"]) * 2 * 3000
    assert row["stressed_loss"] == pytest.approx(DEFI["perp_profit_haircut"] * 960 + grid_loss)
    assert row["initial_margin"] == pytest.approx(0.05 * 6000)
    assert row["maintenance_margin"] == pytest.approx(0.03 * 6000)


@pytest.mark.parametrize("symbol, tier", [("ETH", "large_cap"), ("SOL", "mid_cap"),
                                          ("PEPE", "long_tail")])
def test_perpetual_margin_tiers(symbol: str, tier: str) -> None:
    row = block(perp(symbol, -3, UNDERLYINGS[symbol].price))["positions"][0]
    notional = 3 * UNDERLYINGS[symbol].price
    assert row["initial_margin"] == pytest.approx(DEFI["perp_margin"][tier]["initial"] * notional)
    assert row["maintenance_margin"] == pytest.approx(
        DEFI["perp_margin"][tier]["maintenance"] * notional)
    # a short at its entry price: nothing of value, loses at +100 %
    assert row["market_value"] == 0.0 and row["ltv"] is None and row["borrowable"] == 0.0
    assert row["stressed_loss"] == pytest.approx(max(DEFI["crypto_grid"]) * notional)


def test_perpetual_needs_an_entry_price() -> None:
    with pytest.raises(EngineInputError) as info:
        block(Position(0, "p", "perpetual", 1, symbol="ETH"))
    assert info.value.field == "positions[0].entry_price"


# ---------------------------------------------------------------------------- offsets

def test_short_perp_hedging_an_lp_offsets_point_by_point() -> None:
    lp = eth_usdc_lp()
    hedge = perp("ETH", -0.5, 3000.0)
    result = block(lp_pos(lp), hedge)
    grid = np.asarray(DEFI["crypto_grid"])
    lp_pnl = u.lp_values(lp, 3000.0 * (1 + grid), 1.0) - u.lp_value(lp, 3000.0, 1.0)
    perp_pnl = -0.5 * 3000.0 * grid
    assert result["stressed_loss"] == pytest.approx(-(lp_pnl + perp_pnl).min())
    lp_row, perp_row = result["positions"]
    assert lp_row["stressed_loss"] == pytest.approx(-lp_pnl.min())
    assert perp_row["stressed_loss"] == pytest.approx(-perp_pnl.min())
    assert result["stressed_loss"] < lp_row["stressed_loss"]
    assert result["effective_value"] > lp_row["effective_value"]


def test_basis_trade_spot_hedges_the_short_perpetual() -> None:
    result = block(spot("BTC", 10), perp("BTC", -10, 50000.0))
    assert result["stressed_loss"] == pytest.approx(0.05 * 500_000)  # the spot haircut only
    unhedged = block(perp("BTC", -10, 50000.0))
    assert unhedged["stressed_loss"] == pytest.approx(500_000)  # +100 %


def test_no_offset_across_tokens_moving_alone() -> None:
    # long BTC perp and short ETH perp: each token also moves alone, nothing offsets then
    result = block(perp("BTC", 1, 50000.0, pid="b"), perp("ETH", -10, 3000.0, pid="e"))
    assert result["stressed_loss"] == pytest.approx(max(0.66 * 50_000, 1.0 * 30_000))


def test_volatile_pair_lp_in_the_block() -> None:
    sqrt_price = u.sqrt_price_x96_from_prices(3000.0, 50000.0, 18, 8)
    tick = u.get_tick_at_sqrt_ratio(sqrt_price)
    lp = LPPosition("ETH", "BTC", 18, 8, 10 ** 13, tick - 2000, tick + 2000)
    position = lp_pos(lp)
    pf = portfolio(position)
    _, _, pnl = u.lp_scenario_pnl(pf, pf.positions[0], PARAMS.with_overrides(
        {"portfolio_margin": {"points": {"crypto": DEFI["crypto_grid"]}}}))
    result = block(position)
    assert result["stressed_loss"] == pytest.approx(-pnl.min())


# ---------------------------------------------------------------------------- health factor

def test_health_factor_null_without_debt() -> None:
    assert block(spot("BTC", 1), lp_pos(eth_usdc_lp()))["health_factor"] is None


def test_health_factor_against_perpetual_losses() -> None:
    lt = DEFI["liquidation_threshold"]
    lp = eth_usdc_lp()
    lp_value = u.lp_value(lp, 3000.0, 1.0)
    result = block(spot("BTC", 1), spot("USDC", 10_000), lp_pos(lp),
                   perp("SOL", 100, 160.0, pid="loser"), perp("ETH", 1, 2000.0, pid="winner"))
    collateral = (50_000 * lt["large_cap"] + 10_000 * lt["stablecoin"]
                  + lp_value * min(lt["large_cap"], lt["stablecoin"])
                  + 1000 * (1 - DEFI["perp_profit_haircut"]) * lt["large_cap"])
    assert result["health_factor"] == pytest.approx(collateral / 1000.0)  # SOL perp lost $1,000


def test_short_spot_is_debt() -> None:
    result = block(spot("USDC", 10_000), spot("ETH", -2))
    assert result["health_factor"] == pytest.approx(
        10_000 * DEFI["liquidation_threshold"]["stablecoin"] / 6000.0)
    assert result["market_value"] == pytest.approx(4_000)
