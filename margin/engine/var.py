"""Step 6 of the engine: value at risk and stress (METHODOLOGY.md section 5).

Historical simulation with full revaluation. The scenarios are the relative returns of each
underlying in ``portfolio.history`` (daily closes, oldest first): 1-day returns
``p[t] / p[t-1] - 1`` and overlapping 2-day returns ``p[t] / p[t-2] - 1`` (never sqrt-of-time),
every one the history holds (a 600-close history gives 599 and 598 scenarios). In a scenario
each position is repriced at its shocked price: a linear position (stock, ETF, crypto, future,
perpetual) moves by units x price x return; an option is repriced with its own model
(``valuation.model_for``) and its own implied vol at the shocked underlying price with the time
to expiry advanced by the horizon (calendar days / 365; intrinsic value once expired), against
its model value now; a Uniswap v3 position through ``defi.uniswap_v3.lp_values`` at the shocked
prices of its two tokens. A symbol without its own history moves with its class group's.

- ``historical``: the loss quantile at ``params.var.confidence`` (99 %), the lower
  empirical quantile ``inf{x: P(loss <= x) >= c}`` (``tail_measures``);
- ``expected_shortfall``: at ``es_confidence`` (97.5 %), the mean of the worst (1 - a) N losses
  with the boundary scenario weighted fractionally (Acerbi & Tasche 2002);
- ``parametric``: delta-gamma with the covariance of the same returns (Cornish-Fisher on the
  first four cumulants of the quadratic P&L), theta over the horizon in the mean. Vega enters
  only with implied-vol histories, which requests do not carry (the term is zero).

A VaR or shortfall below zero (a gain at the quantile) is reported as 0.

Stress (``calculate_stress_block``): each requested scenario moves the underlyings at once and
revalues fully at the valuation date (no time decay). Named scenarios live in
``data/stress_scenarios.json`` (moves per product class, per-symbol overrides, absolute
implied-vol shifts per class, with their sources); custom ones carry ``{SYM: move}`` (a class
group's name moves every member without a move of its own). ``loss`` is positive for a loss.

Batch path (``historical_var_batch``): distinct contracts are priced once per scenario
(``series_scenario_pnl``, one vectorised pricing call per model), then accounts aggregate
with a sparse accounts x series matrix of units, in row chunks, and the tail measures come
from one ``np.partition`` per chunk (``margin.bench`` times it on its synthetic book). The
per-request block is the same code on a book of one account.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtri

from .errors import EngineInputError
from .parameters import ParameterSet
from .portfolio import DAYS_PER_YEAR, LP_KIND, OPTION_KINDS, Portfolio, Position

LINEAR = 0  # P&L per unit = spot x return
OPTION = 1  # P&L per unit = model value at the shocked spot (time advanced) - value now
CUSTOM = 2  # P&L given per scenario (Uniswap v3 positions)

FUZZ = 1e-9  # tolerance of the tail counts (1 - c) x N against floating-point noise
LP_BUMP = 1e-3  # relative price bump of the LP finite differences (parametric VaR)
STRESS_FILE = Path(__file__).with_name("data") / "stress_scenarios.json"


# --------------------------------------------------------------------------- series


@dataclass
class VarSeries:
    """Distinct contracts (arrays of length n) and the return factor each one moves with."""

    kind: np.ndarray  # int8: LINEAR / OPTION
    model: np.ndarray  # int8 pricing model (options), -1 otherwise
    factor: np.ndarray  # int64: column of the scenario returns
    spot: np.ndarray  # float64: price now (underlying, or futures price for Black-76)
    strike: np.ndarray
    t: np.ndarray  # years to expiry now
    div_yield: np.ndarray
    vol: np.ndarray  # implied vol (kept in every scenario)
    is_call: np.ndarray  # bool
    base: np.ndarray | None = None  # value per unit now (options); computed when None

    def __len__(self) -> int:
        return int(self.kind.shape[0])


def option_base_values(series: VarSeries, rate: float) -> np.ndarray:
    """Model value per unit now of every option series (0 for linear ones)."""
    from . import pricing

    out = np.zeros(len(series))
    idx = np.flatnonzero(series.kind == OPTION)
    if idx.size:
        out[idx] = pricing.option_value(
            series.model[idx].astype(np.int64), series.spot[idx], series.strike[idx],
            series.t[idx], rate, series.div_yield[idx], np.nan_to_num(series.vol[idx]),
            series.is_call[idx])
    return out


def series_scenario_pnl(series: VarSeries, returns: np.ndarray, rate: float,
                        horizon_days: float = 1.0, dtype: Any = np.float64,
                        vol_shift: np.ndarray | None = None,
                        advance_time: bool = True,
                        american_grid: int | None = None) -> np.ndarray:
    """P&L per unit of every series in every scenario: (n_series, n_scenarios) of ``dtype``.

    ``returns`` is (n_scenarios, n_factors), relative moves (float32 is fine: prices are
    formed in float64). Options: one vectorised ``option_value`` call over all option series
    and scenarios, at the shocked spot, the time to expiry less ``horizon_days`` / 365 (when
    ``advance_time``) and their implied vol (+ ``vol_shift``, absolute, per series).
    ``american_grid`` (batch only, default off): American options whose early exercise
    matters are valued exactly on that many spot nodes per series and interpolated
    (``_grid_values``) instead of once per scenario.
    """
    from . import pricing

    returns = np.asarray(returns)
    n, n_scen = len(series), returns.shape[0]
    out = np.zeros((n, n_scen), dtype=dtype)
    lin = np.flatnonzero(series.kind == LINEAR)
    if lin.size:
        r = returns[:, series.factor[lin]].T.astype(np.float64)
        out[lin] = series.spot[lin, None] * r
    idx = np.flatnonzero(series.kind == OPTION)
    if idx.size:
        base = series.base if series.base is not None else option_base_values(series, rate)
        step = horizon_days / DAYS_PER_YEAR if advance_time else 0.0
        t_h = np.maximum(series.t[idx] - step, 0.0)
        vol = np.nan_to_num(series.vol[idx])
        if vol_shift is not None:
            vol = np.maximum(vol + vol_shift[idx], 0.0)
        rets = returns[:, series.factor[idx]].T.astype(np.float64)  # (n_opt, n_scen)
        gridded = np.zeros(idx.size, dtype=bool)
        if american_grid:
            gridded = _needs_exercise_model(series, idx, rate)
        exact = np.flatnonzero(~gridded)
        if exact.size:
            k = idx[exact]
            shocked = np.maximum(series.spot[k, None] * (1.0 + rets[exact]), 0.0)
            value = pricing.option_value(
                series.model[k, None].astype(np.int64), shocked, series.strike[k, None],
                t_h[exact, None], rate, series.div_yield[k, None], vol[exact, None],
                series.is_call[k, None])
            out[k] = np.asarray(value) - base[k, None]
        grid = np.flatnonzero(gridded)
        if grid.size:
            k = idx[grid]
            value = _grid_values(series, k, rets[grid], rate, t_h[grid], vol[grid],
                                 int(american_grid))
            out[k] = value - base[k, None]
    return out


def _needs_exercise_model(series: VarSeries, idx: np.ndarray, rate: float) -> np.ndarray:
    """American options whose early exercise matters (a call with q > 0, a put with r > 0)."""
    from . import pricing

    american = series.model[idx] == pricing.AMERICAN
    call = series.is_call[idx]
    return american & np.where(call, series.div_yield[idx] > 0, rate > 0)


def _grid_values(series: VarSeries, k: np.ndarray, rets: np.ndarray, rate: float,
                 t_h: np.ndarray, vol: np.ndarray, n_nodes: int) -> np.ndarray:
    """Option values at ``spot x (1 + rets)`` interpolated from ``n_nodes`` exact values.

    Nodes are equidistant in log spot over each series' own scenario range (every scenario
    falls inside); 4-point Lagrange (cubic) interpolation between them. An acceleration for
    the batch path only (the per-request block revalues every scenario exactly); its error
    is measured by ``make bench`` (``var_historical_full_revaluation``).
    """
    from . import pricing

    n_nodes = max(n_nodes, 4)
    x = np.log1p(np.maximum(rets, -1.0 + 1e-12))  # (n, n_scen) log moves
    lo = x.min(axis=1)
    hi = x.max(axis=1)
    width = np.maximum(hi - lo, 1e-12)
    nodes = lo[:, None] + width[:, None] * np.linspace(0.0, 1.0, n_nodes)[None, :]
    values = np.asarray(pricing.option_value(
        series.model[k, None].astype(np.int64), series.spot[k, None] * np.exp(nodes),
        series.strike[k, None], t_h[:, None], rate, series.div_yield[k, None], vol[:, None],
        series.is_call[k, None]))
    u = (x - lo[:, None]) / width[:, None] * (n_nodes - 1)
    i0 = np.clip(np.floor(u).astype(np.int64) - 1, 0, n_nodes - 4)
    s = u - i0
    w0 = -(s - 1) * (s - 2) * (s - 3) / 6.0
    w1 = s * (s - 2) * (s - 3) / 2.0
    w2 = -s * (s - 1) * (s - 3) / 2.0
    w3 = s * (s - 1) * (s - 2) / 6.0
    out = w0 * np.take_along_axis(values, i0, axis=1)
    out += w1 * np.take_along_axis(values, i0 + 1, axis=1)
    out += w2 * np.take_along_axis(values, i0 + 2, axis=1)
    out += w3 * np.take_along_axis(values, i0 + 3, axis=1)
    return out


# --------------------------------------------------------------------------- tail measures


def tail_counts(n: int, confidence: float) -> tuple[int, float]:
    """(k, m): the VaR is the k-th largest loss; the shortfall averages the worst m."""
    m = (1.0 - confidence) * n
    k = n - math.ceil(confidence * n - FUZZ) + 1
    return max(1, min(k, n)), max(m, FUZZ)


def tail_measures(losses: np.ndarray, confidence: float,
                  es_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """VaR at ``confidence`` and expected shortfall at ``es_confidence`` of each row of losses.

    VaR = inf{x: share of losses <= x >= c} (the ``inverted_cdf`` quantile); ES = (sum of the
    floor(m) worst + (m - floor(m)) x the next worst) / m with m = (1 - a) N (Acerbi & Tasche).
    """
    losses = np.atleast_2d(losses)
    n = losses.shape[1]
    k, _ = tail_counts(n, confidence)
    _, m = tail_counts(n, es_confidence)
    fm = min(int(math.floor(m + FUZZ)), n)
    frac = m - fm if fm < n else 0.0
    if frac < FUZZ:
        frac = 0.0
    kth = sorted({n - k, max(n - fm - 1, 0)})
    part = np.partition(losses, kth, axis=1)
    var = part[:, n - k].astype(np.float64)
    top = part[:, n - fm:].astype(np.float64).sum(axis=1) if fm else np.zeros(len(part))
    nxt = part[:, n - fm - 1].astype(np.float64) if fm < n else np.zeros(len(part))
    es = (top + frac * nxt) / (fm + frac)
    return var, es


# --------------------------------------------------------------------------- batch


def available_cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


@dataclass
class VarBatchResult:
    var: np.ndarray  # (n_accounts,) loss quantile
    expected_shortfall: np.ndarray  # (n_accounts,)
    seconds: dict[str, float]


def historical_var_batch(series: VarSeries, positions: sp.spmatrix, returns: np.ndarray,
                         rate: float = 0.0, horizon_days: float = 1.0,
                         confidence: float = 0.99, es_confidence: float = 0.975,
                         dtype: Any = np.float32, chunk_rows: int = 8192,
                         threads: int | None = None,
                         custom_pnl: np.ndarray | None = None,
                         american_grid: int | None = None) -> VarBatchResult:
    """Historical VaR / ES of many accounts with full revaluation.

    ``positions``: accounts x series sparse matrix of units (quantity x multiplier);
    ``returns``: (n_scenarios, n_factors) scenario returns of the factors ``series.factor``
    points at (float32 is fine). Each series is priced once per scenario; accounts aggregate
    with ``positions @ pnl`` in chunks of ``chunk_rows`` accounts (threads: scipy's sparse
    product and numpy's partition release the GIL). ``custom_pnl`` (n_series, n_scenarios)
    replaces the rows of CUSTOM series.
    """
    t0 = time.perf_counter()
    pnl = series_scenario_pnl(series, returns, rate, horizon_days, dtype,
                              american_grid=american_grid)
    if custom_pnl is not None:
        cust = np.flatnonzero(series.kind == CUSTOM)
        pnl[cust] = custom_pnl[cust]
    t1 = time.perf_counter()
    S = sp.csr_matrix(positions, dtype=dtype)
    n_acc = S.shape[0]
    var = np.zeros(n_acc)
    es = np.zeros(n_acc)
    neg = -pnl  # losses per unit

    def run(lo: int) -> None:
        hi = min(lo + chunk_rows, n_acc)
        losses = np.asarray(S[lo:hi] @ neg)
        v, e = tail_measures(losses, confidence, es_confidence)
        var[lo:hi] = v
        es[lo:hi] = e

    starts = range(0, n_acc, chunk_rows)
    workers = threads if threads is not None else min(available_cpus(), 8)
    if workers > 1 and n_acc > chunk_rows:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for lo in starts:
            run(lo)
    t2 = time.perf_counter()
    return VarBatchResult(var, es, {"pricing_s": t1 - t0, "aggregate_s": t2 - t1})


# --------------------------------------------------------------------------- request path


def _add_warning(valuation: Any, message: str) -> None:
    warnings = getattr(valuation, "warnings", None)
    if isinstance(warnings, list) and message not in warnings:
        warnings.append(message)


@dataclass
class _Book:
    """One account's positions as series (options/linear), LP positions aside."""

    series: VarSeries
    units: np.ndarray  # per series
    factor_names: list[str]  # symbol whose history each factor column is
    lp: list[tuple[Position, int, int]]  # (position, factor of token0, factor of token1)
    position_series: list[int]  # series index of each non-LP position (-1: LP / skipped)


def _factor_symbol(portfolio: Portfolio, symbol: str, history: dict[str, Any],
                   field: str, valuation: Any) -> str:
    if symbol in history:
        return symbol
    und = portfolio.underlyings.get(symbol)
    if und is not None and und.class_group in history:
        _add_warning(valuation, f"history: {symbol} has no history; it moves with its class "
                                f"group {und.class_group}")
        return und.class_group
    raise EngineInputError("history", "missing_symbol",
                           f"no history for {symbol} (held in {field}) nor for its class group")


def _model_and_spot(portfolio: Portfolio, valuation: Any, i: int, p: Position) -> tuple[int, float]:
    from .valuation import model_for, position_spot

    models = getattr(valuation, "models", None)
    spots = getattr(valuation, "spots", None)
    model = int(models[i]) if models is not None and len(models) > i and models[i] >= 0 \
        else model_for(p, portfolio.underlyings[p.root])
    spot = float(spots[i]) if spots is not None and len(spots) > i and np.isfinite(spots[i]) \
        else float(position_spot(portfolio, p))
    return model, spot


def _build_book(portfolio: Portfolio, valuation: Any, factor_of: dict[str, int]) -> _Book:
    """Series of a request's positions; ``factor_of`` maps symbols to factor columns."""
    kind, model, factor, spot, strike, t, q, vol, call, units = ([] for _ in range(10))
    lp: list[tuple[Position, int, int]] = []
    pos_series: list[int] = []
    vols = getattr(valuation, "vols", None)
    for i, p in enumerate(portfolio.positions):
        if p.kind == LP_KIND:
            lp.append((p, factor_of[p.lp.token0], factor_of[p.lp.token1]))
            pos_series.append(-1)
            continue
        m, s = _model_and_spot(portfolio, valuation, i, p)
        tte = max(float(p.time_to_expiry or 0.0), 0.0)
        if p.kind in OPTION_KINDS:
            v = float(vols[i]) if vols is not None else float("nan")
            if not np.isfinite(v) and p.implied_vol is not None:
                v = float(p.implied_vol)
            if not np.isfinite(v):
                if tte > 0:
                    raise EngineInputError(f"positions[{p.index}].price", "required",
                                           "var needs the option's implied volatility")
                v = 0.0
            kind.append(OPTION)
            model.append(m)
            strike.append(float(p.strike))
            t.append(tte)
            vol.append(v)
            call.append(p.is_call)
            q.append(float(portfolio.underlyings[p.root].dividend_yield or 0.0))
        else:
            kind.append(LINEAR)
            model.append(-1)
            strike.append(0.0)
            t.append(0.0)
            vol.append(float("nan"))
            call.append(False)
            q.append(0.0)
        factor.append(factor_of[p.root])
        spot.append(s)
        units.append(float(p.quantity) * float(p.multiplier))
        pos_series.append(len(kind) - 1)
    series = VarSeries(
        kind=np.asarray(kind, dtype=np.int8), model=np.asarray(model, dtype=np.int8),
        factor=np.asarray(factor, dtype=np.int64), spot=np.asarray(spot, dtype=np.float64),
        strike=np.asarray(strike, dtype=np.float64), t=np.asarray(t, dtype=np.float64),
        div_yield=np.asarray(q, dtype=np.float64), vol=np.asarray(vol, dtype=np.float64),
        is_call=np.asarray(call, dtype=bool))
    names = sorted(factor_of, key=factor_of.get)
    return _Book(series, np.asarray(units, dtype=np.float64), names, lp, pos_series)


def _lp_available() -> bool:
    try:
        from .defi import uniswap_v3
    except ImportError:  # pragma: no cover - the module ships with the engine
        return False
    return hasattr(uniswap_v3, "lp_values")


def _lp_pnl(portfolio: Portfolio, position: Position, moves0: np.ndarray,
            moves1: np.ndarray) -> np.ndarray:
    """LP P&L at relative moves of its two tokens (broadcast arrays)."""
    from .defi import uniswap_v3

    lp = position.lp
    p0 = float(portfolio.underlyings[lp.token0].price)
    p1 = float(portfolio.underlyings[lp.token1].price)
    now = float(uniswap_v3.lp_value(lp, p0, p1))
    vals = uniswap_v3.lp_values(lp, p0 * (1.0 + np.asarray(moves0)),
                                p1 * (1.0 + np.asarray(moves1)), base_prices=(p0, p1))
    return np.asarray(vals, dtype=np.float64) - now


def _history_returns(portfolio: Portfolio, symbols: list[str], horizon: int) -> np.ndarray:
    """(n_scenarios, n_symbols) overlapping ``horizon``-day relative returns."""
    closes = np.column_stack([np.asarray(portfolio.history[s], dtype=np.float64)
                              for s in symbols])
    return closes[horizon:] / closes[:-horizon] - 1.0


def _factors(portfolio: Portfolio, valuation: Any) -> dict[str, str]:
    """Symbol held -> the history symbol it moves with."""
    history = portfolio.history or {}
    out: dict[str, str] = {}
    for p in portfolio.positions:
        syms = (p.lp.token0, p.lp.token1) if p.kind == LP_KIND else (p.root,)
        for s in syms:
            if s not in out:
                out[s] = _factor_symbol(portfolio, s, history, f"positions[{p.index}]",
                                        valuation)
    return out


def _check_history(portfolio: Portfolio, min_history: int) -> None:
    history = portfolio.history or {}
    lengths = {len(v) for v in history.values()}
    if len(lengths) > 1:
        raise EngineInputError("history", "unequal_lengths",
                               "every symbol's history must have the same length")
    n = lengths.pop() if lengths else 0
    if n < min_history:
        raise EngineInputError("history", "too_short",
                               f"history has {n} closes, at least {min_history} are needed")
    for sym, values in history.items():
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise EngineInputError(f"history.{sym}", "invalid",
                                   "closes must be finite and positive")


def portfolio_scenario_pnl(portfolio: Portfolio, valuation: Any, horizon: int,
                           include_lp: bool = True) -> np.ndarray:
    """The account's full-revaluation P&L in every ``horizon``-day historical scenario."""
    fac = _factors(portfolio, valuation)
    hist_syms = list(dict.fromkeys(fac.values()))
    col = {s: k for k, s in enumerate(hist_syms)}
    factor_of = {sym: col[h] for sym, h in fac.items()}
    returns = _history_returns(portfolio, hist_syms, horizon)
    book = _build_book(portfolio, valuation, factor_of)
    pnl = np.zeros(returns.shape[0])
    if len(book.series):
        per_unit = series_scenario_pnl(book.series, returns, float(portfolio.rate), horizon)
        pnl += book.units @ per_unit
    if include_lp:
        for p, f0, f1 in book.lp:
            pnl += _lp_pnl(portfolio, p, returns[:, f0], returns[:, f1])
    return pnl


def parametric_var(portfolio: Portfolio, valuation: Any, horizon: int, confidence: float,
                   include_lp: bool = True) -> float:
    """Delta-gamma VaR (Cornish-Fisher) with the covariance of the ``horizon``-day returns."""
    from . import pricing

    fac = _factors(portfolio, valuation)
    hist_syms = list(dict.fromkeys(fac.values()))
    col = {s: k for k, s in enumerate(hist_syms)}
    factor_of = {sym: col[h] for sym, h in fac.items()}
    returns = _history_returns(portfolio, hist_syms, horizon)
    nf = len(hist_syms)
    cov = np.atleast_2d(np.cov(returns, rowvar=False)) if returns.shape[0] > 1 \
        else np.zeros((nf, nf))
    book = _build_book(portfolio, valuation, factor_of)
    s = book.series
    delta = np.zeros(nf)
    gamma = np.zeros((nf, nf))
    theta = 0.0
    lin = np.flatnonzero(s.kind == LINEAR)
    np.add.at(delta, s.factor[lin], book.units[lin] * s.spot[lin])
    opt = np.flatnonzero(s.kind == OPTION)
    if opt.size:
        g = pricing.greeks(s.model[opt].astype(np.int64), s.spot[opt], s.strike[opt], s.t[opt],
                           float(portfolio.rate), s.div_yield[opt], s.vol[opt], s.is_call[opt])
        u = book.units[opt]
        sp_ = s.spot[opt]
        np.add.at(delta, s.factor[opt], u * np.asarray(g["delta"]) * sp_)
        f = s.factor[opt]
        np.add.at(gamma, (f, f), u * np.asarray(g["gamma"]) * sp_ * sp_)
        theta += float(np.sum(u * np.asarray(g["theta"]))) * horizon / DAYS_PER_YEAR
    if include_lp:
        h = LP_BUMP
        for p, f0, f1 in book.lp:
            pts = np.array([[0, 0], [h, 0], [-h, 0], [0, h], [0, -h], [h, h], [-h, -h]])
            v = _lp_pnl(portfolio, p, pts[:, 0], pts[:, 1])
            if f0 == f1:  # both tokens move with one factor
                line = _lp_pnl(portfolio, p, np.array([0.0, h, -h]), np.array([0.0, h, -h]))
                delta[f0] += (line[1] - line[2]) / (2 * h)
                gamma[f0, f0] += (line[1] - 2 * line[0] + line[2]) / (h * h)
                continue
            delta[f0] += (v[1] - v[2]) / (2 * h)
            delta[f1] += (v[3] - v[4]) / (2 * h)
            g00 = (v[1] - 2 * v[0] + v[2]) / (h * h)
            g11 = (v[3] - 2 * v[0] + v[4]) / (h * h)
            g01 = ((v[5] - 2 * v[0] + v[6]) / (h * h) - g00 - g11) / 2.0
            gamma[f0, f0] += g00
            gamma[f1, f1] += g11
            gamma[f0, f1] += g01
            gamma[f1, f0] += g01
    return delta_gamma_var(delta, gamma, cov, confidence, theta)


def delta_gamma_var(delta: np.ndarray, gamma: np.ndarray, cov: np.ndarray, confidence: float,
                    theta: float = 0.0) -> float:
    """Loss quantile of P&L = theta + delta'x + x'Gx/2, x ~ N(0, cov), by Cornish-Fisher."""
    delta = np.asarray(delta, dtype=np.float64)
    gs = np.asarray(gamma, dtype=np.float64) @ cov
    sd = cov @ delta
    gs2 = gs @ gs
    mean = theta + 0.5 * np.trace(gs)
    var = float(delta @ sd + 0.5 * np.trace(gs2))
    if var <= 0:
        return -mean
    sigma = math.sqrt(var)
    k3 = 3.0 * float(sd @ np.asarray(gamma) @ sd) + float(np.trace(gs2 @ gs))
    k4 = 12.0 * float(sd @ np.asarray(gamma) @ cov @ np.asarray(gamma) @ sd) \
        + 3.0 * float(np.trace(gs2 @ gs2))
    skew = k3 / sigma ** 3
    kurt = k4 / sigma ** 4
    z = float(ndtri(1.0 - confidence))
    w = (z + (z * z - 1) * skew / 6 + (z ** 3 - 3 * z) * kurt / 24
         - (2 * z ** 3 - 5 * z) * skew * skew / 36)
    return float(-(mean + sigma * w))


def calculate_var_block(portfolio: Portfolio, params: ParameterSet,
                        valuation: Any) -> dict | None:
    """The ``var`` block (CALCULATOR.md key order, raw floats), or None without history."""
    if not portfolio.history:
        return None
    cfg = params.var
    _check_history(portfolio, cfg.min_history)
    include_lp = True
    if any(p.kind == LP_KIND for p in portfolio.positions) and not _lp_available():
        include_lp = False  # pragma: no cover - the module ships with the engine
        _add_warning(valuation, "var: Uniswap v3 positions are left out (no LP valuation)")
    horizons = []
    for h in cfg.horizons:
        pnl = portfolio_scenario_pnl(portfolio, valuation, h, include_lp)
        var, es = tail_measures(-pnl[None, :], cfg.confidence, cfg.es_confidence)
        par = parametric_var(portfolio, valuation, h, cfg.confidence, include_lp)
        horizons.append({"days": h, "historical": max(0.0, float(var[0])),
                         "expected_shortfall": max(0.0, float(es[0])),
                         "parametric": max(0.0, par)})
    return {"confidence": cfg.confidence, "horizons": horizons}


# --------------------------------------------------------------------------- stress


@lru_cache(maxsize=1)
def _stress_text() -> str:
    return STRESS_FILE.read_text(encoding="utf-8")


def named_scenarios() -> dict[str, dict[str, Any]]:
    """The shipped named stress scenarios (a fresh copy)."""
    return json.loads(_stress_text())["scenarios"]


def scenario_moves(unds: dict[str, Any], i: int, scenario: Any,
                   named: dict[str, dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """(price move, vol shift) per underlying symbol of one requested scenario (``unds``: the
    underlyings by symbol; the firm-wide simulator, ``shock``, applies them to every book)."""
    moves_in = dict(getattr(scenario, "moves", None) or {})
    name = getattr(scenario, "name", None)
    price: dict[str, float] = {}
    vol: dict[str, float] = {}
    if not moves_in:
        spec = named.get(name)
        if spec is None:
            raise EngineInputError(
                f"stress[{i}]", "unknown_scenario",
                f"unknown stress scenario {name!r}; named ones are {', '.join(named)}")
        by_class = spec.get("moves", {})
        by_symbol = spec.get("symbols", {})
        vol_class = spec.get("vol_shift", {})
        for sym, und in unds.items():
            price[sym] = float(by_symbol.get(sym, by_class.get(und.product_class, 0.0)))
            vol[sym] = float(vol_class.get(und.product_class, 0.0))
        return price, vol
    groups = {u.class_group for u in unds.values()}
    for sym, mv in moves_in.items():
        field = f"stress[{i}].moves.{sym}"
        if sym not in unds and sym not in groups:
            raise EngineInputError(field, "unknown_symbol",
                                   f"{sym} is neither an underlying nor a class group")
        if not isinstance(mv, (int, float)) or not math.isfinite(mv) or mv < -1.0:
            raise EngineInputError(field, "invalid", "a move must be a number >= -1")
    for sym, und in unds.items():
        mv = moves_in.get(sym, moves_in.get(und.class_group, 0.0))
        price[sym] = float(mv)
        vol[sym] = 0.0
    return price, vol


def calculate_stress_block(portfolio: Portfolio, params: ParameterSet,
                           valuation: Any) -> list | None:
    """The ``stress`` list ``[{"scenario", "loss"}]``, or None when no scenario is asked."""
    if not portfolio.stress:
        return None
    named = named_scenarios()
    syms = list(portfolio.underlyings)
    col = {s: k for k, s in enumerate(syms)}
    book = _build_book(portfolio, valuation, col)
    s = book.series
    include_lp = _lp_available()
    if book.lp and not include_lp:  # pragma: no cover - the module ships with the engine
        _add_warning(valuation, "stress: Uniswap v3 positions are left out (no LP valuation)")
    out = []
    rate = float(portfolio.rate)
    base = option_base_values(s, rate) if len(s) else np.zeros(0)
    s.base = base
    for i, scenario in enumerate(portfolio.stress):
        price, vol = scenario_moves(portfolio.underlyings, i, scenario, named)
        moves = np.array([[price[x] for x in syms]])
        pnl = 0.0
        if len(s):
            shift = np.array([vol[syms[f]] for f in s.factor])
            per_unit = series_scenario_pnl(s, moves, rate, 0.0, vol_shift=shift,
                                           advance_time=False)
            pnl += float(book.units @ per_unit[:, 0])
        if include_lp:
            for p, f0, f1 in book.lp:
                pnl += float(_lp_pnl(portfolio, p, moves[:, f0], moves[:, f1])[0])
        out.append({"scenario": getattr(scenario, "name", f"stress[{i}]"), "loss": 0.0 - pnl})
    return out
