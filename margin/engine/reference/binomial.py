"""Reference American values by a Leisen & Reimer (1996) binomial tree: a TEST ORACLE.

The yardstick METHODOLOGY.md section 1 states its $0.035 tolerance against ("the binomial
limit"); tests/engine/test_pricing.py checks ``pricing.AMERICAN`` and Bjerksund-Stensland 2002
against it. Far too slow for margin (O(steps^2) per option); production pricing never imports
it. The numpy tree and the numba kernel compute the same values (the kernel is the default
when ``pricing.USE_NUMBA``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from .. import pricing

Array = NDArray[np.float64]


@np.errstate(all="ignore")  # NaN/inf inputs propagate as NaN, no warnings
def binomial_american(spot: ArrayLike, strike: ArrayLike, t: ArrayLike, rate: ArrayLike,
                      div_yield: ArrayLike, vol: ArrayLike, is_call: ArrayLike,
                      steps: int = 1001) -> Array:
    """Reference American value: Leisen & Reimer (1996) binomial tree (Peizer-Pratt method 2
    inversion, odd ``steps``; an even count is raised by one), with early exercise at every node.

    The test yardstick of ``pricing.AMERICAN`` and Bjerksund-Stensland 2002 (METHODOLOGY.md:
    within $0.035 per unit of the binomial limit). Elements with t <= 0, vol <= 0 or a
    non-positive spot or strike take ``option_value``'s special-case values. Uses the numba
    kernel when ``pricing.USE_NUMBA``.
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError("steps must be positive")
    steps += 1 - steps % 2
    shape, codes, calls, (s, k, tt, r, q, v) = pricing._prepare(
        pricing.AMERICAN, is_call, spot, strike, t, rate, div_yield, vol)
    out = pricing._value_numpy(codes, s, k, tt, r, q, np.zeros_like(v), calls)
    regular = (tt > 0.0) & (v > 0.0) & (s > 0.0) & (k > 0.0)
    if regular.any():
        g = regular
        if pricing.USE_NUMBA:
            out[g] = lr_american_kernel(s[g], k[g], tt[g], r[g], q[g], v[g], calls[g],
                                                 steps)
        else:
            out[g] = _lr_american_numpy(s[g], k[g], tt[g], r[g], q[g], v[g], calls[g], steps)
    nan = np.isnan(s) | np.isnan(k) | np.isnan(tt) | np.isnan(r) | np.isnan(q) | np.isnan(v)
    out[nan] = np.nan
    return out.reshape(shape)


def _lr_h_numpy(z: Array, n: int) -> Array:
    """Peizer-Pratt inversion, method 2 (Leisen & Reimer 1996): h(z) = 1/2 + sign(z) sqrt(1/4 -
    e/4), e = exp(-a^2 (n + 1/6)), with 1/2 - sqrt(1/4 - e/4) = (e/2) / (1 + sqrt(1 - e)) so
    that a far tail (h near 0) loses no digits; use h(-z) for 1 - h(z)."""
    a = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0))
    e = np.exp(-a * a * (n + 1.0 / 6.0))
    small = 0.5 * e / (1.0 + np.sqrt(1.0 - e))
    return np.where(z >= 0.0, 1.0 - small, small)


def _lr_american_numpy(s: Array, k: Array, t: Array, r: Array, q: Array, v: Array,
                       call: NDArray[np.bool_], n: int) -> Array:
    """Leisen-Reimer tree over arrays of options (one backward induction for all)."""
    dt = t / n
    sv = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / sv
    d2 = d1 - sv
    p, p_down = _lr_h_numpy(d2, n), _lr_h_numpy(-d2, n)
    growth = np.exp((r - q) * dt)
    up = growth * _lr_h_numpy(d1, n) / p
    down = growth * _lr_h_numpy(-d1, n) / p_down  # (growth - p up) / (1 - p) without cancellation
    disc = np.exp(-r * dt)
    pu, pd = (disc * p)[:, None], (disc * p_down)[:, None]
    sign = np.where(call, 1.0, -1.0)[:, None]
    kk = k[:, None]
    j = np.arange(n + 1)
    log_ratio = np.log(up / down)[:, None]
    levels = s[:, None] * np.exp(n * np.log(down)[:, None] + j * log_ratio)
    values = np.maximum(sign * (levels - kk), 0.0)
    for i in range(n - 1, -1, -1):
        levels = levels[:, : i + 1] / down[:, None]
        values = np.maximum(pd * values[:, : i + 1] + pu * values[:, 1 : i + 2],
                            sign * (levels - kk))
    return values[:, 0]


# --------------------------------------------------------------------------- numba kernel


@njit(cache=True, error_model="numpy")
def _lr_h(z: float, n: int) -> float:
    """Peizer-Pratt inversion, method 2 (Leisen & Reimer 1996), without cancellation in the
    tails; h(-z) = 1 - h(z)."""
    a = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0))
    e = math.exp(-a * a * (n + 1.0 / 6.0))
    small = 0.5 * e / (1.0 + math.sqrt(1.0 - e))
    return 1.0 - small if z >= 0.0 else small


@njit(cache=True, error_model="numpy")
def lr_american_one(s: float, k: float, t: float, r: float, q: float, v: float, is_call: bool,
                    n: int) -> float:
    """Leisen-Reimer (1996) binomial tree with early exercise; n odd; t, v, s, k > 0."""
    dt = t / n
    sv = v * math.sqrt(t)
    d1 = (math.log(s / k) + (r - q + 0.5 * v * v) * t) / sv
    d2 = d1 - sv
    p, p_down = _lr_h(d2, n), _lr_h(-d2, n)
    growth = math.exp((r - q) * dt)
    up = growth * _lr_h(d1, n) / p
    down = growth * _lr_h(-d1, n) / p_down
    disc = math.exp(-r * dt)
    pu, pd = disc * p, disc * p_down
    sign = 1.0 if is_call else -1.0
    values = np.empty(n + 1)
    ratio = up / down
    level = s * down**n
    for j in range(n + 1):
        values[j] = max(sign * (level - k), 0.0)
        level *= ratio
    for i in range(n - 1, -1, -1):
        level = s * down**i
        for j in range(i + 1):
            cont = pd * values[j] + pu * values[j + 1]
            values[j] = max(cont, sign * (level - k))
            level *= ratio
    return values[0]


@njit(cache=True, parallel=True, error_model="numpy")
def lr_american_kernel(spot: np.ndarray, strike: np.ndarray, t: np.ndarray, rate: np.ndarray,
                       div_yield: np.ndarray, vol: np.ndarray, is_call: np.ndarray,
                       steps: int) -> np.ndarray:
    """Leisen-Reimer American values of flat arrays (only regular elements: t, vol, S, K > 0)."""
    n = spot.shape[0]
    out = np.empty(n)
    for i in prange(n):
        out[i] = lr_american_one(spot[i], strike[i], t[i], rate[i], div_yield[i], vol[i],
                                 is_call[i], steps)
    return out
