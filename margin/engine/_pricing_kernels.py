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

from ._alo_scheme import (
    ALO_FP_COS,
    ALO_FP_INTERP,
    ALO_FP_U,
    ALO_FP_W,
    ALO_ITERATIONS,
    ALO_MIN_TOTAL_VOL,
    ALO_PX_INTERP,
    ALO_PX_W,
    ALO_PX_Z,
    ALO_TAU,
    QD_MAX_ITER,
    QD_TOL,
)

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


_QD_TOL, _QD_MAX_ITER = QD_TOL, QD_MAX_ITER


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
def npdf(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x - _HALF_LOG_2PI)


@njit(cache=True, error_model="numpy")
def qdplus_boundary(k: float, tau: float, r: float, q: float, v: float, x_max: float,
                    start: float) -> float:
    """QD+ exercise boundary of a put at time to expiry tau (Li 2010, Andersen et al. 2016,
    eq. 22-25): Halley iterations from ``start``, kept in (0, x_max]; r > 0, tau, v > 0."""
    v2 = v * v
    sv = v * math.sqrt(tau)
    dr, dq = math.exp(-r * tau), math.exp(-q * tau)
    h = -math.expm1(-r * tau)
    omega = 2.0 * (r - q) / v2
    root = math.sqrt((omega - 1.0) ** 2 + 8.0 * r / (v2 * h))
    lam = 0.5 * (1.0 - omega - root)
    lam_prime = 2.0 * r / (v2 * h * h * root)
    den = 2.0 * lam + omega - 1.0
    alpha = 2.0 * dr * r / (v2 * den)
    beta = alpha * (1.0 / h + lam_prime / den) - lam
    c_theta = alpha / (dr * r)
    x_min = 1e-12 * x_max
    x = min(max(start, x_min), x_max)
    for _ in range(_QD_MAX_ITER):
        dp = math.log(x * dq / (k * dr)) / sv + 0.5 * sv
        dm = dp - sv
        n_dp, n_dm, pdf = ncdf(-dp), ncdf(-dm), npdf(dp)
        european = dr * k * n_dm - x * dq * n_dp
        theta = r * k * dr * n_dm - q * x * dq * n_dp - 0.5 * v * x * dq * pdf / math.sqrt(tau)
        charm = -dq * (pdf * ((r - q) / sv - dm / (2.0 * tau)) + q * n_dp)
        f = (1.0 - dq * n_dp) * x - beta * (k - x - european) + c_theta * theta
        f1 = 1.0 - dq * n_dp + dq * pdf / sv + beta * (1.0 - dq * n_dp) + c_theta * charm
        gamma = pdf * dq / (sv * x)
        colour = gamma * (q + (r - q) * dp / sv + (1.0 - dp * dm) / (2.0 * tau))
        f2 = dq * pdf / (x * sv) * (1.0 - dp / sv) + beta * gamma + c_theta * colour
        step = f / f1
        halley = 1.0 - 0.5 * step * f2 / f1
        if halley > 0.5:  # else a plain Newton step
            step /= halley
        if not math.isfinite(step):
            break
        new = min(max(x - step, x_min), x_max)
        done = abs(new - x) <= _QD_TOL * x_max
        x = new
        if done:
            break
    return x


