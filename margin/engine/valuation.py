"""Step 2 of the engine: every position's market value, model value, implied vol and Greeks.

``value_positions(portfolio, params, need_model)`` returns a ``Valuation``: ``rows`` (one dict
per position in request order, keys in CALCULATOR.md order), ``marks`` (per-unit mark used for
the market value), ``vols`` (the implied vol each option keeps at every valuation point; NaN
for non-options), ``warnings`` and ``net_liquidation_value``.

Model choice (METHODOLOGY.md section 1): options on an index or a token are European
Black-Scholes-Merton with the underlying's continuous dividend yield; on a stock or an ETF
American (Bjerksund-Stensland 2002); ``position.exercise`` overrides either. Futures options are
Black-76 on the price of the future of the same underlying and expiry (the future position's
price when one is held, else the underlying's price). With a mark and no implied vol, the vol is
implied from the mark with the same model; with neither, the underlying's ``volatility``.

All option arithmetic is one vectorised call per pricing function over the portfolio's options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EngineInputError
from .parameters import ParameterSet
from .portfolio import (
    EUROPEAN_TYPES,
    OPTION_KINDS,
    Portfolio,
    Position,
    Underlying,
)

BOUNDS_RTOL = 1e-9  # a mark this close (relative, 1e-9 absolute at least) to a bound is on it


@dataclass
class Valuation:
    rows: list[dict[str, Any]]
    marks: np.ndarray
    vols: np.ndarray
    warnings: list[str] = field(default_factory=list)
    net_liquidation_value: float = 0.0
    # Extras for the engine's own blocks (not rendered):
    models: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # -1: not an option
    spots: np.ndarray = field(default_factory=lambda: np.zeros(0))  # price the grid moves
    market_values: np.ndarray = field(default_factory=lambda: np.zeros(0))


def model_for(position: Position, underlying: Underlying) -> int:
    """The pricing model code of an option position."""
    from . import pricing

    if position.kind == "future_option":
        return pricing.BLACK76
    exercise = position.exercise
    if exercise is None:
        exercise = "european" if underlying.type in EUROPEAN_TYPES else "american"
    return pricing.AMERICAN if exercise == "american" else pricing.EUROPEAN


def future_prices(portfolio: Portfolio) -> dict[tuple[str, Any], float]:
    """Prices of the futures held, by (underlying, expiry)."""
    out: dict[tuple[str, Any], float] = {}
    for p in portfolio.positions:
        if p.kind == "future" and p.price is not None:
            out.setdefault((p.underlying, p.expiry), float(p.price))
    return out


def position_spot(portfolio: Portfolio, position: Position,
                  futures: dict[tuple[str, Any], float] | None = None) -> float:
    """The price a position's valuation points move (per unit of the underlying it tracks)."""
    und = portfolio.underlyings[position.root]
    if position.kind == "future":
        return float(position.price) if position.price is not None else float(und.price)
    if position.kind == "future_option":
        futures = future_prices(portfolio) if futures is None else futures
        return futures.get((position.underlying, position.expiry), float(und.price))
    return float(und.price)


