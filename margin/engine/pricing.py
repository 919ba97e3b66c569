"""Option values, no-arbitrage bounds, implied volatility and Greeks (METHODOLOGY.md section 1).

Every function is vectorised: all arguments broadcast against each other (numpy rules) and the
result is float64 of the broadcast shape. Prices, bounds and Greeks are per unit of underlying
(quantity = multiplier = 1). ``t`` is the time to expiry in years, ``rate`` and ``div_yield``
are continuously compounded, ``vol`` is the annualised implied volatility (1.00 = 100 %).

Models (``model`` may be a scalar or an int array, so one call values a mixed book):

- ``EUROPEAN``: Black-Scholes-Merton with a continuous dividend yield (Haug 2007, 1.1.6).
- ``AMERICAN``: the early-exercise boundary by Andersen, Lake & Offengelt (2016), "High-performance
  American option pricing", J. Comp. Finance 20(1) (QD+ start, then fixed-point iterations on
  Chebyshev nodes), and the value as the European one plus the early-exercise premium integral
  over that boundary; calls via the put-call transformation C(S, K, T, r, q) = P(K, S, T, q, r)
  (McDonald & Schroder 1998). A put with r <= 0 (a call with q <= 0) is never exercised early
  (for r >= 0): European, floored at intrinsic. Where total volatility v sqrt(T) < 1e-3 the
  boundary equations degenerate and Bjerksund & Stensland (2002) is used (measured there within
  $0.006 of a 2001-step tree, where that tree is still finite). The boundary does not depend on the spot, so a series valued at its ten
  valuation points computes it once (``option_value`` detects that shape).
- ``BLACK76``: Black (1976) for options on futures: ``spot`` is the futures price and
  ``div_yield`` is ignored (BSM with q = r).

Special cases, for every model: ``t <= 0`` gives the intrinsic value; ``vol <= 0`` (and a
non-positive spot or strike) gives the zero-volatility value: the discounted forward intrinsic
value for European and Black-76, and for American the best of exercising now, at expiry or at
the one stationary date of S e^{-q tau} - K e^{-r tau} in between.

Accuracy of ``AMERICAN`` (tests/engine/test_pricing.py): within METHODOLOGY.md's $0.035 per unit
of the binomial limit everywhere on S = 100, K 50-200, t 1 week to 3 years, vol 5-100 %, r 0-8 %,
q 0-5 % (12,936 options: worst 0.015 against a 1001-step Leisen-Reimer tree, most of it the
tree's own error; 0.0034 against a converged ALO scheme). The tree and ``bs2002_value``
(Bjerksund & Stensland 2002 on the whole domain) are test oracles in ``margin.engine.reference``,
which production code never imports. BS2002 was kept for comparison: METHODOLOGY.md names it as meeting the tolerance, and it does on
the Cboe IBM grid and short-dated near-the-money options, but on the grid above it misses in
17 % of cases, by up to $4.6 (deep in the money, long-dated, high rate). For American options on
futures use ``AMERICAN`` with ``div_yield = rate`` (zero cost of carry).

Two implementations compute values: numpy array code in this module (the reference) and numba
kernels in ``_pricing_kernels`` (the default when numba imports). ``USE_NUMBA`` selects; tests
check that both agree. Implied volatility and Greeks are written once, in numpy, on top of
whichever computes values.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_ndtr, ndtr

from . import _alo_scheme as _alo

try:  # the fast path; the numpy code below is the reference it is tested against
    from . import _pricing_kernels as _kernels
except ImportError:  # pragma: no cover - numba missing or broken
    _kernels = None

EUROPEAN: Final = 0
AMERICAN: Final = 1
BLACK76: Final = 2
MODELS: Final = (EUROPEAN, AMERICAN, BLACK76)

#: numba kernels for option values when available (set False to run the numpy reference)
USE_NUMBA: bool = _kernels is not None

#: implied-volatility search range: the floor is the "tiny vol" returned for a price on the
#: lower bound; the ceiling grows with 1/sqrt(t) so that total volatility reaches VOL_CAP_TOTAL
VOL_FLOOR: Final = 1e-6
VOL_START_HIGH: Final = 5.0
VOL_CAP_TOTAL: Final = 40.0
#: a price within BOUND_ATOL x max(1, upper bound) of a bound counts as on it
BOUND_ATOL: Final = 1e-12

Array = NDArray[np.float64]

# --------------------------------------------------------------------------- constants
_EXP_MAX = 700.0
# Bjerksund & Stensland (2002): t1 = (sqrt(5) - 1) / 2 * T, correlation sqrt(t1 / T) constant
_T1_FRACTION = 0.5 * (math.sqrt(5.0) - 1.0)
_RHO = math.sqrt(_T1_FRACTION)

# Gauss-Legendre (abscissae, weights) on (0, 1] halves used by Genz (2004) for 6, 12, 20 points
_GL = {
    6: (np.array([0.9324695142031522, 0.6612093864662647, 0.2386191860831970]),
        np.array([0.1713244923791705, 0.3607615730481384, 0.4679139345726904])),
    12: (np.array([0.9815606342467191, 0.9041172563704750, 0.7699026741943050,
                   0.5873179542866171, 0.3678314989981802, 0.1252334085114692]),
         np.array([0.04717533638651177, 0.1069393259953183, 0.1600783285433464,
                   0.2031674267230659, 0.2334925365383547, 0.2491470458134029])),
    20: (np.array([0.9931285991850949, 0.9639719272779138, 0.9122344282513259,
                   0.8391169718222188, 0.7463319064601508, 0.6360536807265150,
                   0.5108670019508271, 0.3737060887154196, 0.2277858511416451,
                   0.07652652113349733]),
         np.array([0.01761400713915212, 0.04060142980038694, 0.06267204833410906,
                   0.08327674157670475, 0.1019301198172404, 0.1181945319615184,
                   0.1316886384491766, 0.1420961093183821, 0.1491729864726037,
                   0.1527533871307259])),
}
# BS2002's bivariate terms all have correlation +/-_RHO: a 12-point Gauss-Legendre rule in
# u = asin(.) of the Drezner-Wesolowsky integral (Genz uses 20 points for all |rho| < 0.925)
_BVN_POINTS = 12
_BVN_X, _BVN_GW = np.polynomial.legendre.leggauss(_BVN_POINTS)
_ASIN_RHO = math.asin(_RHO)
_SN = np.sin(0.5 * _ASIN_RHO * (_BVN_X + 1.0))
_BVN_W = _BVN_GW * (0.25 * _ASIN_RHO / math.pi)
_BVN_C1 = _SN / (1.0 - _SN * _SN)
_BVN_C2 = 1.0 / (1.0 - _SN * _SN)


# the scheme's fixed arrays (one definition, shared with the numba kernels); the numpy
# reference reads these module globals at run time, so a test may swap in a finer scheme
_alo_scheme = _alo.alo_scheme
ALO_ITERATIONS = _alo.ALO_ITERATIONS
ALO_MIN_TOTAL_VOL = _alo.ALO_MIN_TOTAL_VOL
(_ALO_TAU, _ALO_FP_U, _ALO_FP_W, _ALO_FP_COS, _ALO_FP_INTERP, _ALO_PX_Z, _ALO_PX_W,
 _ALO_PX_INTERP) = (_alo.ALO_TAU, _alo.ALO_FP_U, _alo.ALO_FP_W, _alo.ALO_FP_COS,
                    _alo.ALO_FP_INTERP, _alo.ALO_PX_Z, _alo.ALO_PX_W, _alo.ALO_PX_INTERP)
_QD_TOL, _QD_MAX_ITER = _alo.QD_TOL, _alo.QD_MAX_ITER


# --------------------------------------------------------------------------- helpers
def _flat_to(a: ArrayLike, shape: tuple[int, ...], dtype: type) -> NDArray:
    """``a`` as a contiguous, writeable 1-D array of ``shape``'s size: a view where it already
    has that shape, else a copy (never a broadcast view: those are read-only, and numba warns
    when it is handed one)."""
    arr = np.asarray(a, dtype=dtype)
    if arr.shape == shape:
        return np.ascontiguousarray(arr).reshape(-1)
    return np.array(np.broadcast_to(arr, shape)).reshape(-1)


def _flat(*args: ArrayLike) -> tuple[tuple[int, ...], list[Array]]:
    """Broadcast the arguments and return the shape and contiguous 1-D float64 copies/views."""
    shape = np.broadcast_shapes(*(np.shape(a) for a in args))
    return shape, [_flat_to(a, shape, np.float64) for a in args]


def _prepare(model: ArrayLike, is_call: ArrayLike, *floats: ArrayLike
             ) -> tuple[tuple[int, ...], NDArray[np.int64], NDArray[np.bool_], list[Array]]:
    """Broadcast model codes, rights and float arguments to flat arrays; validate model codes."""
    model_arr = np.asarray(model)
    if model_arr.dtype.kind not in "iu":
        if model_arr.dtype.kind == "f" and np.all(model_arr == np.round(model_arr)):
            model_arr = model_arr.astype(np.int64)
        else:
            raise ValueError("model must be an integer code (EUROPEAN, AMERICAN or BLACK76)")
    call_arr = np.asarray(is_call).astype(bool)
    shape = np.broadcast_shapes(model_arr.shape, call_arr.shape, *(np.shape(a) for a in floats))
    codes = _flat_to(model_arr, shape, np.int64)
    if codes.size and (codes.min() < min(MODELS) or codes.max() > max(MODELS)):
        bad = sorted(set(np.unique(codes).tolist()) - set(MODELS))
        raise ValueError(f"unknown model code(s) {bad}")
    calls = _flat_to(call_arr, shape, np.bool_)
    rest = [_flat_to(a, shape, np.float64) for a in floats]
    return shape, codes, calls, rest


def _norm_pdf(x: Array) -> Array:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _ncdf_scaled(x: Array, e: Array) -> Array:
    """exp(e) * N(x), switching to log space where exp(e) would overflow."""
    big = e >= _EXP_MAX
    out = np.exp(np.minimum(e, _EXP_MAX)) * ndtr(x)
    if big.any():
        out[big] = np.exp(e[big] + log_ndtr(x[big]))
    return out


def _bvn_fixed_scaled(a: Array, b: Array, negative: bool, e: Array) -> Array:
    """exp(e) * M(a, b, +/-rho) at the BS2002 correlation rho = sqrt(t1/T) (12-point rule)."""
    hk = -a * b if negative else a * b
    hs = 0.5 * (a * a + b * b)
    acc = np.zeros_like(a)
    for w, c1, c2 in zip(_BVN_W, _BVN_C1, _BVN_C2, strict=True):
        acc += w * np.exp(e + c1 * hk - c2 * hs)
    big = e >= _EXP_MAX
    base = np.exp(np.minimum(e, _EXP_MAX)) * ndtr(a) * ndtr(b)
    if big.any():
        base[big] = np.exp(e[big] + log_ndtr(a[big]) + log_ndtr(b[big]))
    return base - acc if negative else base + acc


@np.errstate(all="ignore")  # NaN/inf inputs propagate as NaN, no warnings
def bivariate_normal_cdf(x: ArrayLike, y: ArrayLike, rho: ArrayLike) -> Array:
    """P(X <= x, Y <= y) for standard normals with correlation rho, vectorised.

    Genz (2004), "Numerical computation of rectangular bivariate and trivariate normal and t
    probabilities", Statist. Comput. 14, 251-260 (the BVND algorithm, after Drezner &
    Wesolowsky 1990): Gauss-Legendre rules of 6, 12 or 20 points in asin(rho) for
    |rho| < 0.925, and a transformed integrand near |rho| = 1. Accuracy about 1e-15.
    """
    shape, (xa, ya, ra) = _flat(x, y, rho)
    h, k = -xa, -ya  # Genz computes the upper orthant P(X > h, Y > k)
    out = np.empty_like(h)
    absr = np.abs(ra)
    low = absr < 0.925
    for points, sel in ((6, low & (absr < 0.3)), (12, low & (absr >= 0.3) & (absr < 0.75)),
                        (20, low & (absr >= 0.75))):
        if not sel.any():
            continue
        hs_, ks_, rs_ = h[sel], k[sel], ra[sel]
        hk = hs_ * ks_
        hs = 0.5 * (hs_ * hs_ + ks_ * ks_)
        asr = 0.5 * np.arcsin(rs_)
        acc = np.zeros_like(hs)
        for xg, wg in zip(*_GL[points], strict=True):
            for node in (1.0 - xg, 1.0 + xg):
                sn = np.sin(asr * node)
                acc += wg * np.exp((sn * hk - hs) / (1.0 - sn * sn))
        out[sel] = acc * asr / (2.0 * math.pi) + ndtr(-hs_) * ndtr(-ks_)
    high = ~low & ~np.isnan(ra)
    if high.any():
        out[high] = _bvn_high_corr(h[high], k[high], ra[high])
    out[np.isnan(ra)] = np.nan
    return np.clip(out, 0.0, 1.0).reshape(shape)


def _bvn_high_corr(h: Array, k: Array, r: Array) -> Array:
    """Genz's BVNU branch for |r| >= 0.925 (upper orthant P(X > h, Y > k), 2/10 revision)."""
    two_pi = 2.0 * math.pi
    k = np.where(r < 0.0, -k, k)
    hk = h * k
    inner = np.abs(r) < 1.0
    a_s = np.where(inner, (1.0 - r) * (1.0 + r), 1.0)
    a = np.sqrt(a_s)
    bs = (h - k) ** 2
    c = (4.0 - hk) / 8.0
    d = (12.0 - hk) / 16.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        asr = -(bs / a_s + hk) / 2.0
        bvn = np.where(asr > -100.0, a * np.exp(asr) * (
            1.0 - c * (bs - a_s) * (1.0 - d * bs / 5.0) / 3.0 + c * d * a_s * a_s / 5.0), 0.0)
        b = np.sqrt(bs)
        sp = math.sqrt(two_pi) * ndtr(-b / a)
        bvn = np.where(hk > -100.0, bvn - np.exp(-hk / 2.0) * sp * b * (
            1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0), bvn)
        a = a / 2.0
        for xg, wg in zip(*_GL[20], strict=True):
            for node in (1.0 - xg, 1.0 + xg):
                xs = (a * node) ** 2
                rs = np.sqrt(1.0 - xs)
                asr = -(bs / xs + hk) / 2.0
                sp = 1.0 + c * xs * (1.0 + d * xs)
                ep = np.exp(-hk * (1.0 - rs) / (2.0 * (1.0 + rs))) / rs
                bvn = np.where(asr > -100.0, bvn + a * wg * np.exp(asr) * (ep - sp), bvn)
    bvn = np.where(inner, -bvn / two_pi, 0.0)
    return np.where(r > 0.0, bvn + ndtr(-np.maximum(h, k)),
                    -bvn + np.maximum(0.0, ndtr(-h) - ndtr(-k)))


