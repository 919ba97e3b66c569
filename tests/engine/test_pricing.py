"""margin.engine.pricing: reference vectors, BS2002 vs the binomial limit, parity, bounds,
implied-vol round trips, numba vs numpy, Greeks vs finite differences. Plain pytest, no Django."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal, norm

from margin.engine import _pricing_kernels as kernels
from margin.engine import pricing as P
from margin.engine import reference
from tests.vectors import load_vectors

AMERICAN_TOL = 0.035  # METHODOLOGY.md section 1: per unit, against the binomial limit
TREE_STEPS = 1001  # Leisen-Reimer: within 3e-4 of the 8001-step value on the IBM grid

VECTORS = load_vectors("pricing.json")["cases"]
MODEL_OF = {"european": P.EUROPEAN, "american": P.AMERICAN}


def _vector_args(case: dict) -> tuple:
    request = case["request"]
    position = request["positions"][0]
    underlying = request["underlyings"][position["underlying"]]
    assert position["quantity"] == 1 and position["multiplier"] == 1
    return (MODEL_OF[position["exercise"]], underlying["price"], position["strike"],
            position["time_to_expiry"], request.get("rate", 0.0),
            underlying.get("dividend_yield", 0.0), position["implied_vol"],
            position["right"] == "call")


def _random_book(n: int, seed: int, deep: bool = False) -> tuple[np.ndarray, ...]:
    """Mixed-model contracts: spot 5-2000, moneyness +/-30 % (+/-90 % when deep), 1 day - 3 y."""
    rng = np.random.default_rng(seed)
    model = rng.integers(0, 3, n)
    spot = rng.uniform(5.0, 2000.0, n)
    strike = spot * np.exp(rng.normal(0.0, 0.9 if deep else 0.3, n))
    t = rng.choice([1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 3.0], n)
    rate = rng.uniform(-0.01, 0.09, n)
    q = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.0, 0.08, n))
    vol = rng.uniform(0.05, 1.5, n)
    is_call = rng.random(n) < 0.5
    return model, spot, strike, t, rate, q, vol, is_call


@pytest.fixture
def numpy_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "USE_NUMBA", False)


# --------------------------------------------------------------------------- reference vectors
@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_reference_vector(case: dict) -> None:
    args = _vector_args(case)
    value = float(P.option_value(*args))
    greeks = {k: float(v) for k, v in P.greeks(*args).items()}
    for key, expected in case["expect"].items():
        field = key.rsplit(".", 1)[-1]
        got = value if field == "theoretical_price" else greeks[field]
        assert got == pytest.approx(expected, abs=case["tolerance"]), (key, got, expected)


@pytest.mark.parametrize("case", [c for c in VECTORS if _vector_args(c)[0] == P.AMERICAN],
                         ids=lambda c: c["name"])
def test_reference_american_rows_are_the_binomial_limit(case: dict) -> None:
    """The yardstick itself: our tree reproduces the published binomial limits to 5e-4."""
    _, *args = _vector_args(case)
    expected = case["expect"]["positions[0].theoretical_price"]
    assert float(reference.binomial_american(*args, steps=2001)) == pytest.approx(expected, abs=5e-4)


def test_model_codes_agree_with_kernels() -> None:
    assert (P.EUROPEAN, P.AMERICAN, P.BLACK76) == (0, 1, 2)
    assert (kernels.EUROPEAN, kernels.AMERICAN, kernels.BLACK76) == (0, 1, 2)
    assert kernels.T1_FRACTION == pytest.approx(P._T1_FRACTION, rel=1e-15)


# --------------------------------------------------------------------------- BS2002
def _haug_bs2002_call(s: float, x: float, t: float, r: float, b: float, v: float) -> float:
    """Straight transcription of Haug (2007) 3.3 / his VBA, with scipy's bivariate normal."""

    def cbnd(a: float, c: float, rho: float) -> float:
        return float(multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([a, c]))

    def phi(s_, t_, g, h, i):
        lam = (-r + g * b + 0.5 * g * (g - 1) * v * v) * t_
        d = -(math.log(s_ / h) + (b + (g - 0.5) * v * v) * t_) / (v * math.sqrt(t_))
        kap = 2 * b / v**2 + (2 * g - 1)
        return math.exp(lam) * s_**g * (norm.cdf(d) - (i / s_) ** kap
                                        * norm.cdf(d - 2 * math.log(i / s_) / (v * math.sqrt(t_))))

    def ksi(s_, t2, g, h, i2, i1, t1):
        m = b + (g - 0.5) * v * v
        sq1, sq2 = v * math.sqrt(t1), v * math.sqrt(t2)
        e1 = (math.log(s_ / i1) + m * t1) / sq1
        e2 = (math.log(i2**2 / (s_ * i1)) + m * t1) / sq1
        e3 = (math.log(s_ / i1) - m * t1) / sq1
        e4 = (math.log(i2**2 / (s_ * i1)) - m * t1) / sq1
        f1 = (math.log(s_ / h) + m * t2) / sq2
        f2 = (math.log(i2**2 / (s_ * h)) + m * t2) / sq2
        f3 = (math.log(i1**2 / (s_ * h)) + m * t2) / sq2
        f4 = (math.log(s_ * i1**2 / (h * i2**2)) + m * t2) / sq2
        rho = math.sqrt(t1 / t2)
        lam = -r + g * b + 0.5 * g * (g - 1) * v * v
        kap = 2 * b / v**2 + (2 * g - 1)
        return math.exp(lam * t2) * s_**g * (
            cbnd(-e1, -f1, rho) - (i2 / s_) ** kap * cbnd(-e2, -f2, rho)
            - (i1 / s_) ** kap * cbnd(-e3, -f3, -rho) + (i1 / i2) ** kap * cbnd(-e4, -f4, -rho))

    t1 = 0.5 * (math.sqrt(5) - 1) * t
    beta = (0.5 - b / v**2) + math.sqrt((b / v**2 - 0.5) ** 2 + 2 * r / v**2)
    b_inf = beta / (beta - 1) * x
    b0 = max(x, r / (r - b) * x)
    h1 = -(b * t1 + 2 * v * math.sqrt(t1)) * x**2 / ((b_inf - b0) * b0)
    h2 = -(b * t + 2 * v * math.sqrt(t)) * x**2 / ((b_inf - b0) * b0)
    i1 = b0 + (b_inf - b0) * (1 - math.exp(h1))
    i2 = b0 + (b_inf - b0) * (1 - math.exp(h2))
    a1, a2 = (i1 - x) * i1**-beta, (i2 - x) * i2**-beta
    if s >= i2:
        return s - x
    return (a2 * s**beta - a2 * phi(s, t1, beta, i2, i2) + phi(s, t1, 1, i2, i2)
            - phi(s, t1, 1, i1, i2) - x * phi(s, t1, 0, i2, i2) + x * phi(s, t1, 0, i1, i2)
            + a1 * phi(s, t1, beta, i1, i2) - a1 * ksi(s, t, beta, i1, i2, i1, t1)
            + ksi(s, t, 1, i1, i2, i1, t1) - ksi(s, t, 1, x, i2, i1, t1)
            - x * ksi(s, t, 0, i1, i2, i1, t1) + x * ksi(s, t, 0, x, i2, i1, t1))


