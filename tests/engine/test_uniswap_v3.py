"""Unit tests: exact Uniswap v3 integer math and LP valuation / risk arrays."""

from __future__ import annotations

import math
import time
from datetime import date
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.engine.defi import uniswap_v3 as u
from margin.engine.errors import EngineInputError
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import LPPosition, Portfolio, Position, Underlying

PARAMS = load_parameter_set()
CRYPTO_GRID = np.asarray(PARAMS.defi.crypto_grid)
DEPEG_GRID = np.asarray(PARAMS.defi.depeg_grid)

U128 = (1 << 128) - 1
U256 = (1 << 256) - 1


def token(symbol: str, price: float, product_class: str = "crypto",
          class_group: str | None = None) -> Underlying:
    group = class_group or symbol
    return Underlying(symbol, price, product_class, "token", group, group)


UNDERLYINGS = {
    "ETH": token("ETH", 3000.0),
    "BTC": token("BTC", 60000.0),
    "USDC": token("USDC", 1.0, "stablecoin"),
    "DAI": token("DAI", 1.0, "stablecoin"),
}


def make_lp(t0: str = "ETH", t1: str = "USDC", d0: int = 18, d1: int = 6, width: int = 6960,
            amount0: int = 10 ** 18, amount1: int = 3000 * 10 ** 6, spacing: int = 60,
            offset: int = 0, **extra) -> LPPosition:
    """A position of about amount0 + amount1 around the oracle price (+offset ticks)."""
    p0, p1 = UNDERLYINGS[t0].price, UNDERLYINGS[t1].price
    sqrt_price = u.sqrt_price_x96_from_prices(p0, p1, d0, d1)
    tick = u.get_tick_at_sqrt_ratio(sqrt_price) + offset
    lower = (tick - width) // spacing * spacing
    upper = (tick + width) // spacing * spacing + spacing
    liquidity = u.get_liquidity_for_amounts(sqrt_price, u.get_sqrt_ratio_at_tick(lower),
                                            u.get_sqrt_ratio_at_tick(upper), amount0, amount1)
    return LPPosition(t0, t1, d0, d1, liquidity, lower, upper, **extra)


def portfolio_of(*positions: Position) -> Portfolio:
    return Portfolio(date(2026, 11, 24), UNDERLYINGS, tuple(positions))


def lp_position(lp: LPPosition, index: int = 0) -> Position:
    return Position(index, f"lp{index}", "uniswap_v3_lp", 1.0, lp=lp)


# ---------------------------------------------------------------------------- TickMath

def test_tick_bounds_are_the_sqrt_ratio_bounds() -> None:
    assert u.get_sqrt_ratio_at_tick(u.MIN_TICK) == u.MIN_SQRT_RATIO
    assert u.get_sqrt_ratio_at_tick(u.MAX_TICK) == u.MAX_SQRT_RATIO
    assert u.get_sqrt_ratio_at_tick(0) == u.Q96
    assert u.get_tick_at_sqrt_ratio(u.MIN_SQRT_RATIO) == u.MIN_TICK
    assert u.get_tick_at_sqrt_ratio(u.MAX_SQRT_RATIO - 1) == u.MAX_TICK - 1


@pytest.mark.parametrize("tick", [u.MIN_TICK - 1, u.MAX_TICK + 1, 10 ** 7])
def test_get_sqrt_ratio_at_tick_reverts_t(tick: int) -> None:
    with pytest.raises(ValueError, match="^T$"):
        u.get_sqrt_ratio_at_tick(tick)


@pytest.mark.parametrize("sqrt_price", [0, u.MIN_SQRT_RATIO - 1, u.MAX_SQRT_RATIO])
def test_get_tick_at_sqrt_ratio_reverts_r(sqrt_price: int) -> None:
    with pytest.raises(ValueError, match="^R$"):
        u.get_tick_at_sqrt_ratio(sqrt_price)