# --------------------------------------------------------------------------- numpy reference
def _bsm_numpy(s: Array, k: Array, t: Array, r: Array, q: Array, v: Array,
               call: NDArray[np.bool_]) -> Array:
    """Black-Scholes-Merton with continuous yield (Haug 2007, 1.1.6); t, v, s, k > 0."""
    sv = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / sv
    d2 = d1 - sv
    sign = np.where(call, 1.0, -1.0)
    return sign * (s * np.exp(-q * t) * ndtr(sign * d1) - k * np.exp(-r * t) * ndtr(sign * d2))


def _deterministic_numpy(american: NDArray[np.bool_], s: Array, k: Array, t: Array, r: Array,
                         q: Array, call: NDArray[np.bool_]) -> Array:
    """Zero-volatility values (see the module docstring)."""
    sign = np.where(call, 1.0, -1.0)
    forward = sign * (s * np.exp(-q * t) - k * np.exp(-r * t))
    best = np.maximum(forward, 0.0)
    if american.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (q * s) / (r * k)
            tau = np.log(ratio) / (q - r)
        inside = (q != r) & (q * s > 0.0) & (r * k > 0.0) & (tau > 0.0) & (tau < t)
        tau = np.where(inside, tau, 0.0)
        mid = np.where(inside, sign * (s * np.exp(-q * tau) - k * np.exp(-r * tau)), 0.0)
        amer = np.maximum(np.maximum(best, sign * (s - k)), mid)
        best = np.where(american, amer, best)
    return best