@pytest.mark.parametrize("s, k, t, r, q, v, is_call", [
    (42.0, 40.0, 0.75, 0.04, 0.08, 0.35, True),
    (36.0, 40.0, 1.0, 0.06, 0.0, 0.20, False),
    (90.0, 100.0, 0.1, 0.10, 0.10, 0.25, False),
    (110.0, 100.0, 0.1, 0.10, 0.10, 0.25, True),
    (97.73, 105.0, 56 / 365, 0.0525, 0.0, 0.30, False),
    (100.0, 80.0, 0.5, 0.03, 0.06, 0.45, True),
    (250.0, 300.0, 2.0, 0.05, 0.01, 0.60, False),
])
@pytest.mark.parametrize("use_numba", [True, False])
def test_bs2002_reproduces_haug_formula(s, k, t, r, q, v, is_call, use_numba) -> None:
    """The overflow-safe rewrite equals the textbook formula (where that one is finite)."""
    if is_call:
        textbook = _haug_bs2002_call(s, k, t, r, r - q, v)
    else:  # put-call transformation
        textbook = _haug_bs2002_call(k, s, t, q, q - r, v)
    european = float(P.option_value(P.EUROPEAN, s, k, t, r, q, v, is_call))
    expected = max(textbook, european)  # BS2002 is floored at the European value
    if use_numba:
        got = kernels.bs2002_value(s, k, t, r, q, v, is_call)
    else:
        got = float(reference.bs2002_value(s, k, t, r, q, v, is_call))
    assert got == pytest.approx(expected, abs=1e-9)


def _ibm_grid() -> tuple[np.ndarray, ...]:
    """Cboe's 2007 IBM example at every equity valuation point: S = 97.73 x (1 +/- 3..15 %)."""
    points = np.array([-0.15, -0.12, -0.09, -0.06, -0.03, 0.0, 0.03, 0.06, 0.09, 0.12, 0.15])
    rows = np.array(list(itertools.product(97.73 * (1 + points), [90.0, 95.0, 100.0, 105.0, 110.0],
                                           [0.15, 0.20, 0.25, 0.30], [True, False])))
    s, k, v, c = rows.T
    n = s.size
    return s, k, np.full(n, 56 / 365), np.full(n, 0.0525), np.zeros(n), v, c.astype(bool)