@njit(cache=True, error_model="numpy")
def alo_boundary(t: float, r: float, q: float, v: float, y: np.ndarray) -> None:
    """Exercise boundary of an American put (Andersen, Lake & Offengelt 2016): y[i] =
    log(B(tau_i) / X)^2 at the scheme's nodes, X = K min(1, r / q); r > 0, t, v > 0.

    The boundary is proportional to the strike, so y does not depend on it: computed for
    K = 1 (one boundary serves every strike and, for calls, every spot). QD+ start, then
    ALO_ITERATIONS sweeps of the fixed point B = K e^{-(r-q) tau} N / D (their FP-B), the
    first with the Jacobi-Newton step (their eq. 34)."""
    k = 1.0
    x_max = r / q if q > r else 1.0
    n1 = ALO_TAU.size
    b = x_max
    y[0] = 0.0
    for i in range(1, n1):
        b = qdplus_boundary(k, ALO_TAU[i] * t, r, q, v, x_max, b)
        y[i] = math.log(b / x_max) ** 2
    new = np.empty(n1)
    new[0] = 0.0
    rq = r - q
    lxk = math.log(x_max / k)
    for it in range(ALO_ITERATIONS):
        for i in range(1, n1):
            tau = ALO_TAU[i] * t
            sv = v * math.sqrt(tau)
            lb = -math.sqrt(y[i])  # log(B(tau) / X)
            ni = 0.0
            di = 0.0
            for g in range(ALO_FP_U.size):
                u = tau * ALO_FP_U[g]
                hu = 0.0
                for j in range(n1):
                    hu += ALO_FP_INTERP[i, g, j] * y[j]
                s2 = sv * ALO_FP_COS[g]  # v sqrt(tau - u)
                dp = (lb + math.sqrt(max(hu, 0.0)) + rq * (tau - u)) / s2 + 0.5 * s2
                ni += ALO_FP_W[g] * math.exp(r * u) * ncdf(dp - s2)
                di += ALO_FP_W[g] * math.exp(q * u) * ncdf(dp)
            dp = (lb + lxk + rq * tau) / sv + 0.5 * sv
            dm = dp - sv
            num = ncdf(dm) + r * tau * ni
            den = ncdf(dp) + q * tau * di
            alpha = k * math.exp(-rq * tau)
            b = x_max * math.exp(lb)
            fv = alpha * num / den
            if it == 0:  # Jacobi-Newton: the derivative of the non-integral terms only
                fd = alpha * (npdf(dm) / den - npdf(dp) * num / (den * den)) / (b * sv)
                fv = b - (fv - b) / (fd - 1.0)
            fv = min(max(fv, 1e-12 * x_max), x_max)
            new[i] = math.log(fv / x_max) ** 2
        for i in range(1, n1):
            y[i] = new[i]


@njit(cache=True, error_model="numpy")
def alo_price(s: float, k: float, t: float, r: float, q: float, v: float,
              y: np.ndarray) -> float:
    """American put from its boundary (``alo_boundary``): European value + the early-exercise
    premium integral (Andersen et al. 2016, eq. 8); s, t, v, k > 0, r > 0."""
    x_max = k * r / q if q > r else k
    ls = math.log(s / x_max)
    if ls <= -math.sqrt(y[y.size - 1]):  # at or below the boundary: exercise now
        return k - s
    st = math.sqrt(t)
    rq = r - q
    acc = 0.0
    for g in range(ALO_PX_Z.size):
        z = st * ALO_PX_Z[g]  # sqrt of the time from now
        tt = z * z
        h = 0.0
        for j in range(y.size):
            h += ALO_PX_INTERP[g, j] * y[j]
        sv = v * z
        dp = (ls + math.sqrt(max(h, 0.0)) + rq * tt) / sv + 0.5 * sv
        acc += ALO_PX_W[g] * z * (r * k * math.exp(-r * tt) * ncdf(sv - dp)
                                  - q * s * math.exp(-q * tt) * ncdf(-dp))
    premium = max(st * acc, 0.0)
    return max(bsm_value(s, k, t, r, q, v, False), 0.0) + premium


@njit(cache=True, error_model="numpy")
def american_put_space(s: float, k: float, r: float, q: float, is_call: bool
                       ) -> tuple[float, float, float, float]:
    """The put-call transformation C(S, K, T, r, q) = P(K, S, T, q, r) (McDonald & Schroder
    1998): the put-space spot, strike, rate and yield of an American option."""
    if is_call:
        return k, s, q, r
    return s, k, r, q


@njit(cache=True, error_model="numpy")
def uses_alo(t: float, r: float, v: float) -> bool:
    """Whether an American option (put-space rate r, t > 0) is valued with the ALO boundary."""
    return r > 0.0 and v * math.sqrt(t) >= ALO_MIN_TOTAL_VOL