def _phi_numpy(ls: Array, t: Array, sv: Array, gamma: Array | float, lam: Array | float,
               kappa: Array, mu: Array, lh: Array, li: Array, e0: Array | float) -> Array:
    """exp(e0) * phi(S, t, gamma, H, I), Bjerksund & Stensland (2002) (Haug 2007, 3.3)."""
    d = -(ls - lh + mu * t) / sv
    e = e0 + lam * t + gamma * ls
    return _ncdf_scaled(d, e) - _ncdf_scaled(d - 2.0 * (li - ls) / sv, e + kappa * (li - ls))


def _psi_numpy(ls: Array, t: Array, sv: Array, t1: Array, sv1: Array, gamma: Array | float,
               lam: Array | float, kappa: Array, mu: Array, lh: Array, li2: Array, li1: Array,
               e0: Array | float) -> Array:
    """exp(e0) * psi(S, T, gamma, H, I2, I1, t1), Bjerksund & Stensland (2002) (Haug 2007, 3.3)."""
    e1 = (ls - li1 + mu * t1) / sv1
    e2 = (2.0 * li2 - ls - li1 + mu * t1) / sv1
    e3 = (ls - li1 - mu * t1) / sv1
    e4 = (2.0 * li2 - ls - li1 - mu * t1) / sv1
    f1 = (ls - lh + mu * t) / sv
    f2 = (2.0 * li2 - ls - lh + mu * t) / sv
    f3 = (2.0 * li1 - ls - lh + mu * t) / sv
    f4 = (ls + 2.0 * li1 - lh - 2.0 * li2 + mu * t) / sv
    e = e0 + lam * t + gamma * ls
    return (_bvn_fixed_scaled(-e1, -f1, False, e)
            - _bvn_fixed_scaled(-e2, -f2, False, e + kappa * (li2 - ls))
            - _bvn_fixed_scaled(-e3, -f3, True, e + kappa * (li1 - ls))
            + _bvn_fixed_scaled(-e4, -f4, True, e + kappa * (li1 - li2)))