def _short_dated_grid() -> tuple[np.ndarray, ...]:
    """Short-dated, near-the-money: t <= 56 days, |K/S - 1| <= 10 %, vol <= 45 %, r <= 5 %,
    q <= 2 %: where BS2002 meets $0.035 (max 0.033)."""
    rows = np.array(list(itertools.product(
        [90.0, 95.0, 100.0, 105.0, 110.0], [0.10, 0.20, 0.30, 0.45],
        [7 / 365, 14 / 365, 30 / 365, 56 / 365], [0.0, 0.03, 0.05], [0.0, 0.02], [True, False])))
    k, v, t, r, q, c = rows.T
    return np.full(k.size, 100.0), k, t, r, q, v, c.astype(bool)


def _domain_grid() -> tuple[np.ndarray, ...]:
    """METHODOLOGY.md's domain and wider: S = 100, K 50-200, t 1 week-3 years, vol 5-100 %,
    r 0-8 %, q 0-5 %, calls and puts (12,936 options)."""
    rows = np.array(list(itertools.product(
        [50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 140.0, 160.0, 200.0],
        [7 / 365, 30 / 365, 91 / 365, 0.5, 1.0, 2.0, 3.0],
        [0.05, 0.10, 0.20, 0.30, 0.45, 0.60, 1.00], [0.0, 0.02, 0.05, 0.08], [0.0, 0.02, 0.05],
        [True, False])))
    k, t, v, r, q, c = rows.T
    return np.full(k.size, 100.0), k, t, r, q, v, c.astype(bool)


def _worst(err: np.ndarray, s, k, t, r, q, v, c) -> str:
    i = int(np.argmax(err))
    return (f"max error {err[i]:.5f} at S={s[i]:.3f} K={k[i]} t={t[i]:.4f} r={r[i]} q={q[i]} "
            f"vol={v[i]} call={c[i]}")


@pytest.mark.parametrize("grid", [_ibm_grid, _short_dated_grid], ids=["ibm", "short_dated"])
def test_american_and_bs2002_within_tolerance_near_the_money(grid) -> None:
    s, k, t, r, q, v, c = grid()
    tree = reference.binomial_american(s, k, t, r, q, v, c, steps=TREE_STEPS)
    err = np.abs(P.option_value(P.AMERICAN, s, k, t, r, q, v, c) - tree)
    assert err.max() <= 0.002, _worst(err, s, k, t, r, q, v, c)
    # BS2002 meets the tolerance here too (only here: see the domain test) ...
    bs2002 = reference.bs2002_value(s, k, t, r, q, v, c)
    err = np.abs(bs2002 - tree)
    assert err.max() <= AMERICAN_TOL, _worst(err, s, k, t, r, q, v, c)
    # ... and, as it prices one exercise rule, is a lower bound (up to the tree's own error)
    assert (bs2002 - tree).max() <= 1e-3


def test_american_within_tolerance_of_binomial_limit_on_the_whole_domain() -> None:
    """METHODOLOGY.md section 1: AMERICAN within $0.035 per unit of the binomial limit, here
    everywhere on K 50-200 % of S, t 1 week-3 years, vol 5-100 %, r 0-8 %, q 0-5 %. Measured
    0.015 against this 1001-step tree, of which 0.011 is the tree's own error (it is 0.008
    against 2001 steps, 0.0035 the converged ALO against 4001; see the next test)."""
    s, k, t, r, q, v, c = _domain_grid()
    american = P.option_value(P.AMERICAN, s, k, t, r, q, v, c)
    tree = reference.binomial_american(s, k, t, r, q, v, c, steps=TREE_STEPS)
    err = np.abs(american - tree)
    assert err.max() <= AMERICAN_TOL, _worst(err, s, k, t, r, q, v, c)
    assert err.max() <= 0.02, _worst(err, s, k, t, r, q, v, c)
    assert np.quantile(err, 0.99) <= 0.005
    # BS2002, by contrast, misses on 17 % of this grid, by up to $4.6
    miss = np.abs(reference.bs2002_value(s, k, t, r, q, v, c) - tree) > AMERICAN_TOL
    assert miss.mean() > 0.1