@njit(cache=True, error_model="numpy")
def value_one(model: int, s: float, k: float, t: float, r: float, q: float, v: float,
              is_call: bool, boundary: np.ndarray, have_boundary: bool) -> float:
    """One option's value per unit (see ``pricing.option_value``); ``boundary`` is the ALO
    boundary of the option's put-space put when ``have_boundary``, else scratch."""
    if t <= 0.0:
        return max(s - k, 0.0) if is_call else max(k - s, 0.0)
    if model == BLACK76:
        q = r  # Black (1976): the futures price has zero cost of carry
    if v <= 0.0 or s <= 0.0 or k <= 0.0:
        return deterministic_value(model, s, k, t, r, q, is_call)
    if model != AMERICAN:
        return bsm_value(s, k, t, r, q, v, is_call)
    ps, pk, pr, pq = american_put_space(s, k, r, q, is_call)
    if uses_alo(t, pr, v):
        if not have_boundary:
            boundary = np.empty(ALO_TAU.size)
            alo_boundary(t, pr, pq, v, boundary)
        return min(max(alo_price(ps, pk, t, pr, pq, v, boundary), pk - ps), pk)
    return bs2002_value(s, k, t, r, q, v, is_call)


@njit(cache=True, error_model="numpy")
def bs2002_value(s: float, k: float, t: float, r: float, q: float, v: float,
                 is_call: bool) -> float:
    """American value by Bjerksund & Stensland (2002) (t, v, s, k > 0): BS2002's call on the
    put-call transformed put, floored at the European value (BS2002 values one exercise
    rule, which can be worth less than never exercising); the European value (at least
    intrinsic) when the put-space yield is <= 0 (a call with q <= 0, a put with r <= 0)."""
    # Bjerksund-Stensland put-call transformation P(S, K, T, r, q) = C(K, S, T, q, r)
    cs, cx, cr, cq = (s, k, r, q) if is_call else (k, s, q, r)
    european = bsm_value(cs, cx, t, cr, cq, v, True)
    if cq <= 0.0:  # b >= r: no early exercise (for r >= 0), the European value (put by symmetry)
        return max(european, cs - cx)  # with r < 0 early exercise can pay: at least intrinsic
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
                           is_call[i], np.empty(0), False)
    return out


@njit(cache=True, error_model="numpy")
def _needs_boundary(model: int, k: float, t: float, r: float, q: float, v: float,
                    is_call: bool) -> bool:
    if model != AMERICAN or not (t > 0.0 and v > 0.0 and k > 0.0):
        return False
    return uses_alo(t, q if is_call else r, v)


@njit(cache=True, parallel=True, error_model="numpy")
def option_value_series_kernel(model: np.ndarray, strike: np.ndarray, t: np.ndarray,
                               rate: np.ndarray, div_yield: np.ndarray, vol: np.ndarray,
                               is_call: np.ndarray, spot: np.ndarray,
                               series: np.ndarray) -> np.ndarray:
    """Values at many spots of few series: element i is series ``series[i]`` (flat arrays of
    the series' parameters) at ``spot[i]``. Each American series' exercise boundary, which
    does not depend on the spot, is computed once."""
    n_series = strike.shape[0]
    boundaries = np.empty((n_series, ALO_TAU.size))
    have = np.zeros(n_series, dtype=np.bool_)
    for j in prange(n_series):
        if _needs_boundary(model[j], strike[j], t[j], rate[j], div_yield[j], vol[j],
                           is_call[j]):
            pr, pq = (div_yield[j], rate[j]) if is_call[j] else (rate[j], div_yield[j])
            alo_boundary(t[j], pr, pq, vol[j], boundaries[j])
            have[j] = True
    n = spot.shape[0]
    out = np.empty(n)
    for i in prange(n):
        j = series[i]
        out[i] = value_one(model[j], spot[i], strike[j], t[j], rate[j], div_yield[j], vol[j],
                           is_call[j], boundaries[j], have[j])
    return out