def _bs2002_call_numpy(s: Array, x: Array, t: Array, r: Array, q: Array, v: Array) -> Array:
    """American call, Bjerksund & Stensland (2002) (Haug 2007, 3.3), for q > 0; t, v, s, x > 0.

    Written with every power in one exponent (alpha_k S^beta = (I_k - X) (S / I_k)^beta, and
    lambda(beta) = 0 because beta solves the characteristic equation) so that small vols,
    where beta and kappa are large, do not overflow. Floored at intrinsic, capped at S.
    """
    b = r - q
    v2 = v * v
    t1 = _T1_FRACTION * t
    c = 0.5 - b / v2
    root = np.sqrt(c * c + 2.0 * r / v2)
    beta = c + root
    beta_minus_1 = 2.0 * q / (v2 * (root + 1.0 - c))  # beta - 1 without cancellation
    b_inf = beta / beta_minus_1 * x
    b0 = np.maximum(x, r / q * x)
    scale = x * x / ((b_inf - b0) * b0)
    # h <= 0 keeps the boundary in [B0, B_inf]: with b < 0 and a low vol the raw h(tau) is
    # positive and would put the boundary below its own expiry value B0 (even below X)
    h1 = np.minimum(-(b * t1 + 2.0 * v * np.sqrt(t1)) * scale, 0.0)
    h2 = np.minimum(-(b * t + 2.0 * v * np.sqrt(t)) * scale, 0.0)
    i1 = b0 - (b_inf - b0) * np.expm1(h1)
    i2 = b0 - (b_inf - b0) * np.expm1(h2)
    exercise = s >= i2
    ls, lx, li1, li2 = np.log(s), np.log(x), np.log(i1), np.log(i2)
    sv, sv1 = v * np.sqrt(t), v * np.sqrt(t1)
    k0, k1, kb = 2.0 * b / v2 - 1.0, 2.0 * b / v2 + 1.0, 2.0 * b / v2 + 2.0 * beta - 1.0
    m0, m1, mb = b - 0.5 * v2, b + 0.5 * v2, b + (beta - 0.5) * v2
    eb2, eb1 = -beta * li2, -beta * li1
    lam0, lam1 = -r, -q
    value = (i2 - x) * np.exp(beta * (ls - li2))
    value -= (i2 - x) * _phi_numpy(ls, t1, sv1, beta, 0.0, kb, mb, li2, li2, eb2)
    value += _phi_numpy(ls, t1, sv1, 1.0, lam1, k1, m1, li2, li2, 0.0)
    value -= _phi_numpy(ls, t1, sv1, 1.0, lam1, k1, m1, li1, li2, 0.0)
    value -= x * _phi_numpy(ls, t1, sv1, 0.0, lam0, k0, m0, li2, li2, 0.0)
    value += x * _phi_numpy(ls, t1, sv1, 0.0, lam0, k0, m0, li1, li2, 0.0)
    value += (i1 - x) * _phi_numpy(ls, t1, sv1, beta, 0.0, kb, mb, li1, li2, eb1)
    value -= (i1 - x) * _psi_numpy(ls, t, sv, t1, sv1, beta, 0.0, kb, mb, li1, li2, li1, eb1)
    value += _psi_numpy(ls, t, sv, t1, sv1, 1.0, lam1, k1, m1, li1, li2, li1, 0.0)
    value -= _psi_numpy(ls, t, sv, t1, sv1, 1.0, lam1, k1, m1, lx, li2, li1, 0.0)
    value -= x * _psi_numpy(ls, t, sv, t1, sv1, 0.0, lam0, k0, m0, li1, li2, li1, 0.0)
    value += x * _psi_numpy(ls, t, sv, t1, sv1, 0.0, lam0, k0, m0, lx, li2, li1, 0.0)
    broken = ~np.isfinite(value) & ~exercise
    if broken.any():  # only at tiny vols: the European / zero-vol value is the limit
        ones = np.ones(int(broken.sum()), dtype=bool)
        sb, xb, tb, rb, qb = s[broken], x[broken], t[broken], r[broken], q[broken]
        value[broken] = np.maximum(_bsm_numpy(sb, xb, tb, rb, qb, v[broken], ones),
                                   _deterministic_numpy(ones, sb, xb, tb, rb, qb, ones))
    value = np.where(exercise, s - x, value)
    return np.minimum(np.maximum(value, np.maximum(s - x, 0.0)), s)


def _qdplus_numpy(tau: Array, r: Array, q: Array, v: Array, x_max: Array,
                  start: Array) -> Array:
    """QD+ exercise boundary of a put with strike 1 at time to expiry tau (Li 2010, "Analytical
    approximations for the critical stock prices of American options: a performance
    comparison", Rev. Deriv. Res. 13; Andersen et al. 2016, eq. 22-25): Halley iterations
    from ``start`` kept in (0, x_max], a Newton step where Halley's correction is large."""
    k = 1.0
    v2 = v * v
    sv = v * np.sqrt(tau)
    dr, dq = np.exp(-r * tau), np.exp(-q * tau)
    h = -np.expm1(-r * tau)
    omega = 2.0 * (r - q) / v2
    root = np.sqrt((omega - 1.0) ** 2 + 8.0 * r / (v2 * h))
    lam = 0.5 * (1.0 - omega - root)
    lam_prime = 2.0 * r / (v2 * h * h * root)
    den = 2.0 * lam + omega - 1.0
    alpha = 2.0 * dr * r / (v2 * den)
    beta = alpha * (1.0 / h + lam_prime / den) - lam
    c_theta = alpha / (dr * r)
    x_min = 1e-12 * x_max
    x = np.minimum(np.maximum(start, x_min), x_max)
    active = np.ones(x.shape, dtype=bool)
    for _ in range(_QD_MAX_ITER):
        if not active.any():
            break
        dp = np.log(x * dq / (k * dr)) / sv + 0.5 * sv
        dm = dp - sv
        n_dp, n_dm, pdf = ndtr(-dp), ndtr(-dm), _norm_pdf(dp)
        european = dr * k * n_dm - x * dq * n_dp
        theta = r * k * dr * n_dm - q * x * dq * n_dp - 0.5 * v * x * dq * pdf / np.sqrt(tau)
        charm = -dq * (pdf * ((r - q) / sv - dm / (2.0 * tau)) + q * n_dp)
        f = (1.0 - dq * n_dp) * x - beta * (k - x - european) + c_theta * theta
        f1 = 1.0 - dq * n_dp + dq * pdf / sv + beta * (1.0 - dq * n_dp) + c_theta * charm
        gamma = pdf * dq / (sv * x)
        colour = gamma * (q + (r - q) * dp / sv + (1.0 - dp * dm) / (2.0 * tau))
        f2 = dq * pdf / (x * sv) * (1.0 - dp / sv) + beta * gamma + c_theta * colour
        step = f / f1
        halley = 1.0 - 0.5 * step * f2 / f1
        step = np.where(halley > 0.5, step / halley, step)
        ok = active & np.isfinite(step)
        new = np.minimum(np.maximum(x - step, x_min), x_max)
        done = np.abs(new - x) <= _QD_TOL * x_max
        x = np.where(ok, new, x)
        active = ok & ~done
    return x


