"""Bjerksund & Stensland (2002) American values on the whole domain: a COMPARISON ORACLE.

``pricing.AMERICAN`` (Andersen-Lake-Offengelt) replaced it: METHODOLOGY.md names BS2002 as
meeting the $0.035 tolerance, and measured against the binomial tree it does only on short-dated
near-the-money options (tests/engine/test_pricing.py keeps that comparison). Production pricing
still uses the same formula (``pricing._bs2002_numpy`` and its numba kernel) only where total
volatility is below 1e-3, where the ALO boundary equations degenerate; it never imports this
module.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import pricing

Array = NDArray[np.float64]


@np.errstate(all="ignore")  # NaN/inf inputs propagate as NaN, no warnings
def bs2002_value(spot: ArrayLike, strike: ArrayLike, t: ArrayLike, rate: ArrayLike,
                 div_yield: ArrayLike, vol: ArrayLike, is_call: ArrayLike) -> Array:
    """American values by Bjerksund & Stensland (2002) on the whole domain, the engine's earlier
    ``AMERICAN`` model, kept as a comparison oracle: floored at the European value, European (at least intrinsic)
    when the put-space yield is <= 0 (a call with q <= 0, a put with r <= 0). A lower bound of
    the American value that misses the binomial limit by more than METHODOLOGY.md's $0.035
    per unit on long-dated, deep in-the-money or high-rate options (the module docstring).
    Special cases (t <= 0, vol <= 0, ...) as ``pricing.option_value``. Numpy only."""
    shape, codes, calls, (s, k, tt, r, q, v) = pricing._prepare(
        pricing.AMERICAN, is_call, spot, strike, t, rate, div_yield, vol)
    out = pricing._value_numpy(codes, s, k, tt, r, q, np.zeros_like(v), calls)  # the special cases
    regular = (tt > 0.0) & (v > 0.0) & (s > 0.0) & (k > 0.0)
    if regular.any():
        g = regular
        out[g] = pricing._bs2002_numpy(s[g], k[g], tt[g], r[g], q[g], v[g], calls[g])
    nan = np.isnan(s) | np.isnan(k) | np.isnan(tt) | np.isnan(r) | np.isnan(q) | np.isnan(v)
    out[nan] = np.nan
    return out.reshape(shape)
