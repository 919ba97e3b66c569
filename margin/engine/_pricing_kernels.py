"""Numba kernels behind ``margin.engine.pricing`` (the fast path, selected by ``pricing.USE_NUMBA``).

Scalar ports of the numpy reference in ``pricing.py``, one element per loop iteration, parallel
over elements. The formulas and their sources are documented there; this module repeats only
the short citation of each. Importing it compiles nothing: kernels compile on first use and are
cached on disk (``cache=True``). ``error_model="numpy"``: a division by zero gives inf/NaN (caught
like numpy's) instead of raising inside a parallel loop.

Model codes and constants must stay equal to those of ``pricing.py`` (the tests check it).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

EUROPEAN = 0
AMERICAN = 1
BLACK76 = 2

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_EXP_MAX = 700.0  # exp() of anything larger overflows soon after: switch to log space

# Bjerksund & Stensland (2002): the first exercise-boundary date t1 = (sqrt(5) - 1) / 2 * T, so
# the correlation sqrt(t1 / T) of their bivariate terms is one constant.
T1_FRACTION = 0.5 * (math.sqrt(5.0) - 1.0)
RHO = math.sqrt(T1_FRACTION)

# Bivariate normal at the fixed correlation +/-RHO (Drezner & Wesolowsky 1990; Genz 2004):
# M(a, b, rho) = N(a) N(b) + 1/(2 pi) int_0^asin(rho) exp(-(a^2 + b^2 - 2ab sin u) / (2 cos^2 u)) du,
# integrated with a 12-point Gauss-Legendre rule in u. Genz uses 20 points to cover every
# |rho| < 0.925; at this one rho 12 points are accurate to 2e-15 (tests check it against Genz).
BVN_POINTS = 12
_GL_X, _GL_W = np.polynomial.legendre.leggauss(BVN_POINTS)
_ASIN_RHO = math.asin(RHO)
_SN = np.sin(0.5 * _ASIN_RHO * (_GL_X + 1.0))
BVN_W = _GL_W * (0.25 * _ASIN_RHO / math.pi)
BVN_C1 = _SN / (1.0 - _SN * _SN)  # coefficient of a*b in the exponent
BVN_C2 = 1.0 / (1.0 - _SN * _SN)  # coefficient of -(a^2 + b^2) / 2
_BVN_DECAY = 1.0 / (1.0 + _SN.max())  # every exponent is <= e - (a^2 + b^2) / 2 * _BVN_DECAY
_NEGLIGIBLE = -50.0  # exp(-50) ~ 2e-22: terms below it are dropped
_UNDERFLOW = -745.0


@njit(cache=True, error_model="numpy")
def ncdf(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x * _INV_SQRT2)


@njit(cache=True, error_model="numpy")
def log_ncdf(x: float) -> float:
    """log N(x); asymptotic series (Abramowitz & Stegun 26.2.12) far in the left tail."""
    if x > -35.0:
        return math.log(ncdf(x))
    z2 = x * x
    series = 1.0 - 1.0 / z2 + 3.0 / z2**2 - 15.0 / z2**3 + 105.0 / z2**4
    return -0.5 * z2 - math.log(-x) - _HALF_LOG_2PI + math.log(series)


@njit(cache=True, error_model="numpy")
def ncdf_scaled(x: float, e: float) -> float:
    """exp(e) * N(x) without overflow when e is large and N(x) small."""
    if e < _EXP_MAX:
        return 0.0 if e < _UNDERFLOW else math.exp(e) * ncdf(x)
    return math.exp(e + log_ncdf(x))


@njit(cache=True, error_model="numpy")
def bvn_scaled(a: float, b: float, negative: bool, e: float) -> float:
    """exp(e) * M(a, b, +/-RHO) with the fixed-correlation Gauss-Legendre rule above."""
    hk = -a * b if negative else a * b
    hs = 0.5 * (a * a + b * b)
    acc = 0.0
    if e - hs * _BVN_DECAY > _NEGLIGIBLE:
        for i in range(BVN_POINTS):
            arg = e + BVN_C1[i] * hk - BVN_C2[i] * hs
            if arg > _UNDERFLOW:
                acc += BVN_W[i] * math.exp(arg)
    if e < _UNDERFLOW:
        base = 0.0
    elif e < _EXP_MAX:
        base = math.exp(e) * ncdf(a) * ncdf(b)
    else:
        base = math.exp(e + log_ncdf(a) + log_ncdf(b))
    return base - acc if negative else base + acc


@njit(cache=True, error_model="numpy")
def bsm_value(s: float, k: float, t: float, r: float, q: float, v: float, is_call: bool) -> float:
    """Black-Scholes-Merton with continuous yield q (Haug 2007, 1.1.6); needs t, v, s, k > 0."""
    sv = v * math.sqrt(t)
    d1 = (math.log(s / k) + (r - q + 0.5 * v * v) * t) / sv
    d2 = d1 - sv
    if is_call:
        return s * math.exp(-q * t) * ncdf(d1) - k * math.exp(-r * t) * ncdf(d2)
    return k * math.exp(-r * t) * ncdf(-d2) - s * math.exp(-q * t) * ncdf(-d1)


@njit(cache=True, error_model="numpy")
def deterministic_value(model: int, s: float, k: float, t: float, r: float, q: float,
                        is_call: bool) -> float:
    """Zero-volatility value: discounted forward intrinsic (European, Black-76), or the best of
    exercising now, at expiry or at the stationary date of S e^{-q tau} - K e^{-r tau}."""
    sign = 1.0 if is_call else -1.0
    forward = sign * (s * math.exp(-q * t) - k * math.exp(-r * t))
    if model != AMERICAN:
        return max(forward, 0.0)
    best = max(0.0, forward, sign * (s - k))
    if q != r and q * s > 0.0 and r * k > 0.0:
        tau = math.log((q * s) / (r * k)) / (q - r)
        if 0.0 < tau < t:
            best = max(best, sign * (s * math.exp(-q * tau) - k * math.exp(-r * tau)))
    return best


@njit(cache=True, error_model="numpy")
def _phi(ls: float, t: float, sv: float, gamma: float, lam: float, kappa: float, mu: float,
         lh: float, li: float, e0: float) -> float:
    """exp(e0) * phi(S, t, gamma, H, I) of Bjerksund & Stensland (2002) (Haug 2007, 3.3), with
    every power folded into one exponent (ls, lh, li are log S, log H, log I)."""
    d = -(ls - lh + mu * t) / sv
    e = e0 + lam * t + gamma * ls
    return ncdf_scaled(d, e) - ncdf_scaled(d - 2.0 * (li - ls) / sv, e + kappa * (li - ls))


@njit(cache=True, error_model="numpy")
def _psi(ls: float, t: float, sv: float, t1: float, sv1: float, gamma: float, lam: float,
         kappa: float, mu: float, lh: float, li2: float, li1: float, e0: float) -> float:
    """exp(e0) * psi(S, T, gamma, H, I2, I1, t1) of Bjerksund & Stensland (2002) (Haug 2007, 3.3)."""
    e1 = (ls - li1 + mu * t1) / sv1
    e2 = (2.0 * li2 - ls - li1 + mu * t1) / sv1
    e3 = (ls - li1 - mu * t1) / sv1
    e4 = (2.0 * li2 - ls - li1 - mu * t1) / sv1
    f1 = (ls - lh + mu * t) / sv
    f2 = (2.0 * li2 - ls - lh + mu * t) / sv
    f3 = (2.0 * li1 - ls - lh + mu * t) / sv
    f4 = (ls + 2.0 * li1 - lh - 2.0 * li2 + mu * t) / sv
    e = e0 + lam * t + gamma * ls
    return (bvn_scaled(-e1, -f1, False, e)
            - bvn_scaled(-e2, -f2, False, e + kappa * (li2 - ls))
            - bvn_scaled(-e3, -f3, True, e + kappa * (li1 - ls))
            + bvn_scaled(-e4, -f4, True, e + kappa * (li1 - li2)))


@njit(cache=True, error_model="numpy")
def bs2002_call(s: float, x: float, t: float, r: float, q: float, v: float) -> float:
    """American call, Bjerksund & Stensland (2002) (Haug 2007, 3.3), for q > 0 (b = r - q < r);
    t, v, s, x > 0. The result is at least intrinsic; a non-finite result (only at tiny vols)
    falls back to max(European, zero-vol value)."""
    b = r - q
    v2 = v * v
    t1 = T1_FRACTION * t
    c = 0.5 - b / v2
    root = math.sqrt(c * c + 2.0 * r / v2)
    beta = c + root
    beta_minus_1 = 2.0 * q / (v2 * (root + 1.0 - c))  # beta - 1 without cancellation
    b_inf = beta / beta_minus_1 * x
    b0 = max(x, r / q * x)
    scale = x * x / ((b_inf - b0) * b0)
    # h <= 0 keeps the boundary in [B0, B_inf]: with b < 0 and a low vol the raw h(tau) is
    # positive and would put the boundary below its own expiry value B0 (even below X)
    h1 = min(-(b * t1 + 2.0 * v * math.sqrt(t1)) * scale, 0.0)
    h2 = min(-(b * t + 2.0 * v * math.sqrt(t)) * scale, 0.0)
    i1 = b0 - (b_inf - b0) * math.expm1(h1)
    i2 = b0 - (b_inf - b0) * math.expm1(h2)
    if s >= i2:
        return s - x
    ls, lx, li1, li2 = math.log(s), math.log(x), math.log(i1), math.log(i2)
    sv, sv1 = v * math.sqrt(t), v * math.sqrt(t1)
    # lambda(gamma) = -r + gamma b + gamma (gamma - 1) v^2 / 2: -r, -q and 0 (beta solves it)
    k0, k1, kb = 2.0 * b / v2 - 1.0, 2.0 * b / v2 + 1.0, 2.0 * b / v2 + 2.0 * beta - 1.0
    m0, m1, mb = b - 0.5 * v2, b + 0.5 * v2, b + (beta - 0.5) * v2
    eb2, eb1 = -beta * li2, -beta * li1  # alpha_k = (I_k - X) I_k^-beta, powers in the exponent
    value = (i2 - x) * math.exp(beta * (ls - li2))
    value -= (i2 - x) * _phi(ls, t1, sv1, beta, 0.0, kb, mb, li2, li2, eb2)
    value += _phi(ls, t1, sv1, 1.0, -q, k1, m1, li2, li2, 0.0)
    value -= _phi(ls, t1, sv1, 1.0, -q, k1, m1, li1, li2, 0.0)
    value -= x * _phi(ls, t1, sv1, 0.0, -r, k0, m0, li2, li2, 0.0)
    value += x * _phi(ls, t1, sv1, 0.0, -r, k0, m0, li1, li2, 0.0)
    value += (i1 - x) * _phi(ls, t1, sv1, beta, 0.0, kb, mb, li1, li2, eb1)
    value -= (i1 - x) * _psi(ls, t, sv, t1, sv1, beta, 0.0, kb, mb, li1, li2, li1, eb1)
    value += _psi(ls, t, sv, t1, sv1, 1.0, -q, k1, m1, li1, li2, li1, 0.0)
    value -= _psi(ls, t, sv, t1, sv1, 1.0, -q, k1, m1, lx, li2, li1, 0.0)
    value -= x * _psi(ls, t, sv, t1, sv1, 0.0, -r, k0, m0, li1, li2, li1, 0.0)
    value += x * _psi(ls, t, sv, t1, sv1, 0.0, -r, k0, m0, lx, li2, li1, 0.0)
    if not math.isfinite(value):
        value = max(bsm_value(s, x, t, r, q, v, True),
                    deterministic_value(AMERICAN, s, x, t, r, q, True))
    return min(max(value, s - x, 0.0), s)


@njit(cache=True, error_model="numpy")
def value_one(model: int, s: float, k: float, t: float, r: float, q: float, v: float,
              is_call: bool) -> float:
    """One option's value per unit (see ``pricing.option_value``)."""
    if t <= 0.0:
        return max(s - k, 0.0) if is_call else max(k - s, 0.0)
    if model == BLACK76:
        q = r  # Black (1976): the futures price has zero cost of carry
    if v <= 0.0 or s <= 0.0 or k <= 0.0:
        return deterministic_value(model, s, k, t, r, q, is_call)
    if model != AMERICAN:
        return bsm_value(s, k, t, r, q, v, is_call)
    # Bjerksund-Stensland put-call transformation P(S, K, T, r, q) = C(K, S, T, q, r)
    cs, cx, cr, cq = (s, k, r, q) if is_call else (k, s, q, r)
    european = bsm_value(cs, cx, t, cr, cq, v, True)
    if cq <= 0.0:  # b >= r: no early exercise (for r >= 0), the European value (put by symmetry)
        return max(european, cs - cx)  # with r < 0 early exercise can pay: at least intrinsic
    # BS2002 values one exercise rule, which can be worth less than never exercising
    return max(bs2002_call(cs, cx, t, cr, cq, v), european)