def _alo_boundary_numpy(t: Array, r: Array, q: Array, v: Array) -> Array:
    """Exercise boundary of American puts with strike 1 (r > 0; t, v > 0), Andersen, Lake &
    Offengelt (2016), "High-performance American option pricing", J. Comp. Finance 20(1):
    (n, nodes + 1) array of log(B(tau_i) / X)^2 at the scheme's nodes, X = min(1, r / q).

    The boundary is proportional to the strike, so one computed for K = 1 serves every strike
    (and, for calls through the put-call transformation, every spot). QD+ start, then
    ALO_ITERATIONS Jacobi sweeps of their fixed point FP-B, B = K e^{-(r-q) tau} N / D with
    N = Phi(d-(tau, B/K)) + r int_0^tau e^{ru} Phi(d-(tau - u, B(tau)/B(u))) du and
    D = Phi(d+(tau, B/K)) + q int_0^tau e^{qu} Phi(d+(tau - u, B(tau)/B(u))) du; the first
    sweep takes their Jacobi-Newton step (eq. 34, the derivative of the non-integral terms).
    """
    k = 1.0
    x_max = np.where(q > r, r / q, 1.0)
    n1 = _ALO_TAU.size
    y = np.zeros((t.size, n1))
    b = x_max.copy()
    for i in range(1, n1):
        b = _qdplus_numpy(_ALO_TAU[i] * t, r, q, v, x_max, b)
        y[:, i] = np.log(b / x_max) ** 2
    rq = r - q
    lxk = np.log(x_max / k)
    for it in range(ALO_ITERATIONS):
        new = np.zeros_like(y)
        for i in range(1, n1):
            tau = _ALO_TAU[i] * t
            sv = v * np.sqrt(tau)
            lb = -np.sqrt(y[:, i])
            ni = np.zeros_like(t)
            di = np.zeros_like(t)
            for g in range(_ALO_FP_U.size):
                u = tau * _ALO_FP_U[g]
                hu = y @ _ALO_FP_INTERP[i, g]
                s2 = sv * _ALO_FP_COS[g]
                dp = (lb + np.sqrt(np.maximum(hu, 0.0)) + rq * (tau - u)) / s2 + 0.5 * s2
                ni += _ALO_FP_W[g] * np.exp(r * u) * ndtr(dp - s2)
                di += _ALO_FP_W[g] * np.exp(q * u) * ndtr(dp)
            dp = (lb + lxk + rq * tau) / sv + 0.5 * sv
            dm = dp - sv
            num = ndtr(dm) + r * tau * ni
            den = ndtr(dp) + q * tau * di
            alpha = k * np.exp(-rq * tau)
            b = x_max * np.exp(lb)
            fv = alpha * num / den
            if it == 0:
                fd = alpha * (_norm_pdf(dm) / den - _norm_pdf(dp) * num / (den * den)) / (b * sv)
                fv = b - (fv - b) / (fd - 1.0)
            fv = np.minimum(np.maximum(fv, 1e-12 * x_max), x_max)
            new[:, i] = np.log(fv / x_max) ** 2
        y = new
    return y


def _alo_price_numpy(s: Array, k: Array, t: Array, r: Array, q: Array, v: Array,
                     y: Array) -> Array:
    """American puts from their boundaries (``_alo_boundary_numpy``): the European value plus
    the early-exercise premium int_0^T (r K e^{-rt} Phi(-d-(t, S/B(T-t))) - q S e^{-qt}
    Phi(-d+(t, S/B(T-t)))) dt (Andersen et al. 2016, eq. 8); intrinsic at or below B(T)."""
    x_max = k * np.where(q > r, r / q, 1.0)
    ls = np.log(s / x_max)
    st = np.sqrt(t)
    rq = r - q
    acc = np.zeros_like(s)
    for g in range(_ALO_PX_Z.size):
        z = st * _ALO_PX_Z[g]
        tt = z * z
        h = y @ _ALO_PX_INTERP[g]
        sv = v * z
        dp = (ls + np.sqrt(np.maximum(h, 0.0)) + rq * tt) / sv + 0.5 * sv
        acc += _ALO_PX_W[g] * z * (r * k * np.exp(-r * tt) * ndtr(sv - dp)
                                   - q * s * np.exp(-q * tt) * ndtr(-dp))
    premium = np.maximum(st * acc, 0.0)
    value = np.maximum(_bsm_numpy(s, k, t, r, q, v, np.zeros(s.size, dtype=bool)), 0.0) + premium
    return np.where(ls <= -np.sqrt(y[:, -1]), k - s, value)


def _bs2002_numpy(s: Array, k: Array, t: Array, r: Array, q: Array, v: Array,
                  call: NDArray[np.bool_]) -> Array:
    """American values by Bjerksund & Stensland (2002) (t, v, s, k > 0), floored at the
    European value (BS2002 values one exercise rule, which can be worth less than never
    exercising); the European value (at least intrinsic) where the put-space yield is <= 0."""
    # put-call transformation: P(S, K, T, r, q) = C(K, S, T, q, r)
    cs, cx = np.where(call, s, k), np.where(call, k, s)
    cr, cq = np.where(call, r, q), np.where(call, q, r)
    res = _bsm_numpy(cs, cx, t, cr, cq, v, np.ones(cs.size, dtype=bool))
    # else b >= r: no early exercise (for r >= 0), European (put by symmetry); with r < 0
    # early exercise can pay, so at least intrinsic
    res = np.maximum(res, cs - cx)
    early = cq > 0.0
    if early.any():
        res[early] = np.maximum(_bs2002_call_numpy(cs[early], cx[early], t[early], cr[early],
                                                   cq[early], v[early]), res[early])
    return res