def test_alo_scheme_is_converged_on_the_whole_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production scheme (5 nodes, 3 iterations, 5 + 15 points) against a converged one
    (24 nodes, 12 iterations, 40 + 80 points; within 1e-6 of 32 / 16 / 50 + 100): 0.0034."""
    s, k, t, r, q, v, c = _domain_grid()
    fast = P.option_value(P.AMERICAN, s, k, t, r, q, v, c)
    names = ["_ALO_TAU", "_ALO_FP_U", "_ALO_FP_W", "_ALO_FP_COS", "_ALO_FP_INTERP", "_ALO_PX_Z",
             "_ALO_PX_W", "_ALO_PX_INTERP"]
    for name, value in zip(names, P._alo_scheme(24, 40, 80), strict=True):
        monkeypatch.setattr(P, name, value)
    monkeypatch.setattr(P, "ALO_ITERATIONS", 12)
    monkeypatch.setattr(P, "USE_NUMBA", False)  # the numpy reference reads the scheme at run time
    converged = P.option_value(P.AMERICAN, s, k, t, r, q, v, c)
    err = np.abs(fast - converged)
    assert err.max() <= 0.005, _worst(err, s, k, t, r, q, v, c)
    assert np.quantile(err, 0.99) <= 0.001


@pytest.mark.parametrize("s, k, t, r, q, v, is_call, bs2002_error", [
    (100.0, 95.0, 1.0, 0.08, 0.0, 0.30, False, 0.079),      # 1-year put, high rate
    (100.0, 130.0, 56 / 365, 0.10, 0.10, 0.45, False, 0.24),  # deep ITM 2-month put
    (100.0, 70.0, 1.0, 0.05, 0.05, 0.30, True, 0.25),       # deep ITM call, futures-like carry
    (100.0, 90.0, 14 / 365, 0.03, 0.05, 0.30, True, 0.039),   # ITM 2-week call with a yield
    (100.0, 200.0, 3.0, 0.05, 0.05, 1.00, False, 4.57),     # BS2002's worst on the domain
])
def test_former_bs2002_breaches(s, k, t, r, q, v, is_call, bs2002_error) -> None:
    """Where BS2002 missed the binomial limit, AMERICAN now meets it with room to spare."""
    tree = float(reference.binomial_american(s, k, t, r, q, v, is_call, steps=2 * TREE_STEPS))
    american = float(P.option_value(P.AMERICAN, s, k, t, r, q, v, is_call))
    assert abs(american - tree) <= 0.01
    bs2002 = float(reference.bs2002_value(s, k, t, r, q, v, is_call))
    assert tree - bs2002 == pytest.approx(bs2002_error, abs=0.01)


def test_series_path_equals_elementwise() -> None:
    """A series at many spots (spot (n, points), the rest (n, 1)) computes each American
    boundary once; the values are those of the element-by-element kernel, bit for bit."""
    model, s, k, t, r, q, v, c = _random_book(3000, seed=12)
    moves = np.linspace(-0.15, 0.15, 10)
    spots = s[:, None] * (1.0 + moves)
    shared = P.option_value(model[:, None], spots, k[:, None], t[:, None], r[:, None],
                            q[:, None], v[:, None], c[:, None])
    n, m = spots.shape
    flat = P._value_flat(np.repeat(model, m).astype(np.int64), spots.ravel(), np.repeat(k, m),
                         np.repeat(t, m), np.repeat(r, m), np.repeat(q, m), np.repeat(v, m),
                         np.repeat(c, m)).reshape(n, m)
    np.testing.assert_array_equal(shared, flat)


def test_alo_scheme_constants_agree_with_kernels() -> None:
    names = ["TAU", "FP_U", "FP_W", "FP_COS", "FP_INTERP", "PX_Z", "PX_W", "PX_INTERP"]
    for name in names:
        np.testing.assert_array_equal(getattr(kernels, f"ALO_{name}"), getattr(P, f"_ALO_{name}"))
    assert kernels.ALO_ITERATIONS == P.ALO_ITERATIONS
    assert kernels.ALO_MIN_TOTAL_VOL == P.ALO_MIN_TOTAL_VOL
    assert (kernels._QD_TOL, kernels._QD_MAX_ITER) == (P._QD_TOL, P._QD_MAX_ITER)


def test_american_structure() -> None:
    model, s, k, t, r, q, v, c = _random_book(5000, seed=11)
    amer = P.option_value(P.AMERICAN, s, k, t, r, q, v, c)
    euro = P.option_value(P.EUROPEAN, s, k, t, r, q, v, c)
    intrinsic = np.where(c, np.maximum(s - k, 0), np.maximum(k - s, 0))
    assert np.all(amer >= euro - 1e-9 * np.maximum(1, euro))
    assert np.all(amer >= intrinsic)
    # a call with q <= 0 <= r (a put with r <= 0 <= q) is never exercised early: European
    never = np.where(c, (q <= 0) & (r >= 0), (r <= 0) & (q >= 0))
    np.testing.assert_allclose(amer[never], euro[never], rtol=1e-13, atol=1e-12)
    # with a negative rate BS2002's "b >= r" rule still says European: floored at intrinsic
    negative = c & (q <= 0) & (r < 0)
    assert negative.sum() > 10
    np.testing.assert_allclose(amer[negative], np.maximum(euro, intrinsic)[negative], rtol=1e-13)
    # put-call transformation P(S, K, T, r, q) = C(K, S, T, q, r)
    np.testing.assert_allclose(P.option_value(P.AMERICAN, s, k, t, r, q, v, False),
                               P.option_value(P.AMERICAN, k, s, t, q, r, v, True),
                               rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- parity and bounds
def test_put_call_parity_european_and_black76() -> None:
    _, s, k, t, r, q, v, _ = _random_book(4000, seed=2)
    call = P.option_value(P.EUROPEAN, s, k, t, r, q, v, True)
    put = P.option_value(P.EUROPEAN, s, k, t, r, q, v, False)
    np.testing.assert_allclose(call - put, s * np.exp(-q * t) - k * np.exp(-r * t),
                               rtol=0, atol=1e-10 * s.max())
    call = P.option_value(P.BLACK76, s, k, t, r, q, v, True)  # q is ignored
    put = P.option_value(P.BLACK76, s, k, t, r, 123.0, v, False)
    np.testing.assert_allclose(call - put, (s - k) * np.exp(-r * t), rtol=0, atol=1e-10 * s.max())


def test_values_within_price_bounds() -> None:
    model, s, k, t, r, q, v, c = _random_book(20000, seed=3, deep=True)
    value = P.option_value(model, s, k, t, r, q, v, c)
    lower, upper = P.price_bounds(model, s, k, t, r, q, c)
    tol = 1e-10 * np.maximum(1, upper)
    assert np.all(value >= lower - tol) and np.all(value <= upper + tol)


def test_price_bounds_formulas() -> None:
    s, k, t, r, q = 100.0, 90.0, 0.5, 0.05, 0.03
    dq, dr = math.exp(-q * t), math.exp(-r * t)
    lo, up = P.price_bounds([0, 0, 1, 1, 2, 2], s, k, t, r, q, [True, False] * 3)
    np.testing.assert_allclose(lo, [s * dq - k * dr, 0, s - k, 0, (s - k) * dr, 0])
    np.testing.assert_allclose(up, [s * dq, k * dr, s, k, s * dr, k * dr])
    # at expiry both bounds are intrinsic; an American put with r < 0 may exceed K
    lo, up = P.price_bounds(P.AMERICAN, [120.0, 80.0], 100.0, [0.0, -1.0], r, q, True)
    np.testing.assert_array_equal(lo, [20.0, 0.0])
    np.testing.assert_array_equal(up, [20.0, 0.0])
    _, up = P.price_bounds(P.AMERICAN, s, k, t, -0.01, q, False)
    assert float(up) == pytest.approx(k * math.exp(0.01 * t))


# --------------------------------------------------------------------------- special cases
def test_expiry_and_zero_vol() -> None:
    # t <= 0: intrinsic, every model
    np.testing.assert_array_equal(
        P.option_value([0, 1, 2, 1], [110, 90, 100, 100], 100, [0, 0, -0.1, 0], 0.05, 0.02,
                       0.2, [True, False, True, False]), [10.0, 10.0, 0.0, 0.0])
    # vol 0: discounted forward intrinsic (European, Black-76)
    s, k, t, r, q = 100.0, 100.0, 1.0, 0.05, 0.01
    assert float(P.option_value(P.EUROPEAN, s, k, t, r, q, 0.0, True)) == pytest.approx(
        s * math.exp(-q * t) - k * math.exp(-r * t))
    assert float(P.option_value(P.BLACK76, 90.0, k, t, r, q, 0.0, False)) == pytest.approx(
        10 * math.exp(-r * t))
    # American vol 0: best deterministic exercise date (now, expiry, or the stationary date)
    assert float(P.option_value(P.AMERICAN, 90.0, k, t, r, 0.0, 0.0, False)) == 10.0
    assert float(P.option_value(P.AMERICAN, 120.0, k, t, 0.01, 0.05, 0.0, True)) == 20.0
    tau = math.log(0.10 * 100 / (0.08 * 120)) / (0.10 - 0.08)  # interior optimum, ~2.04 y
    expected = 120 * math.exp(-0.08 * tau) - 100 * math.exp(-0.10 * tau)
    assert 0 < tau < 3 and expected > max(20.0, 120 * math.exp(-0.24) - 100 * math.exp(-0.3))
    assert float(P.option_value(P.AMERICAN, 120.0, 100.0, 3.0, 0.10, 0.08, 0.0, True)) == \
        pytest.approx(expected, rel=1e-14)
    # tiny vols converge to the zero-vol values (no overflow in BS2002's powers)
    for is_call, r_, q_ in [(False, 0.05, 0.08), (True, 0.08, 0.02), (True, 0.02, 0.06)]:
        spots = np.array([80.0, 95.0, 100.0, 105.0, 130.0])
        tiny = P.option_value(P.AMERICAN, spots, 100.0, 1.0, r_, q_,
                              np.array([[1e-8], [1e-6], [1e-4]]), is_call)
        zero = P.option_value(P.AMERICAN, spots, 100.0, 1.0, r_, q_, 0.0, is_call)
        assert np.all(np.isfinite(tiny))
        np.testing.assert_allclose(tiny, np.broadcast_to(zero, tiny.shape), atol=0.02)


def test_broadcasting_shapes_and_mixed_models() -> None:
    spots = np.array([[90.0], [100.0]]) * np.array([0.9, 1.0, 1.1])  # (2 series, 3 points)
    out = P.option_value(P.AMERICAN, spots, np.array([[100.0], [95.0]]), 0.5, 0.05, 0.01,
                         np.array([[0.2], [0.3]]), False)
    assert out.shape == (2, 3) and out.dtype == np.float64
    single = P.option_value(P.AMERICAN, 90.0 * 1.1, 100.0, 0.5, 0.05, 0.01, 0.2, False)
    assert isinstance(single, np.ndarray) and single.shape == ()
    assert out[0, 2] == pytest.approx(float(single), rel=1e-15)
    models = np.array([P.EUROPEAN, P.AMERICAN, P.BLACK76])
    mixed = P.option_value(models, 100.0, 100.0, 1.0, 0.05, 0.03, 0.25, False)
    each = [float(P.option_value(m, 100.0, 100.0, 1.0, 0.05, 0.03, 0.25, False)) for m in models]
    np.testing.assert_allclose(mixed, each, rtol=1e-15)
    assert mixed[1] > mixed[0]  # early exercise premium
    with pytest.raises(ValueError):
        P.option_value(3, 100.0, 100.0, 1.0, 0.05, 0.0, 0.2, True)
    assert np.isnan(P.option_value([0, 1], [np.nan, 100.0], 100.0, [1.0, np.nan], 0.05, 0, 0.2,
                                   True)).all()


# --------------------------------------------------------------------------- implied vol
@pytest.mark.parametrize("use_numba", [True, False])
def test_implied_vol_round_trip(use_numba: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "USE_NUMBA", use_numba)
    model, s, k, t, r, q, v, c = _random_book(6000, seed=4, deep=True)
    price = P.option_value(model, s, k, t, r, q, v, c)
    lower, upper = P.price_bounds(model, s, k, t, r, q, c)
    inside = (price > lower + 1e-9 * np.maximum(1, upper)) & (price < upper - 1e-9 * upper)
    assert inside.sum() > 3000
    iv = P.implied_vol(model, price, s, k, t, r, q, c)
    assert not np.isnan(iv[inside]).any()  # never NaN strictly inside the bounds
    repriced = P.option_value(model, s, k, t, r, q, iv, c)
    np.testing.assert_allclose(repriced[inside], price[inside], rtol=1e-10, atol=1e-10)
    vega = P.greeks(model, s, k, t, r, q, v, c)["vega"]
    sensitive = inside & (vega > 1e-3 * s * np.sqrt(t))  # the price pins the vol down
    np.testing.assert_allclose(iv[sensitive], v[sensitive], rtol=1e-8)


@pytest.mark.parametrize("model", [P.EUROPEAN, P.AMERICAN, P.BLACK76])
@pytest.mark.parametrize("is_call", [True, False])
def test_implied_vol_deep_itm_otm(model: int, is_call: bool) -> None:
    strikes = np.array([5.0, 20.0, 50.0, 80.0, 100.0, 125.0, 200.0, 500.0, 2000.0])
    for t in (1 / 365, 0.1, 2.0):
        for vol in (0.08, 0.4, 2.0):
            price = P.option_value(model, 100.0, strikes, t, 0.05, 0.02, vol, is_call)
            lower, upper = P.price_bounds(model, 100.0, strikes, t, 0.05, 0.02, is_call)
            iv = P.implied_vol(model, price, 100.0, strikes, t, 0.05, 0.02, is_call)
            assert not np.isnan(iv).any(), (t, vol, price, lower, upper, iv)
            repriced = P.option_value(model, 100.0, strikes, t, 0.05, 0.02, iv, is_call)
            np.testing.assert_allclose(repriced, price, rtol=1e-9, atol=1e-9)
            mid = 0.5 * (lower + upper)  # a price anywhere inside the bounds has a vol
            assert not np.isnan(P.implied_vol(model, mid, 100.0, strikes, t, 0.05, 0.02,
                                              is_call)).any()


def test_implied_vol_at_and_outside_bounds() -> None:
    args = (100.0, 90.0, 0.5, 0.05, 0.02)
    for model in (P.EUROPEAN, P.AMERICAN, P.BLACK76):
        for is_call in (True, False):
            lower, upper = (float(x) for x in P.price_bounds(model, *args, is_call))
            prices = [lower - 1e-6, lower, lower + 5e-13, upper, upper + 1e-6, -1.0, np.nan,
                      np.inf]
            iv = P.implied_vol(model, prices, *args, is_call)
            assert np.isnan(iv[[0, 4, 5, 6, 7]]).all()
            assert iv[1] == iv[2] == P.VOL_FLOOR  # on the lower bound: a tiny vol, not NaN
            assert np.isfinite(iv[3]) and iv[3] >= P.VOL_START_HIGH
    # at expiry only the intrinsic value is a price
    iv = P.implied_vol(P.AMERICAN, [10.0, 10.5], 110.0, 100.0, 0.0, 0.05, 0.0, True)
    assert iv[0] == P.VOL_FLOOR and np.isnan(iv[1])


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from([P.EUROPEAN, P.AMERICAN, P.BLACK76]), is_call=st.booleans(),
       spot=st.floats(1.0, 5000.0), moneyness=st.floats(-2.5, 2.5),
       t=st.floats(1 / 365 / 24, 5.0), rate=st.floats(-0.02, 0.15), q=st.floats(0.0, 0.15),
       fraction=st.floats(1e-9, 1 - 1e-9))
def test_implied_vol_never_nan_inside_bounds(model, is_call, spot, moneyness, t, rate, q,
                                             fraction) -> None:
    strike = spot * math.exp(moneyness)
    lower, upper = (float(x) for x in P.price_bounds(model, spot, strike, t, rate, q, is_call))
    price = lower + fraction * (upper - lower)
    iv = float(P.implied_vol(model, price, spot, strike, t, rate, q, is_call))
    assert math.isfinite(iv) and iv > 0


# --------------------------------------------------------------------------- numba vs numpy
def test_numba_matches_numpy_reference() -> None:
    model, s, k, t, r, q, v, c = _random_book(30000, seed=5, deep=True)
    # special cases too: expiry, zero and tiny vols, zero spot, NaN
    t[:200] = 0.0
    v[200:400] = 0.0
    v[400:600] = 10.0 ** np.linspace(-8, -2, 200)
    s[600:650] = 0.0
    s[650] = np.nan
    args = (model, s, k, t, r, q, v, c)
    fast = P._value_flat(model.astype(np.int64), s, k, t, r, q, v, c)
    with np.errstate(all="ignore"):
        reference = P._value_numpy(model.astype(np.int64), s, k, t, r, q, v, c)
    assert np.isnan(fast[650]) and np.isnan(reference[650])
    ok = ~np.isnan(reference)
    np.testing.assert_allclose(fast[ok], reference[ok], rtol=1e-11, atol=1e-11)
    assert np.array_equal(np.isnan(fast), np.isnan(reference))
    assert P.USE_NUMBA  # numba is the default when it imports
    np.testing.assert_array_equal(P.option_value(*args), fast)


def test_numba_tree_matches_numpy_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    args = (np.array([80.0, 100.0, 120.0]), 100.0, 0.5, 0.05, 0.02, 0.3,
            np.array([True, False, False]))
    fast = reference.binomial_american(*args, steps=301)
    monkeypatch.setattr(P, "USE_NUMBA", False)
    np.testing.assert_allclose(reference.binomial_american(*args, steps=301), fast, rtol=1e-12)


# --------------------------------------------------------------------------- Greeks
def _fd_greeks(model, s, k, t, r, q, v, c) -> dict[str, np.ndarray]:
    """Independent finite differences (different bumps from the engine's own)."""

    def value(ds=0.0, dv=0.0, dt=0.0):
        return P.option_value(model, s + ds, k, t + dt, r, q, v + dv, c)

    hs, hv, ht = 5e-5 * s, 1e-5, 1e-6
    gs = 4e-3 * s * np.sqrt(t) * v
    return {"delta": (value(ds=hs) - value(ds=-hs)) / (2 * hs),
            "gamma": (value(ds=gs) - 2 * value() + value(ds=-gs)) / gs**2,
            "vega": (value(dv=hv) - value(dv=-hv)) / (2 * hv),
            "theta": -(value(dt=ht) - value(dt=-ht)) / (2 * ht)}


@pytest.mark.parametrize("model", [P.EUROPEAN, P.BLACK76, P.AMERICAN])
def test_greeks_match_finite_differences(model: int) -> None:
    rng = np.random.default_rng(6)
    n = 2000
    s, k = rng.uniform(50, 150, n), rng.uniform(60, 140, n)
    t = rng.choice([7 / 365, 0.1, 0.5, 2.0], n)
    r, q = rng.uniform(0, 0.08, n), rng.uniform(0, 0.06, n)
    v, c = rng.uniform(0.1, 0.8, n), rng.random(n) < 0.5
    got = P.greeks(model, s, k, t, r, q, v, c)
    fd = _fd_greeks(model, s, k, t, r, q, v, c)
    # American greeks are themselves differences of BS2002, which has a kink where S meets
    # its exercise boundary (and where it meets the European floor): compare away from it
    # analytic vs these differences: ~1e-5 (their truncation); American (differences of
    # differences): 1e-3 but for the few points within a bump of a kink
    tol, outliers = (1e-3, 0.005) if model == P.AMERICAN else (5e-5, 0.0)
    for name, floor in {"delta": 1e-2, "gamma": 1e-3, "vega": 1e-1, "theta": 1e-1}.items():
        bad = np.abs(got[name] - fd[name]) > tol * np.maximum(np.abs(fd[name]), floor)
        assert bad.mean() <= outliers, (name, int(bad.sum()))


def test_greeks_conventions() -> None:
    g = P.greeks(P.EUROPEAN, 100.0, 100.0, 1.0, 0.05, 0.0, 0.2, [True, False])
    assert g["delta"][0] > 0 > g["delta"][1]
    assert np.all(g["gamma"] > 0) and np.all(g["vega"] > 0)
    assert g["theta"][0] < 0  # a long call loses value as time passes (theta per year)
    # American call without a yield is European: FD greeks equal the analytic ones
    a = P.greeks(P.AMERICAN, 100.0, 95.0, 0.5, 0.05, 0.0, 0.3, True)
    e = P.greeks(P.EUROPEAN, 100.0, 95.0, 0.5, 0.05, 0.0, 0.3, True)
    for name in ("delta", "gamma", "vega", "theta"):
        assert float(a[name]) == pytest.approx(float(e[name]), rel=2e-5), name
    # at expiry: slope of the intrinsic value, nothing else
    g = P.greeks([0, 1, 2], [110.0, 90.0, 100.0], 100.0, 0.0, 0.05, 0.0, 0.2,
                 [True, True, False])
    np.testing.assert_array_equal(g["delta"], [1.0, 0.0, 0.0])
    for name in ("gamma", "vega", "theta"):
        np.testing.assert_array_equal(g[name], 0.0)
    # zero vol: finite, delta of the deterministic payoff
    g = P.greeks([0, 1], [120.0, 80.0], 100.0, 1.0, 0.05, 0.0, 0.0, [True, False])
    np.testing.assert_allclose(g["delta"], [1.0, -1.0])
    assert all(np.isfinite(x).all() for x in g.values())


# --------------------------------------------------------------------------- bivariate normal
def test_bivariate_normal_against_scipy() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-6, 6, 250), rng.uniform(-6, 6, 250)
    rho = rng.choice([-0.999, -0.95, -0.8, -0.5, -0.1, 0.0, 0.2, 0.5, 0.7861, 0.93, 0.99,
                      0.99999], 250)
    got = P.bivariate_normal_cdf(x, y, rho)
    want = [multivariate_normal(mean=[0, 0], cov=[[1, r_], [r_, 1]]).cdf([a, b])
            for a, b, r_ in zip(x, y, rho, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(P.bivariate_normal_cdf([0.3, 0.3], [-0.2, -0.2], [1.0, -1.0]),
                               [norm.cdf(-0.2), norm.cdf(0.3) - norm.cdf(0.2)], atol=1e-15)


def test_fixed_correlation_rule_matches_genz() -> None:
    a, b = (g.ravel() for g in np.meshgrid(np.linspace(-12, 12, 161), np.linspace(-12, 12, 161)))
    zero = np.zeros_like(a)
    for negative in (False, True):
        genz = P.bivariate_normal_cdf(a, b, -P._RHO if negative else P._RHO)
        np.testing.assert_allclose(P._bvn_fixed_scaled(a, b, negative, zero), genz, atol=5e-15)
    assert np.array_equal(kernels.BVN_C1, P._BVN_C1) and np.array_equal(kernels.BVN_W, P._BVN_W)