def test_tick_math_rejects_floats() -> None:
    with pytest.raises(TypeError):
        u.get_sqrt_ratio_at_tick(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        u.get_tick_at_sqrt_ratio(float(u.Q96))  # type: ignore[arg-type]


@given(st.integers(u.MIN_TICK, u.MAX_TICK - 1))
@settings(max_examples=300, deadline=None)
def test_tick_round_trip_and_bracketing(tick: int) -> None:
    sqrt_price = u.get_sqrt_ratio_at_tick(tick)
    assert u.get_tick_at_sqrt_ratio(sqrt_price) == tick
    nxt = u.get_sqrt_ratio_at_tick(tick + 1)
    assert nxt > sqrt_price
    # the greatest tick whose ratio is <= the input, for any price in [ratio(t), ratio(t+1))
    assert u.get_tick_at_sqrt_ratio(nxt - 1) == tick


@given(st.integers(u.MIN_TICK, u.MAX_TICK))
@settings(max_examples=200, deadline=None)
def test_sqrt_ratio_matches_the_real_formula(tick: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 80
        exact = (Decimal("1.0001") ** tick).sqrt() * (2 ** 96)
        error = abs(Decimal(u.get_sqrt_ratio_at_tick(tick)) - exact)
        # Q64.96 rounded up: within one unit, plus the Q128.128 product chain's truncation
        assert error <= 1 + exact * Decimal("1e-18")


# ---------------------------------------------------------------------------- FullMath

def test_mul_div_known_values() -> None:
    q128 = u.Q128
    assert u.mul_div(q128, 50 * q128 // 100, 150 * q128 // 100) == q128 // 3
    assert u.mul_div(U256, U256, U256) == U256  # full 512-bit intermediate
    assert u.mul_div_rounding_up(q128, 50 * q128 // 100, 150 * q128 // 100) == q128 // 3 + 1
    assert u.mul_div_rounding_up(10, 10, 5) == 20


def test_mul_div_reverts() -> None:
    with pytest.raises(ValueError):
        u.mul_div(1, 1, 0)
    with pytest.raises(ValueError):
        u.mul_div(U256, U256, 1)  # result overflows uint256
    with pytest.raises(ValueError):
        # mulDivRoundingUp: result == max and a remainder -> require(result < max) fails
        u.mul_div_rounding_up(535006138814359, 432862656469423142931042426214547535783388063929571229938474969, 2)
    with pytest.raises(ValueError):
        u.mul_div(-1, 1, 1)  # not a uint256


@given(st.integers(0, U256), st.integers(0, U256), st.integers(1, U256))
@settings(max_examples=300, deadline=None)
def test_mul_div_is_floor_and_ceil(a: int, b: int, d: int) -> None:
    exact = Fraction(a * b, d)
    if exact > U256:
        with pytest.raises(ValueError):
            u.mul_div(a, b, d)
        return
    assert u.mul_div(a, b, d) == math.floor(exact)
    if math.ceil(exact) <= U256:
        assert u.mul_div_rounding_up(a, b, d) == math.ceil(exact)


# ---------------------------------------------------------------------------- SqrtPriceMath

sqrt_prices = st.integers(u.MIN_SQRT_RATIO, u.MAX_SQRT_RATIO)
liquidities = st.integers(0, U128)


@given(sqrt_prices, sqrt_prices, liquidities)
@settings(max_examples=300, deadline=None)
def test_amount_deltas_round_up_by_at_most_one(a: int, b: int, liquidity: int) -> None:
    for function in (u.get_amount0_delta, u.get_amount1_delta):
        try:
            down = function(a, b, liquidity, False)
            up = function(a, b, liquidity, True)
        except ValueError:  # overflow of the uint256 result, as the contract reverts
            continue
        assert up - down in (0, 1)
        assert function(b, a, liquidity, True) == up  # argument order does not matter


def test_amount_deltas_exact_formula() -> None:
    a, b, liquidity = u.get_sqrt_ratio_at_tick(-600), u.get_sqrt_ratio_at_tick(600), 10 ** 18
    exact0 = Fraction(liquidity * u.Q96 * (b - a), a * b)
    exact1 = Fraction(liquidity * (b - a), u.Q96)
    assert u.get_amount0_delta(a, b, liquidity, False) == math.floor(exact0)
    assert u.get_amount0_delta(a, b, liquidity, True) == math.ceil(exact0)
    assert u.get_amount1_delta(a, b, liquidity, False) == math.floor(exact1)
    assert u.get_amount1_delta(a, b, liquidity, True) == math.ceil(exact1)
    # signed overloads: adding liquidity rounds up (paid in), removing rounds down (paid out)
    assert u.get_amount0_delta_signed(a, b, liquidity) == math.ceil(exact0)
    assert u.get_amount0_delta_signed(a, b, -liquidity) == -math.floor(exact0)
    assert u.get_amount1_delta_signed(a, b, -liquidity) == -math.floor(exact1)


def test_amount0_delta_requires_positive_price() -> None:
    with pytest.raises(ValueError):
        u.get_amount0_delta(0, u.Q96, 1, False)


# ---------------------------------------------------------------------------- LiquidityAmounts

@given(st.integers(-50_000, 50_000), st.integers(1, 20_000), st.integers(-30_000, 30_000),
       st.integers(1, 10 ** 24), st.integers(1, 10 ** 24))
@settings(max_examples=200, deadline=None)
def test_liquidity_round_trip_never_needs_more_than_given(lower: int, width: int, move: int,
                                                         amount0: int, amount1: int) -> None:
    sqrt_a = u.get_sqrt_ratio_at_tick(lower)
    sqrt_b = u.get_sqrt_ratio_at_tick(lower + width)
    sqrt_p = u.get_sqrt_ratio_at_tick(lower + move)
    liquidity = u.get_liquidity_for_amounts(sqrt_p, sqrt_a, sqrt_b, amount0, amount1)
    got0, got1 = u.get_amounts_for_liquidity(sqrt_p, sqrt_a, sqrt_b, liquidity)
    assert got0 <= amount0 and got1 <= amount1


def test_amounts_outside_the_range_are_one_token() -> None:
    sqrt_a, sqrt_b = u.get_sqrt_ratio_at_tick(-100), u.get_sqrt_ratio_at_tick(100)
    below = u.get_amounts_for_liquidity(u.get_sqrt_ratio_at_tick(-500), sqrt_a, sqrt_b, 10 ** 20)
    above = u.get_amounts_for_liquidity(u.get_sqrt_ratio_at_tick(500), sqrt_a, sqrt_b, 10 ** 20)
    assert below[0] > 0 and below[1] == 0
    assert above[0] == 0 and above[1] > 0
    assert u.get_amounts_for_liquidity(sqrt_a, sqrt_a, sqrt_b, 10 ** 20) == (below[0], 0)
    assert u.get_amounts_for_liquidity(sqrt_b, sqrt_a, sqrt_b, 10 ** 20) == (0, above[1])


def test_liquidity_overflow_reverts() -> None:
    with pytest.raises(ValueError):
        u.get_liquidity_for_amount1(u.get_sqrt_ratio_at_tick(0), u.get_sqrt_ratio_at_tick(1),
                                    U128 << 40)


# ---------------------------------------------------------------------------- fees

def test_fee_growth_inside_wraps_modulo_2_256() -> None:
    # lower tick's outside above the global (it was initialised when the global had wrapped)
    inside = u.get_fee_growth_inside(-2, 2, 0, 15, 15, (U256 - 3, U256 - 2), (3, 5))
    assert inside == (16, 13)
    # current tick below the range: inside = lower.outside - upper.outside (mod 2**256)
    inside = u.get_fee_growth_inside(-2, 2, -5, 100, 100, (10, 20), (30, 10))
    assert inside == ((10 - 30) % (1 << 256), 10)


def test_fees_owed_wrapping_and_uint128_truncation() -> None:
    q128 = u.Q128
    # inside grew through 2**256: the subtraction wraps and the owed amount is still right
    assert u.fees_owed(5 * q128 - 1 + 0, U256 - q128 + 1, 7) == u.mul_div(
        (5 * q128 - 1 - (U256 - q128 + 1)) % (1 << 256), 7, q128)
    assert u.fees_owed(3 * q128, q128, 10) == 20
    # more than 2**128 owed: uint128(...) keeps the low 128 bits, as Position.update does
    huge = u.fees_owed((1 << 255), 0, U128)
    assert huge == ((1 << 255) * U128 // q128) % (1 << 128)
    assert huge != (1 << 255) * U128 // q128


def test_lp_fees_accrue_and_wrap_tokens_owed() -> None:
    q128 = u.Q128
    lp = make_lp(tokens_owed0=U128, tokens_owed1=7, fee_growth_inside_last0=0,
                 fee_growth_inside_last1=q128, fee_growth_global0=2 * q128,
                 fee_growth_global1=4 * q128, tick_current=0)
    lp = LPPosition(**{**lp.__dict__, "tick_lower": -60, "tick_upper": 60, "liquidity": 3})
    fees0, fees1 = u.lp_fees(lp)
    # inside = global (both ticks uninitialised, current tick inside the range)
    assert fees0 == (U128 + 2 * 3) % (1 << 128)  # tokensOwed0 += ... wraps at 2**128
    assert fees1 == 7 + 3 * 3


def test_lp_fees_need_pairs_and_a_tick() -> None:
    with pytest.raises(ValueError, match="together"):
        u.lp_fees(make_lp(fee_growth_inside_last0=1, tick_current=0))
    with pytest.raises(ValueError, match="tick"):
        u.lp_fees(make_lp(fee_growth_inside_last0=1, fee_growth_global0=5))
    lp = make_lp(fee_growth_inside_last0=0, fee_growth_global0=u.Q128, tokens_owed1=11)
    sqrt_price = u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6)
    # without tick_current the tick of the valuation price is used (inside the range here)
    amount0, amount1, fees0, fees1 = u.lp_amounts(lp, sqrt_price)
    assert fees0 == lp.liquidity and fees1 == 11


# ---------------------------------------------------------------------------- prices

def test_sqrt_price_from_prices_is_the_exact_formula() -> None:
    got = u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6)
    assert got == math.isqrt((3000 * 10 ** 6 * 2 ** 192) // (1 * 10 ** 18))
    assert got == 4339505179874779489431521
    assert u.sqrt_price_x96_from_prices(1, 1, 6, 6) == u.Q96
    assert u.sqrt_price_x96_from_prices(4, 1, 0, 0) == 2 * u.Q96


def test_sqrt_price_reads_floats_through_their_repr() -> None:
    # 2995.12 typed as a float means exactly 2995.12, not the double's binary expansion
    expected = math.isqrt((299512 * 10 ** 6 * 2 ** 192) // (100 * 10 ** 18))
    for p0 in (2995.12, "2995.12", Decimal("2995.12"), Fraction(299512, 100)):
        assert u.sqrt_price_x96_from_prices(p0, 1, 18, 6) == expected
    binary = Fraction(2995.12)  # the double itself differs from 2995.12
    assert binary != Fraction("2995.12")
    assert u.sqrt_price_x96_from_prices(0.1, 0.3, 6, 6) == u.sqrt_price_x96_from_prices(
        "0.1", "0.3", 6, 6)


@pytest.mark.parametrize("bad", [0, -1.0, "nan", float("inf"), "abc", True])
def test_sqrt_price_rejects_bad_prices(bad) -> None:
    with pytest.raises((ValueError, TypeError, ArithmeticError)):
        u.sqrt_price_x96_from_prices(bad, 1.0, 18, 6)


# ---------------------------------------------------------------------------- valuation

def analytic_value(lp: LPPosition, p0: float, p1: float) -> float:
    """Continuous Uniswap v3 formula in floats (the exact integer math rounds down)."""
    price = p0 / p1 * 10 ** lp.decimals1 / 10 ** lp.decimals0
    sp, sa, sb = math.sqrt(price), 1.0001 ** (lp.tick_lower / 2), 1.0001 ** (lp.tick_upper / 2)
    sp = min(max(sp, sa), sb)
    amount0 = lp.liquidity * (sb - sp) / (sp * sb)
    amount1 = lp.liquidity * (sp - sa)
    return amount0 / 10 ** lp.decimals0 * p0 + amount1 / 10 ** lp.decimals1 * p1


def test_lp_amounts_and_value_at_the_oracle_price() -> None:
    lp = make_lp()
    sqrt_price = u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6)
    amount0, amount1, fees0, fees1 = u.lp_amounts(lp, sqrt_price)
    assert amount0 > 0 and amount1 > 0 and fees0 == fees1 == 0
    value = u.lp_value(lp, 3000.0, 1.0)
    assert value == pytest.approx(amount0 / 1e18 * 3000.0 + amount1 / 1e6)
    assert value == pytest.approx(analytic_value(lp, 3000.0, 1.0), rel=1e-9)


@given(st.floats(0.05, 50.0))
@settings(max_examples=100, deadline=None)
def test_lp_values_match_the_continuous_formula(move: float) -> None:
    lp = make_lp()
    got = u.lp_values(lp, np.array([3000.0 * move]), np.array([1.0]))[0]
    assert got == pytest.approx(analytic_value(lp, 3000.0 * move, 1.0), rel=1e-9, abs=1e-6)


def test_lp_values_shape_and_range_behaviour() -> None:
    lp = make_lp()
    prices = 3000.0 * (1.0 + CRYPTO_GRID)
    values = u.lp_values(lp, prices, 1.0)
    assert values.shape == prices.shape and values.dtype == np.float64
    assert np.all(np.diff(values) > 0)  # long the volatile token
    grid2 = u.lp_values(lp, prices.reshape(2, 5), np.ones((2, 5)))
    assert grid2.shape == (2, 5) and np.array_equal(grid2.ravel(), values)
    # far below the range: all token0 (ETH), value linear in the ETH price
    low = u.lp_values(lp, [300.0, 150.0], 1.0)
    assert low[1] == pytest.approx(low[0] / 2)
    # far above: all token1 (USDC), capped upside
    high = u.lp_values(lp, [30000.0, 60000.0], 1.0)
    assert high[0] == pytest.approx(high[1])
    sqrt_low = u.sqrt_price_x96_from_prices(300.0, 1.0, 18, 6)
    assert u.lp_amounts(lp, sqrt_low)[1] == 0
    sqrt_high = u.sqrt_price_x96_from_prices(30000.0, 1.0, 18, 6)
    assert u.lp_amounts(lp, sqrt_high)[0] == 0


def test_impermanent_loss_against_holding() -> None:
    lp = make_lp(width=20000)
    sqrt_price = u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6)
    amount0, amount1, _, _ = u.lp_amounts(lp, sqrt_price)
    for move in CRYPTO_GRID:
        hold = amount0 / 1e18 * 3000.0 * (1 + move) + amount1 / 1e6
        assert float(u.lp_values(lp, 3000.0 * (1 + move), 1.0)) < hold


def test_fees_are_fixed_tokens_valued_at_each_point() -> None:
    lp = make_lp(tokens_owed0=10 ** 17, tokens_owed1=5 * 10 ** 6)
    bare = make_lp()
    prices = 3000.0 * (1.0 + CRYPTO_GRID)
    diff = u.lp_values(lp, prices, 1.0) - u.lp_values(bare, prices, 1.0)
    np.testing.assert_allclose(diff, 0.1 * prices + 5.0)


def test_explicit_sqrt_price_override() -> None:
    lp = make_lp()
    on_chain = u.sqrt_price_x96_from_prices(2900.0, 1.0, 18, 6)  # the pool lags the oracle
    pinned = LPPosition(**{**lp.__dict__, "sqrt_price_x96": on_chain})
    amounts = u.lp_amounts(lp, on_chain)
    expected = amounts[0] / 1e18 * 3000.0 + amounts[1] / 1e6
    assert u.lp_value(pinned, 3000.0, 1.0) == pytest.approx(expected)
    # without base prices every point keeps the pinned pool price (fixed token amounts)
    pts = u.lp_values(pinned, [1500.0, 3000.0], 1.0)
    assert pts[0] == pytest.approx(amounts[0] / 1e18 * 1500.0 + amounts[1] / 1e6)
    # with base prices the pinned price moves with the prices: halving ETH halves the ratio
    moved = u.lp_values(pinned, [1500.0], 1.0, base_prices=(3000.0, 1.0))[0]
    sqrt_moved = math.isqrt(on_chain * on_chain // 2)
    a0, a1, _, _ = u.lp_amounts(lp, sqrt_moved)
    assert moved == pytest.approx(a0 / 1e18 * 1500.0 + a1 / 1e6)


def test_lp_range_errors() -> None:
    lp = LPPosition("ETH", "USDC", 18, 6, 10 ** 12, 60, 60)
    with pytest.raises(ValueError, match="TLU"):
        u.lp_values(lp, 3000.0, 1.0)
    lp = LPPosition("ETH", "USDC", 18, 6, 10 ** 12, -900000, 60)
    with pytest.raises(ValueError, match="^T$"):
        u.lp_values(lp, 3000.0, 1.0)
    with pytest.raises(ValueError):
        u.lp_values(make_lp(), -1.0, 1.0)


# ---------------------------------------------------------------------------- risk arrays

def test_volatile_stable_nets_with_the_volatile_token() -> None:
    lp = make_lp()
    position = lp_position(lp)
    group, cls, pnl = u.lp_scenario_pnl(portfolio_of(position), position, PARAMS)
    assert (group, cls) == ("ETH", "crypto")
    expected = u.lp_values(lp, 3000.0 * (1 + CRYPTO_GRID), 1.0) - u.lp_value(lp, 3000.0, 1.0)
    np.testing.assert_allclose(pnl, expected)
    assert pnl.shape == (10,) and pnl[0] < 0 < pnl[-1]


def test_stable_token0_and_class_group_label() -> None:
    # USDC as token0 (as on mainnet): the volatile token is token1, its class group is used
    underlyings = {**UNDERLYINGS, "WETH": token("WETH", 3000.0, class_group="ETH")}
    sqrt_price = u.sqrt_price_x96_from_prices(1.0, 3000.0, 6, 18)
    tick = u.get_tick_at_sqrt_ratio(sqrt_price)
    lp = LPPosition("USDC", "WETH", 6, 18, 10 ** 15, tick - 3000, tick + 3000)
    position = lp_position(lp)
    pf = Portfolio(date(2026, 11, 24), underlyings, (position,))
    group, cls, pnl = u.lp_scenario_pnl(pf, position, PARAMS)
    assert (group, cls) == ("ETH", "crypto")
    assert pnl[0] < 0 < pnl[-1]  # long WETH through the LP whatever its token order


def test_concentrated_upside_is_capped() -> None:
    lp = make_lp(width=600)
    position = lp_position(lp)
    _, _, pnl = u.lp_scenario_pnl(portfolio_of(position), position, PARAMS)
    # above +18 % the narrow range is all USDC: the same value at every higher point
    assert pnl[-1] == pytest.approx(pnl[-2]) == pytest.approx(pnl[-3])
    assert -pnl[0] > 5 * pnl[-1]


def test_volatile_pair_takes_the_worst_of_each_and_both() -> None:
    lp = make_lp("ETH", "BTC", 18, 8, amount0=10 ** 19, amount1=5 * 10 ** 7)
    position = lp_position(lp)
    group, cls, pnl = u.lp_scenario_pnl(portfolio_of(position), position, PARAMS)
    assert (group, cls) == ("LP:ETH/BTC", "crypto")
    base = u.lp_value(lp, 3000.0, 60000.0)
    f = 1 + CRYPTO_GRID
    eth = u.lp_values(lp, 3000.0 * f, 60000.0) - base
    btc = u.lp_values(lp, 3000.0, 60000.0 * f) - base
    both = u.lp_values(lp, 3000.0 * f, 60000.0 * f) - base
    np.testing.assert_allclose(pnl, np.minimum(np.minimum(eth, btc), both))
    assert np.any(pnl < both)  # a relative move is worse than both falling together somewhere


def test_stable_pair_uses_the_depeg_grid() -> None:
    lp = make_lp("USDC", "DAI", 6, 18, width=50, spacing=1, amount0=10 ** 12,
                 amount1=10 ** 24)
    position = lp_position(lp)
    group, cls, pnl = u.lp_scenario_pnl(portfolio_of(position), position, PARAMS)
    assert (group, cls) == ("LP:USDC/DAI", "stablecoin")
    assert pnl.shape == DEPEG_GRID.shape
    value = u.lp_value(lp, 1.0, 1.0)
    # both depegging 20 % together loses 20 % of the value
    assert pnl[0] == pytest.approx(-0.2 * value, rel=1e-9)


def test_grid_comes_from_the_parameter_set_and_can_be_passed() -> None:
    lp = make_lp()
    position = lp_position(lp)
    pf = portfolio_of(position)
    narrow = PARAMS.with_overrides({"portfolio_margin": {"points": {"crypto": [-0.1, 0.1]}}})
    _, _, pnl = u.lp_scenario_pnl(pf, position, narrow)
    assert pnl.shape == (2,)
    _, _, pnl3 = u.lp_scenario_pnl(pf, position, PARAMS, points=[-0.25, 0.0, 0.25])
    assert pnl3.shape == (3,) and pnl3[1] == pytest.approx(0.0, abs=1e-9)


def test_lp_scenario_pnl_names_the_position_on_bad_input() -> None:
    position = lp_position(LPPosition("ETH", "USDC", 18, 6, 10 ** 12, 60, 0), index=3)
    with pytest.raises(EngineInputError) as info:
        u.lp_scenario_pnl(portfolio_of(position), position, PARAMS)
    assert info.value.field == "positions[3]"


def test_lp_valuation_throughput() -> None:
    """Benchmark: LP valuations per second (each at its own exact sqrt price)."""
    lp = make_lp(fee_growth_inside_last0=0, fee_growth_inside_last1=0,
                 fee_growth_global0=u.Q128, fee_growth_global1=u.Q128, tick_current=0)
    prices = 3000.0 * (1.0 + np.linspace(-0.66, 1.0, 1000))
    start = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        u.lp_values(lp, prices, 1.0)
    rate = rounds * prices.size / (time.perf_counter() - start)
    print(f"\nLP valuations per second: {rate:,.0f}")
    assert rate > 5_000  # a 10-point risk array in well under 2 ms