def _value_numpy(model: NDArray[np.int64], s: Array, k: Array, t: Array, r: Array, q: Array,
                 v: Array, call: NDArray[np.bool_]) -> Array:
    """Flat-array values (the reference for ``_pricing_kernels.option_value_kernel``)."""
    out = np.empty_like(s)
    q = np.where(model == BLACK76, r, q)
    expired = t <= 0.0
    out[expired] = np.where(call[expired], np.maximum(s[expired] - k[expired], 0.0),
                            np.maximum(k[expired] - s[expired], 0.0))
    degenerate = ~expired & ((v <= 0.0) | (s <= 0.0) | (k <= 0.0))
    if degenerate.any():
        d = degenerate
        out[d] = _deterministic_numpy(model[d] == AMERICAN, s[d], k[d], t[d], r[d], q[d], call[d])
    regular = ~expired & ~degenerate  # NaN inputs end here and give NaN
    american = regular & (model == AMERICAN)
    european = regular & ~american
    if european.any():
        e = european
        out[e] = _bsm_numpy(s[e], k[e], t[e], r[e], q[e], v[e], call[e])
    if american.any():
        a = american
        ca, sa, ka, ta, ra, qa, va = call[a], s[a], k[a], t[a], r[a], q[a], v[a]
        # put-call transformation C(S, K, T, r, q) = P(K, S, T, q, r)
        ps, pk = np.where(ca, ka, sa), np.where(ca, sa, ka)
        pr, pq = np.where(ca, qa, ra), np.where(ca, ra, qa)
        alo = (pr > 0.0) & (va * np.sqrt(ta) >= ALO_MIN_TOTAL_VOL)
        res = np.empty(ps.size)
        if (~alo).any():
            o = ~alo
            res[o] = _bs2002_numpy(sa[o], ka[o], ta[o], ra[o], qa[o], va[o], ca[o])
        if alo.any():
            y = _alo_boundary_numpy(ta[alo], pr[alo], pq[alo], va[alo])
            put = _alo_price_numpy(ps[alo], pk[alo], ta[alo], pr[alo], pq[alo], va[alo], y)
            res[alo] = np.minimum(np.maximum(put, pk[alo] - ps[alo]), pk[alo])
        out[a] = res
    return out


def _value_flat(model: NDArray[np.int64], s: Array, k: Array, t: Array, r: Array, q: Array,
                v: Array, call: NDArray[np.bool_]) -> Array:
    if USE_NUMBA and _kernels is not None:
        return _kernels.option_value_kernel(model, s, k, t, r, q, v, call)
    with np.errstate(all="ignore"):  # overflow at tiny vols is caught; NaN inputs give NaN
        return _value_numpy(model, s, k, t, r, q, v, call)


# --------------------------------------------------------------------------- public API
@np.errstate(all="ignore")  # NaN/inf inputs propagate as NaN, no warnings
def option_value(model: ArrayLike, spot: ArrayLike, strike: ArrayLike, t: ArrayLike,
                 rate: ArrayLike, div_yield: ArrayLike, vol: ArrayLike,
                 is_call: ArrayLike) -> Array:
    """Theoretical value per unit under ``model`` (EUROPEAN, AMERICAN, BLACK76), broadcast."""
    if USE_NUMBA and _kernels is not None:
        shared = _value_shared(model, spot, strike, t, rate, div_yield, vol, is_call)
        if shared is not None:
            return shared
    shape, codes, calls, (s, k, tt, r, q, v) = _prepare(model, is_call, spot, strike, t, rate,
                                                         div_yield, vol)
    return _value_flat(codes, s, k, tt, r, q, v, calls).reshape(shape)


def _value_shared(model: ArrayLike, spot: ArrayLike, strike: ArrayLike, t: ArrayLike,
                  rate: ArrayLike, div_yield: ArrayLike, vol: ArrayLike, is_call: ArrayLike
                  ) -> Array | None:
    """``option_value`` when the spot is the only argument that varies along some axis (a
    series at many valuation points, e.g. spot (n, points) and the rest (n, 1)): each American
    series' exercise boundary is computed once (``option_value_series_kernel``). None when
    fewer than two spots share a series on average (then the plain path is as fast)."""
    spot_arr = np.asarray(spot, dtype=np.float64)
    series_args = (model, is_call, strike, t, rate, div_yield, vol)
    series_shape = np.broadcast_shapes(*(np.shape(a) for a in series_args))
    shape = np.broadcast_shapes(series_shape, spot_arr.shape)
    n_series, n = math.prod(series_shape), math.prod(shape)
    if n == 0 or 2 * n_series > n:
        return None
    _, codes, calls, (k, tt, r, q, v) = _prepare(*series_args)
    # np.array copies: a broadcast view is read-only, and numba should get writeable arrays
    index = np.array(np.broadcast_to(np.arange(n_series).reshape(series_shape), shape)).reshape(-1)
    s = np.array(np.broadcast_to(spot_arr, shape)).reshape(-1)
    assert _kernels is not None
    return _kernels.option_value_series_kernel(codes, k, tt, r, q, v, calls, s,
                                               index).reshape(shape)


@np.errstate(all="ignore")  # NaN/inf inputs propagate as NaN, no warnings
def price_bounds(model: ArrayLike, spot: ArrayLike, strike: ArrayLike, t: ArrayLike,
                 rate: ArrayLike, div_yield: ArrayLike, is_call: ArrayLike
                 ) -> tuple[Array, Array]:
    """No-arbitrage bounds (lower, upper) of a price per unit (Hull, ch. 11; Merton 1973).

    European: lower = discounted forward intrinsic max(+/-(S e^{-qt} - K e^{-rt}), 0), upper =
    S e^{-qt} (call) or K e^{-rt} (put). Black-76: the same with q = r (F e^{-rt}, K e^{-rt}).
    American: lower = intrinsic; upper = S max(1, e^{-qt}) (call) or K max(1, e^{-rt}) (put):
    an American call can be exercised now, so with q > 0 it may exceed S e^{-qt} (up to S),
    and with q <= 0 (r <= 0 for a put) it is European. At t <= 0 both bounds are intrinsic.
    """
    shape, codes, calls, (s, k, tt, r, q) = _prepare(model, is_call, spot, strike, t, rate,
                                                      div_yield)
    lower, upper = _bounds_flat(codes, s, k, tt, r, q, calls)
    return lower.reshape(shape), upper.reshape(shape)