@njit(cache=True, parallel=True, error_model="numpy")
def option_value_kernel(model: np.ndarray, spot: np.ndarray, strike: np.ndarray, t: np.ndarray,
                        rate: np.ndarray, div_yield: np.ndarray, vol: np.ndarray,
                        is_call: np.ndarray) -> np.ndarray:
    """Values of flat, equally long arrays (model int64, is_call bool, the rest float64)."""
    n = spot.shape[0]
    out = np.empty(n)
    for i in prange(n):
        out[i] = value_one(model[i], spot[i], strike[i], t[i], rate[i], div_yield[i], vol[i],
                           is_call[i])
    return out


@njit(cache=True, error_model="numpy")
def _lr_h(z: float, n: int) -> float:
    """Peizer-Pratt inversion, method 2 (Leisen & Reimer 1996)."""
    a = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0))
    root = math.sqrt(0.25 - 0.25 * math.exp(-a * a * (n + 1.0 / 6.0)))
    return 0.5 + root if z >= 0.0 else 0.5 - root


@njit(cache=True, error_model="numpy")
def lr_american_one(s: float, k: float, t: float, r: float, q: float, v: float, is_call: bool,
                    n: int) -> float:
    """Leisen-Reimer (1996) binomial tree with early exercise; n odd; t, v, s, k > 0."""
    dt = t / n
    sv = v * math.sqrt(t)
    d1 = (math.log(s / k) + (r - q + 0.5 * v * v) * t) / sv
    d2 = d1 - sv
    p = _lr_h(d2, n)
    growth = math.exp((r - q) * dt)
    up = growth * _lr_h(d1, n) / p
    down = (growth - p * up) / (1.0 - p)
    disc = math.exp(-r * dt)
    pu, pd = disc * p, disc * (1.0 - p)
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
