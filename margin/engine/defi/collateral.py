"""The ``collateral`` block: risk-adjusted value of crypto, perpetual and Uniswap v3 LP holdings.

METHODOLOGY.md section 6; every number comes from ``params.defi``. Money is returned as
raw floats (the calculator rounds at the edge); keys come in CALCULATOR.md's order.

Per position (stand-alone, no offsets):

- crypto spot (volatile): ``stressed_loss`` = the size-tiered haircut of the holding's USD
  value, applied marginally like tax brackets (large caps 5 % of the first $1M, 10 % of the next
  $9M, 20 % beyond; other tokens 25 / 40 / 60 %), so a dollar more never costs a cliff;
- crypto spot (stablecoin): the worst loss on the depeg grid;
- perpetual: ``market_value`` = unrealised P&L = (mark - entry) x qty + funding_accrued;
  ``stressed_loss`` = ``perp_profit_haircut`` x unrealised profit (only half of a profit counts,
  the Mango Markets lesson) + the worst loss of the position on the crypto grid; the tier's
  ``initial_margin`` / ``maintenance_margin`` (fraction x |qty| x mark) are reported;
- LP: ``stressed_loss`` = the worst loss of a full revaluation on the grid (exact integer
  Uniswap math, impermanent loss and a concentrated range's capped upside included): the
  volatile token of a volatile/stable pair, each token and both of a volatile pair, both
  tokens on the depeg grid for a stable pair.

Portfolio (after offsets): the grid positions (perpetuals and LPs) are revalued together on
one set of scenarios, so a short perpetual hedging an LP (or another perpetual) offsets it
point by point. Scenarios: each volatile token alone and all volatile tokens together on the
crypto grid; each stablecoin alone and all together on the depeg grid (an LP moves only with
the tokens its pair type stresses, so the stable side of a volatile/stable pair stays at its
price, as in its stand-alone stress and in portfolio margin). Spot holdings keep their
haircut for their own losses (netted per symbol, tiered on the net holding) and enter the
scenarios only with their gains, so spot hedges a perpetual (a basis trade) without its grid
loss replacing the haircut:

    stressed_loss = sum(spot haircuts) + sum(perp profit haircuts)
                    + max(0, max over scenarios [loss of perps and LPs - gains of spot])

``effective_value`` = market value - stressed loss; ``ltv`` = effective / market value,
within [0, max_ltv] (null when the market value is not positive); ``borrowable`` =
max(0, min(effective value, max_ltv x market value)) x advance rate.

``health_factor`` (Aave style, shown for comparison): sum(collateral x liquidation threshold) /
debt. Collateral: long spot at market value, LPs at market value with the lower threshold of
their two tokens, perpetual profits after the profit haircut; thresholds by tier (large cap,
mid cap, long tail, stablecoin). Debt: the absolute unrealised losses of perpetuals (what the
account owes the venue) plus short spot holdings (borrowed tokens). Null when there is no debt
(Aave reports an infinite health factor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EngineInputError
from ..parameters import ParameterSet
from ..portfolio import STABLECOIN, Portfolio, Position
from .uniswap_v3 import (
    lp_class_group,
    lp_value,
    lp_values,
    stress_families,
)

COLLATERAL_KINDS = ("crypto", "perpetual", "uniswap_v3_lp")

Scenario = dict[str, float]  # token -> relative price move


@dataclass
class _Item:
    """One position taking part, with what the block needs of it."""

    index: int                      # position in portfolio.positions / valuation arrays
    position: Position
    kind: str
    market_value: float
    tokens: tuple[str, ...]         # tokens whose moves change its value
    stressed_tokens: tuple[str, ...]  # tokens its stand-alone stress moves
    mark: float = 0.0               # spot / perp: price per unit
    exposure: float = 0.0           # spot / perp: quantity x mark (USD delta)
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def field(self) -> str:
        return f"positions[{self.position.index}]"


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

def tiered_haircut(size: float, tiers: Sequence[Sequence[Any]]) -> float:
    """Haircut of a USD holding by marginal size brackets ``[[upper, rate], ..., [null, rate]]``."""
    size = abs(size)
    lower = 0.0
    loss = 0.0
    for upper, rate in tiers:
        top = math.inf if upper is None else float(upper)
        if size > lower:
            loss += (min(size, top) - lower) * float(rate)
        lower = top
        if size <= top:
            break
    return loss


def spot_haircut(symbol: str, value: float, params: ParameterSet) -> float:
    """Size-tiered haircut (USD) of a volatile spot holding."""
    defi = params.defi
    table = "large_cap" if symbol in defi.large_caps else "other"
    return tiered_haircut(value, defi.haircut_tiers[table])


def depeg_loss(value: float, params: ParameterSet) -> float:
    """Worst loss (USD, >= 0) of a stablecoin holding on the depeg grid."""
    grid = np.asarray(params.defi.depeg_grid, dtype=np.float64)
    return max(0.0, float(np.max(-value * grid)))


def liquidation_threshold(symbol: str, portfolio: Portfolio, params: ParameterSet) -> float:
    thresholds = params.defi.liquidation_threshold
    if portfolio.underlyings[symbol].product_class == STABLECOIN:
        return thresholds[STABLECOIN]
    return thresholds[params.defi.tier_of(symbol)]


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

def build_scenarios(volatile: Sequence[str], stable: Sequence[str],
                    params: ParameterSet) -> list[Scenario]:
    """Each volatile token alone and all together on the crypto grid, then each stablecoin
    alone and all together on the depeg grid (METHODOLOGY.md section 6)."""
    defi = params.defi
    scenarios: list[Scenario] = []
    for tokens, grid in ((volatile, defi.crypto_grid), (stable, defi.depeg_grid)):
        for family in stress_families(tokens):
            for move in grid:
                scenarios.append({token: float(move) for token in family})
    return scenarios


def _split(tokens: Sequence[str], portfolio: Portfolio) -> tuple[list[str], list[str]]:
    volatile, stable = [], []
    for token in dict.fromkeys(tokens):
        (stable if portfolio.underlyings[token].product_class == STABLECOIN
         else volatile).append(token)
    return volatile, stable


def _pnl(item: _Item, scenarios: list[Scenario], portfolio: Portfolio) -> np.ndarray:
    """P&L (USD) of one position in each scenario."""
    if item.kind != "uniswap_v3_lp":
        symbol = item.tokens[0]
        return np.array([item.exposure * s.get(symbol, 0.0) for s in scenarios])
    lp = item.position.lp
    assert lp is not None
    base = (portfolio.underlyings[lp.token0].price, portfolio.underlyings[lp.token1].price)
    out = np.zeros(len(scenarios))
    # only the tokens its pair type stresses move it (the stable side of a volatile/stable
    # pair stays at its price, as in the stand-alone stress and in portfolio margin)
    t0 = lp.token0 if lp.token0 in item.stressed_tokens else None
    t1 = lp.token1 if lp.token1 in item.stressed_tokens else None
    moved = [i for i, s in enumerate(scenarios) if t0 in s or t1 in s]
    if not moved:
        return out
    f0 = np.array([1.0 + scenarios[i].get(t0, 0.0) if t0 else 1.0 for i in moved])
    f1 = np.array([1.0 + scenarios[i].get(t1, 0.0) if t1 else 1.0 for i in moved])
    try:
        shocked = lp_values(lp, base[0] * f0, base[1] * f1, base_prices=base)
    except (ValueError, TypeError) as exc:
        raise EngineInputError(item.field, "invalid",
                               f"cannot value the LP position: {exc}") from exc
    out[moved] = shocked - item.market_value
    return out


def _worst_loss(pnl: np.ndarray) -> float:
    return max(0.0, float(-pnl.min())) if pnl.size else 0.0


# --------------------------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------------------------

def _mark(valuation: Any, k: int, fallback: float) -> float:
    marks = getattr(valuation, "marks", None)
    if marks is not None and k < len(marks):
        value = float(marks[k])
        if math.isfinite(value) and value > 0:
            return value
    return float(fallback)


def _items(portfolio: Portfolio, params: ParameterSet, valuation: Any) -> list[_Item]:
    items: list[_Item] = []
    for k, position in enumerate(portfolio.positions):
        if position.kind not in COLLATERAL_KINDS:
            continue
        if position.kind == "uniswap_v3_lp":
            lp = position.lp
            if lp is None:
                raise EngineInputError(f"positions[{position.index}]", "required",
                                       "an LP position needs its Uniswap v3 fields")
            p0 = portfolio.underlyings[lp.token0].price
            p1 = portfolio.underlyings[lp.token1].price
            try:
                value = lp_value(lp, p0, p1)
            except (ValueError, TypeError) as exc:
                raise EngineInputError(f"positions[{position.index}]", "invalid",
                                       f"cannot value the LP position: {exc}") from exc
            _, _, stressed = lp_class_group(portfolio, lp)
            items.append(_Item(k, position, position.kind, value, (lp.token0, lp.token1),
                               stressed))
            continue
        symbol = position.root
        mark = _mark(valuation, k, portfolio.underlyings[symbol].price)
        exposure = float(position.quantity) * mark
        if position.kind == "crypto":
            items.append(_Item(k, position, "crypto", exposure, (symbol,), (symbol,), mark,
                               exposure))
            continue
        if position.entry_price is None:
            raise EngineInputError(f"positions[{position.index}].entry_price", "required",
                                   "a perpetual needs its entry price")
        value = (mark - float(position.entry_price)) * float(position.quantity) + float(
            position.funding_accrued or 0.0)
        margin = params.defi.perp_margin[params.defi.tier_of(symbol)]
        notional = abs(exposure)
        items.append(_Item(k, position, "perpetual", value, (symbol,), (symbol,), mark, exposure,
                           {"initial_margin": notional * margin.initial,
                            "maintenance_margin": notional * margin.maintenance}))
    return items


def _ratios(market_value: float, effective: float, params: ParameterSet,
            ) -> tuple[float | None, float]:
    max_ltv = params.defi.max_ltv
    advance = params.defi.advance_rate
    if market_value > 0:
        ltv: float | None = min(max(effective / market_value, 0.0), max_ltv)
    else:
        ltv = None
    borrowable = max(0.0, min(effective, max_ltv * market_value)) * advance
    return ltv, borrowable


def _standalone_loss(item: _Item, portfolio: Portfolio, params: ParameterSet) -> float:
    if item.kind == "crypto":
        if portfolio.underlyings[item.tokens[0]].product_class == STABLECOIN:
            return depeg_loss(item.exposure, params)
        return spot_haircut(item.tokens[0], item.exposure, params)
    volatile, stable = _split(item.stressed_tokens, portfolio)
    loss = _worst_loss(_pnl(item, build_scenarios(volatile, stable, params), portfolio))
    if item.kind == "perpetual":
        loss += params.defi.perp_profit_haircut * max(item.market_value, 0.0)
    return loss


def _portfolio_loss(items: list[_Item], portfolio: Portfolio, params: ParameterSet) -> float:
    spot: dict[str, float] = {}
    grid_items: list[_Item] = []
    loss = 0.0
    for item in items:
        if item.kind == "crypto":
            spot[item.tokens[0]] = spot.get(item.tokens[0], 0.0) + item.exposure
            continue
        grid_items.append(item)
        if item.kind == "perpetual":
            loss += params.defi.perp_profit_haircut * max(item.market_value, 0.0)
    for symbol, exposure in spot.items():
        if portfolio.underlyings[symbol].product_class == STABLECOIN:
            loss += depeg_loss(exposure, params)
        else:
            loss += spot_haircut(symbol, exposure, params)
    if not grid_items:
        return loss
    tokens: list[str] = []
    for item in grid_items:
        tokens.extend(item.stressed_tokens)
    tokens.extend(spot)  # spot hedges: its tokens' scenarios are where its gains show
    volatile, stable = _split(tokens, portfolio)
    scenarios = build_scenarios(volatile, stable, params)
    total = np.zeros(len(scenarios))
    for item in grid_items:
        total += _pnl(item, scenarios, portfolio)
    for symbol, exposure in spot.items():
        gains = np.array([exposure * s.get(symbol, 0.0) for s in scenarios])
        total += np.maximum(gains, 0.0)
    return loss + _worst_loss(total)


def calculate_block(portfolio: Portfolio, params: ParameterSet,
                    valuation: Any) -> dict[str, Any] | None:
    """The ``collateral`` block, or None when no crypto, perpetual or LP position is held.

    ``valuation.marks`` (price per unit, request order) gives the spot and perpetual marks
    (the underlying's price when a mark is missing); LP positions are valued here with the
    exact Uniswap math at the underlyings' prices, the same function their stress uses.
    """
    items = _items(portfolio, params, valuation)
    if not items:
        return None

    rows: list[dict[str, Any]] = []
    for item in items:
        loss = _standalone_loss(item, portfolio, params)
        effective = item.market_value - loss
        ltv, borrowable = _ratios(item.market_value, effective, params)
        row: dict[str, Any] = {
            "id": item.position.id,
            "market_value": item.market_value,
            "stressed_loss": loss,
            "effective_value": effective,
            "ltv": ltv,
            "borrowable": borrowable,
        }
        if item.kind == "perpetual":
            row["initial_margin"] = item.extras["initial_margin"]
            row["maintenance_margin"] = item.extras["maintenance_margin"]
        rows.append(row)

    market_value = float(sum(item.market_value for item in items))
    stressed_loss = _portfolio_loss(items, portfolio, params)
    effective = market_value - stressed_loss
    ltv, borrowable = _ratios(market_value, effective, params)
    return {
        "market_value": market_value,
        "stressed_loss": stressed_loss,
        "effective_value": effective,
        "ltv": ltv,
        "borrowable": borrowable,
        "health_factor": health_factor(items, portfolio, params),
        "positions": rows,
    }


def health_factor(items: list[_Item], portfolio: Portfolio, params: ParameterSet,
                  ) -> float | None:
    """Aave-style sum(collateral x liquidation threshold) / debt; None without debt."""
    haircut = params.defi.perp_profit_haircut
    weighted = 0.0
    debt = 0.0
    for item in items:
        if item.kind == "uniswap_v3_lp":
            threshold = min(liquidation_threshold(token, portfolio, params)
                            for token in item.tokens)
            weighted += max(item.market_value, 0.0) * threshold
        elif item.kind == "crypto":
            if item.market_value >= 0:
                weighted += item.market_value * liquidation_threshold(item.tokens[0], portfolio,
                                                                      params)
            else:
                debt -= item.market_value
        elif item.market_value >= 0:
            weighted += (item.market_value * (1.0 - haircut)
                         * liquidation_threshold(item.tokens[0], portfolio, params))
        else:
            debt -= item.market_value
    if debt <= 0:
        return None
    return weighted / debt