def _bounds_flat(model: NDArray[np.int64], s: Array, k: Array, t: Array, r: Array, q: Array,
                 call: NDArray[np.bool_]) -> tuple[Array, Array]:
    q = np.where(model == BLACK76, r, q)
    live_t = np.maximum(t, 0.0)
    disc_q, disc_r = np.exp(-q * live_t), np.exp(-r * live_t)
    intrinsic = np.where(call, np.maximum(s - k, 0.0), np.maximum(k - s, 0.0))
    forward_intrinsic = np.maximum(np.where(call, 1.0, -1.0) * (s * disc_q - k * disc_r), 0.0)
    american = model == AMERICAN
    lower = np.where(american, intrinsic, forward_intrinsic)
    upper_call = np.where(american, s * np.maximum(disc_q, 1.0), s * disc_q)
    upper_put = np.where(american, k * np.maximum(disc_r, 1.0), k * disc_r)
    upper = np.where(call, upper_call, upper_put)
    expired = t <= 0.0
    lower = np.where(expired, intrinsic, lower)
    upper = np.where(expired, intrinsic, upper)
    return lower, upper


@np.errstate(all="ignore")  # NaN/inf inputs propagate as NaN, no warnings
def implied_vol(model: ArrayLike, price: ArrayLike, spot: ArrayLike, strike: ArrayLike,
                t: ArrayLike, rate: ArrayLike, div_yield: ArrayLike, is_call: ArrayLike) -> Array:
    """The volatility at which ``option_value`` equals ``price``, vectorised.

    NaN exactly where the price is outside ``price_bounds`` (or an input is NaN). A price on
    the lower bound (within BOUND_ATOL x max(1, upper)) or below the value at VOL_FLOOR returns
    VOL_FLOOR; a price on the upper bound or above the value at the ceiling returns the ceiling
    VOL_CAP_TOTAL / sqrt(t) (at least VOL_START_HIGH). Otherwise a bracketing solver: the
    Illinois variant of regula falsi (Dowell & Jarratt 1971) with a forced bisection every
    fourth step, on a bracket found by expanding [VOL_FLOOR, VOL_START_HIGH]; it stops when the
    price is matched within 1e-13 x max(1, price) or the bracket is 1e-14 relative wide.
    """
    shape, codes, calls, (p, s, k, tt, r, q) = _prepare(model, is_call, price, spot, strike, t,
                                                         rate, div_yield)
    out = np.full(p.shape, np.nan)
    lower, upper = _bounds_flat(codes, s, k, tt, r, q, calls)
    tol = BOUND_ATOL * np.maximum(1.0, upper)
    finite = np.isfinite(p) & np.isfinite(s) & np.isfinite(k) & np.isfinite(tt) \
        & np.isfinite(r) & np.isfinite(q)
    valid = finite & (p >= lower - tol) & (p <= upper + tol)
    at_lower = valid & (p <= lower + tol)
    out[at_lower] = VOL_FLOOR
    cap = np.maximum(VOL_START_HIGH, VOL_CAP_TOTAL / np.sqrt(np.maximum(tt, 1e-300)))
    at_upper = valid & ~at_lower & (p >= upper - tol)
    out[at_upper] = cap[at_upper]
    idx = np.flatnonzero(valid & ~at_lower & ~at_upper)
    if idx.size:
        out[idx] = _solve_vol(codes[idx], p[idx], s[idx], k[idx], tt[idx], r[idx], q[idx],
                              calls[idx], cap[idx])
    return out.reshape(shape)


def _solve_vol(model: NDArray[np.int64], p: Array, s: Array, k: Array, t: Array, r: Array,
               q: Array, call: NDArray[np.bool_], cap: Array) -> Array:
    """Bracketing solve of value(vol) = p on elements strictly inside the bounds (t > 0)."""
    n = p.size
    out = np.full(n, np.nan)

    def f(sel: NDArray[np.intp], vol: Array) -> Array:
        return _value_flat(model[sel], s[sel], k[sel], t[sel], r[sel], q[sel], vol,
                           call[sel]) - p[sel]

    all_idx = np.arange(n)
    lo = np.full(n, VOL_FLOOR)
    flo = f(all_idx, lo)
    done = flo >= 0.0  # the price is not above the value at the floor: the tiny vol
    out[done] = VOL_FLOOR
    hi = np.minimum(np.full(n, VOL_START_HIGH), cap)
    fhi = np.full(n, np.nan)
    act = np.flatnonzero(~done)
    fhi[act] = f(act, hi[act])
    # expand the bracket upwards (x4) until value(hi) >= price or hi reaches the cap
    grow = act[fhi[act] < 0.0]
    while grow.size:
        at_cap = hi[grow] >= cap[grow]
        out[grow[at_cap]] = cap[grow[at_cap]]
        done[grow[at_cap]] = True
        grow = grow[~at_cap]
        if not grow.size:
            break
        lo[grow], flo[grow] = hi[grow], fhi[grow]
        hi[grow] = np.minimum(hi[grow] * 4.0, cap[grow])
        fhi[grow] = f(grow, hi[grow])
        grow = grow[fhi[grow] < 0.0]
    act = np.flatnonzero(~done)
    exact = act[fhi[act] == 0.0]
    out[exact] = hi[exact]
    act = act[fhi[act] != 0.0]
    side = np.zeros(n, dtype=np.int8)
    ftol = 1e-13 * np.maximum(1.0, p)
    for it in range(200):
        if not act.size:
            break
        a, b_, fa, fb = lo[act], hi[act], flo[act], fhi[act]
        x = (a * fb - b_ * fa) / (fb - fa)
        bisect = (it % 4 == 3) | ~((x > a) & (x < b_))
        x = np.where(bisect, 0.5 * (a + b_), x)
        fx = f(act, x)
        below = fx < 0.0
        # Illinois: halve the stale end's function value when the same end moves twice
        lo_move, hi_move = act[below], act[~below]
        fhi[lo_move[side[lo_move] == -1]] *= 0.5
        flo[hi_move[side[hi_move] == 1]] *= 0.5
        lo[lo_move], flo[lo_move], side[lo_move] = x[below], fx[below], -1
        hi[hi_move], fhi[hi_move], side[hi_move] = x[~below], fx[~below], 1
        conv = (np.abs(fx) <= ftol[act]) | (hi[act] - lo[act] <= 1e-14 * hi[act])
        out[act[conv]] = x[conv]
        act = act[~conv]
    if act.size:  # not reached in practice: the bisection steps bound the iterations
        out[act] = 0.5 * (lo[act] + hi[act])
    return out