def _none_if_nan(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _lp_row(position: Position, portfolio: Portfolio) -> tuple[float, dict[str, Any]]:
    """An LP position's raw amounts and fees at its sqrt price, and its USD value."""
    from .defi import uniswap_v3

    lp = position.lp
    p0 = portfolio.underlyings[lp.token0].price
    p1 = portfolio.underlyings[lp.token1].price
    a0, a1, f0, f1 = uniswap_v3.lp_amounts(lp, uniswap_v3.lp_sqrt_price(lp, p0, p1))
    value = float(uniswap_v3.lp_value(lp, p0, p1))
    return value, {"amount0": str(int(a0)), "amount1": str(int(a1)), "fees0": str(int(f0)),
                   "fees1": str(int(f1)), "value": value}


def value_positions(portfolio: Portfolio, params: ParameterSet, need_model: bool,
                    greeks: bool = True) -> Valuation:
    """Market values, marks, implied vols and position Greeks (see the module docstring);
    ``greeks=False`` leaves the Greeks out (None): the batch sweep reads values only, and the
    Greeks of American options are finite differences, several pricings each."""
    positions = portfolio.positions
    n = len(positions)
    marks = np.full(n, np.nan)
    vols = np.full(n, np.nan)
    models = np.full(n, -1, np.int8)
    spots = np.full(n, np.nan)
    mvs = np.zeros(n)
    warnings: list[str] = []
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    futures = future_prices(portfolio)
    opt_idx: list[int] = []

    for i, p in enumerate(positions):
        pid = p.id
        if p.kind in OPTION_KINDS:
            opt_idx.append(i)
            spots[i] = position_spot(portfolio, p, futures)
            models[i] = model_for(p, portfolio.underlyings[p.root])
            continue
        if p.kind == "uniswap_v3_lp":
            value, extra = _lp_row(p, portfolio)
            marks[i] = value
            mvs[i] = value
            rows[i] = {"id": pid, "market_value": value, **extra}
            continue
        spot = position_spot(portfolio, p, futures)
        spots[i] = spot
        marks[i] = spot
        units = float(p.quantity) * float(p.multiplier)
        if p.kind == "future":
            rows[i] = {"id": pid, "market_value": 0.0, "delta": units}
        elif p.kind == "perpetual":
            entry = float(p.entry_price) if p.entry_price is not None else spot
            mvs[i] = (spot - entry) * units + float(p.funding_accrued or 0.0)
            rows[i] = {"id": pid, "market_value": mvs[i]}
        else:  # stock / ETF / crypto
            mvs[i] = spot * units
            rows[i] = {"id": pid, "market_value": mvs[i], "delta": units}

    if opt_idx:
        _value_options(portfolio, positions, np.asarray(opt_idx), models, spots, marks, vols,
                       mvs, rows, warnings, need_model, greeks)

    for i, row in enumerate(rows):
        row["market_value"] = float(mvs[i]) if positions[i].kind != "future" else 0.0
    return Valuation(rows, marks, vols, warnings, float(mvs.sum()), models, spots, mvs)


def _value_options(portfolio: Portfolio, positions: tuple[Position, ...], idx: np.ndarray,
                   models: np.ndarray, spots: np.ndarray, marks: np.ndarray, vols: np.ndarray,
                   mvs: np.ndarray, rows: list[dict[str, Any]], warnings: list[str],
                   need_model: bool, greeks: bool = True) -> None:
    from . import pricing

    opts = [positions[i] for i in idx]
    rate = float(portfolio.rate)
    model = models[idx].astype(np.int64)
    spot = spots[idx]
    strike = np.array([float(p.strike) for p in opts])
    t = np.array([max(float(p.time_to_expiry or 0.0), 0.0) for p in opts])
    q = np.array([float(portfolio.underlyings[p.root].dividend_yield or 0.0) for p in opts])
    is_call = np.array([p.is_call for p in opts], dtype=bool)
    price = np.array([np.nan if p.price is None else float(p.price) for p in opts])
    given_vol = np.array([np.nan if p.implied_vol is None else float(p.implied_vol)
                          for p in opts])
    und_vol = np.array([np.nan if portfolio.underlyings[p.root].volatility is None
                        else float(portfolio.underlyings[p.root].volatility) for p in opts])
    units = np.array([float(p.quantity) * float(p.multiplier) for p in opts])
    live = t > 0
    has_price = ~np.isnan(price)
    intrinsic = np.where(is_call, np.maximum(spot - strike, 0.0), np.maximum(strike - spot, 0.0))

    # no-arbitrage bounds of the given marks
    outside = np.zeros(len(opts), dtype=bool)
    lower = upper = np.full(len(opts), np.nan)
    if has_price.any():
        safe_t = np.where(live, t, 0.0)
        lower, upper = pricing.price_bounds(model, spot, strike, safe_t, rate, q, is_call)
        lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), spot.shape)
        upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), spot.shape)
        tol = BOUNDS_RTOL * np.maximum(1.0, np.abs(price))
        outside = has_price & ((price < lower - tol) | (price > upper + tol))

    # implied vols: one vectorised call over the marks that need one
    vol = given_vol.copy()
    need_iv = has_price & np.isnan(given_vol) & live & ~outside
    if need_iv.any():
        k = np.flatnonzero(need_iv)
        on_bounds = np.clip(price[k], lower[k], upper[k])  # within BOUNDS_RTOL of a bound
        iv = np.asarray(pricing.implied_vol(model[k], on_bounds, spot[k], strike[k], t[k], rate,
                                            q[k], is_call[k]), dtype=np.float64)
        vol[k] = iv
    fallback = ~has_price & np.isnan(given_vol)
    vol = np.where(fallback, und_vol, vol)

    for j, p in enumerate(opts):
        field_name = f"positions[{p.index}].price"
        if outside[j]:
            msg = (f"mark {price[j]:.10g} is outside the no-arbitrage bounds "
                   f"[{lower[j]:.10g}, {upper[j]:.10g}]")
            if need_model:
                raise EngineInputError(field_name, "outside_no_arbitrage_bounds", msg)
            warnings.append(f"{field_name}: {msg}; implied_vol is null")
            if np.isnan(given_vol[j]):
                vol[j] = np.nan
        elif live[j] and np.isnan(vol[j]):
            if not has_price[j]:
                raise EngineInputError(
                    field_name, "required",
                    "an option needs a price, an implied_vol or its underlying's volatility")
            # a mark on a bound: no finite implied vol; the mark is the model value
            msg = f"mark {price[j]:.10g} admits no implied volatility"
            if need_model:
                raise EngineInputError(field_name, "outside_no_arbitrage_bounds", msg)
            warnings.append(f"{field_name}: {msg}; implied_vol is null")
        # at expiry (t = 0) the intrinsic value needs no vol

    valued = live & ~np.isnan(vol)
    theo = np.where(live, np.nan, intrinsic)
    delta = np.where(live, np.nan, np.where(intrinsic > 0, np.where(is_call, 1.0, -1.0), 0.0))
    gamma = np.where(live, np.nan, 0.0)
    vega = np.where(live, np.nan, 0.0)
    theta = np.where(live, np.nan, 0.0)
    if valued.any():
        k = np.flatnonzero(valued)
        theo[k] = pricing.option_value(model[k], spot[k], strike[k], t[k], rate, q[k], vol[k],
                                       is_call[k])
        if greeks:
            g = pricing.greeks(model[k], spot[k], strike[k], t[k], rate, q[k], vol[k],
                               is_call[k])
            delta[k] = g["delta"]
            gamma[k] = g["gamma"]
            vega[k] = g["vega"]
            theta[k] = g["theta"]
    mark = np.where(has_price, price, theo)
    marks[idx] = mark
    vols[idx] = np.where(live, vol, given_vol)
    mvs[idx] = np.nan_to_num(mark * units)
    for j, p in enumerate(opts):
        i = int(idx[j])
        u = units[j]
        rows[i] = {
            "id": p.id,
            "market_value": float(mvs[i]),
            "theoretical_price": _none_if_nan(theo[j]),
            "implied_vol": _none_if_nan(vols[i]),
            "delta": _none_if_nan(delta[j] * u),
            "gamma": _none_if_nan(gamma[j] * u),
            "vega": _none_if_nan(vega[j] * u),
            "theta": _none_if_nan(theta[j] * u),
        }