@np.errstate(all="ignore")  # NaN/inf inputs propagate as NaN, no warnings
def greeks(model: ArrayLike, spot: ArrayLike, strike: ArrayLike, t: ArrayLike, rate: ArrayLike,
           div_yield: ArrayLike, vol: ArrayLike, is_call: ArrayLike) -> dict[str, Array]:
    """Per-unit ``delta``, ``gamma`` (per unit of underlying), ``vega`` (per 1.00 of vol) and
    ``theta`` (per year: -dV/dt with t the time to expiry in years; negative for a decaying long).

    European and Black-76: analytic (Haug 2007, 2.1: generalised BSM with cost of carry b = r - q,
    b = 0 for Black-76). American, and any element with vol <= 0 or a non-positive spot or
    strike: central finite differences of ``option_value`` (one-sided in vol at vol 0). At
    t <= 0: delta is the intrinsic value's slope (+/-1 in the money, else 0), the rest 0.
    """
    shape, codes, calls, (s, k, tt, r, q, v) = _prepare(model, is_call, spot, strike, t, rate,
                                                         div_yield, vol)
    n = s.size
    delta, gamma, vega, theta = (np.full(n, np.nan) for _ in range(4))
    expired = tt <= 0.0
    itm = np.where(calls, s > k, s < k)
    delta[expired] = np.where(itm[expired], np.where(calls[expired], 1.0, -1.0), 0.0)
    gamma[expired] = vega[expired] = theta[expired] = 0.0
    regular = ~expired & (v > 0.0) & (s > 0.0) & (k > 0.0)
    analytic = regular & (codes != AMERICAN)
    numeric = ~expired & ~analytic
    if analytic.any():
        a = analytic
        qa = np.where(codes[a] == BLACK76, r[a], q[a])
        res = _analytic_greeks(s[a], k[a], tt[a], r[a], qa, v[a], calls[a])
        delta[a], gamma[a], vega[a], theta[a] = res
    if numeric.any():
        m = numeric
        res = _fd_greeks(codes[m], s[m], k[m], tt[m], r[m], q[m], v[m], calls[m])
        delta[m], gamma[m], vega[m], theta[m] = res
    return {"delta": delta.reshape(shape), "gamma": gamma.reshape(shape),
            "vega": vega.reshape(shape), "theta": theta.reshape(shape)}


def _analytic_greeks(s: Array, k: Array, t: Array, r: Array, q: Array, v: Array,
                     call: NDArray[np.bool_]) -> tuple[Array, Array, Array, Array]:
    """Generalised BSM Greeks (Haug 2007, 2.1.1, 2.2.1, 2.3.1, 2.4.1)."""
    sqrt_t = np.sqrt(t)
    sv = v * sqrt_t
    d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / sv
    d2 = d1 - sv
    disc_q, disc_r = np.exp(-q * t), np.exp(-r * t)
    pdf = _norm_pdf(d1)
    sign = np.where(call, 1.0, -1.0)
    n1, n2 = ndtr(sign * d1), ndtr(sign * d2)
    delta = sign * disc_q * n1
    gamma = disc_q * pdf / (s * sv)
    vega = s * disc_q * pdf * sqrt_t
    theta = (-s * disc_q * pdf * v / (2.0 * sqrt_t)
             + sign * (q * s * disc_q * n1 - r * k * disc_r * n2))
    return delta, gamma, vega, theta


def _fd_greeks(model: NDArray[np.int64], s: Array, k: Array, t: Array, r: Array, q: Array,
               v: Array, call: NDArray[np.bool_]) -> tuple[Array, Array, Array, Array]:
    """Central finite differences of option values; all bumps valued in one call."""
    total = np.where(v > 0.0, v * np.sqrt(t), 0.0)
    ds = np.abs(s) * np.clip(0.02 * total, 1e-5, 1e-3)
    ds = np.where(ds > 0.0, ds, 1e-6 * np.maximum(np.abs(k), 1.0))
    dv = np.where(v > 2e-4, 1e-4, 0.0)  # 0: one-sided (forward) difference below
    dv_fwd = 1e-4
    dt = np.minimum(1e-4, 0.5 * t)
    v_up = np.where(dv > 0.0, v + dv, np.maximum(v, 0.0) + dv_fwd)
    v_dn = np.where(dv > 0.0, v - dv, np.maximum(v, 0.0))
    bumps = [
        (s, t, v),            # base
        (s + ds, t, v), (s - ds, t, v),
        (s, t, v_up), (s, t, v_dn),
        (s, t + dt, v), (s, t - dt, v),
    ]
    m = len(bumps)
    values = _value_flat(np.tile(model, m), np.concatenate([b[0] for b in bumps]),
                         np.tile(k, m), np.concatenate([b[1] for b in bumps]), np.tile(r, m),
                         np.tile(q, m), np.concatenate([b[2] for b in bumps]),
                         np.tile(call, m)).reshape(m, -1)
    base, s_up, s_dn, vol_up, vol_dn, t_up, t_dn = values
    delta = (s_up - s_dn) / (2.0 * ds)
    gamma = (s_up - 2.0 * base + s_dn) / (ds * ds)
    vega = (vol_up - vol_dn) / (v_up - v_dn)
    theta = -(t_up - t_dn) / (2.0 * dt)
    return delta, gamma, vega, theta
