"""Uniswap v3 position math: exact integer ports of the protocol's libraries, and LP valuation.

Every X96 / X128 quantity is a Python ``int`` (arbitrary precision), never a float; the ports
reproduce the Solidity results bit for bit, including the reverts (raised as ``ValueError``
with the contract's revert string where it has one) and the modulo-2**256 wrapping of the fee
growth accumulators. Sources (Uniswap v3, solidity 0.7.6, no checked arithmetic):

- v3-core ``libraries/TickMath.sol``        getSqrtRatioAtTick, getTickAtSqrtRatio
- v3-core ``libraries/FullMath.sol``        mulDiv, mulDivRoundingUp
- v3-core ``libraries/UnsafeMath.sol``      divRoundingUp
- v3-core ``libraries/SqrtPriceMath.sol``   getAmount0Delta, getAmount1Delta
- v3-core ``libraries/Tick.sol``            getFeeGrowthInside
- v3-core ``libraries/Position.sol``        update (fees owed, uint128 truncation)
- v3-periphery ``libraries/LiquidityAmounts.sol``

Valuation (METHODOLOGY.md section 6): a position is valued at a sqrt price derived exactly from
the oracle prices of its two tokens (CALCULATOR.md), never at a pool's own spot price; outside
its range it is all token0 (below) or all token1 (above). ``lp_scenario_pnl`` gives its risk
array for portfolio margin: the volatile token of a volatile/stable pair is shocked (so the
position nets with that token's spot and perpetuals); a volatile pair is shocked token by token
and both together, worst per point; a stable pair on the depeg grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from math import isqrt

import numpy as np

from ..errors import EngineInputError
from ..parameters import ParameterSet
from ..portfolio import STABLECOIN, LPPosition, Portfolio, Position, Underlying

# --------------------------------------------------------------------------------------------
# Constants (v3-core FixedPoint96 / FixedPoint128 / TickMath)
# --------------------------------------------------------------------------------------------

Q96 = 1 << 96
Q128 = 1 << 128
UINT128_MOD = 1 << 128
UINT256_MOD = 1 << 256
MAX_UINT256 = UINT256_MOD - 1
MAX_UINT160 = (1 << 160) - 1
MAX_UINT128 = UINT128_MOD - 1

MIN_TICK = -887272
MAX_TICK = -MIN_TICK
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342

CRYPTO = "crypto"

# TickMath.getSqrtRatioAtTick: 1/sqrt(1.0001)^(2^i) as Q128.128, for bits 1 .. 19 of |tick|.
_RATIO_BIT0 = 0xFFFCB933BD6FAD37AA2D162D1A594001
_RATIO_FACTORS = (
    (0x2, 0xFFF97272373D413259A46990580E213A),
    (0x4, 0xFFF2E50F5F656932EF12357CF3C7FDCC),
    (0x8, 0xFFE5CACA7E10E4E61C3624EAA0941CD0),
    (0x10, 0xFFCB9843D60F6159C9DB58835C926644),
    (0x20, 0xFF973B41FA98C081472E6896DFB254C0),
    (0x40, 0xFF2EA16466C96A3843EC78B326B52861),
    (0x80, 0xFE5DEE046A99A2A811C461F1969C3053),
    (0x100, 0xFCBE86C7900A88AEDCFFC83B479AA3A4),
    (0x200, 0xF987A7253AC413176F2B074CF7815E54),
    (0x400, 0xF3392B0822B70005940C7A398E4B70F3),
    (0x800, 0xE7159475A2C29B7443B29C7FA6E889D9),
    (0x1000, 0xD097F3BDFD2022B8845AD8F792AA5825),
    (0x2000, 0xA9F746462D870FDF8A65DC1F90E061E5),
    (0x4000, 0x70D869A156D2A1B890BB3DF62BAF32F7),
    (0x8000, 0x31BE135F97D08FD981231505542FCFA6),
    (0x10000, 0x9AA508B5B7A84E1C677DE54F3E99BC9),
    (0x20000, 0x5D6AF8DEDB81196699C329225EE604),
    (0x40000, 0x2216E584F5FA1EA926041BEDFE98),
    (0x80000, 0x48A170391F7DC42444E8FA2),
)


def _uint(value: int, bits: int, name: str) -> int:
    """Solidity's type bound on an argument (Python ints are unbounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value >> bits:
        raise ValueError(f"{name}={value} does not fit uint{bits}")
    return value


# --------------------------------------------------------------------------------------------
# TickMath
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=65536)
def get_sqrt_ratio_at_tick(tick: int) -> int:
    """sqrt(1.0001**tick) * 2**96 as Q64.96, rounded up (TickMath.getSqrtRatioAtTick).

    Raises ``ValueError('T')`` when |tick| > MAX_TICK, as the contract reverts with 'T'.
    """
    if isinstance(tick, bool) or not isinstance(tick, int):
        raise TypeError("tick must be an int")
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise ValueError("T")
    ratio = _RATIO_BIT0 if abs_tick & 0x1 else 0x100000000000000000000000000000000
    for bit, factor in _RATIO_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = MAX_UINT256 // ratio
    # Q128.128 -> Q64.96, rounding up so that getTickAtSqrtRatio of the result is consistent.
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """The greatest tick whose sqrt ratio is <= the input (TickMath.getTickAtSqrtRatio).

    Raises ``ValueError('R')`` outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO), as the contract does.
    The assembly's most-significant-bit search and 14-step log2 refinement are reproduced
    step by step (Python's ``>>`` on negative ints is the arithmetic shift of ``sar``).
    """
    _uint(sqrt_price_x96, 160, "sqrt_price_x96")
    if not (MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO):
        raise ValueError("R")
    ratio = sqrt_price_x96 << 32
    msb = ratio.bit_length() - 1  # the assembly's binary search computes exactly this
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141  # 128.128 number
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_hi = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_hi:
        return tick_low
    return tick_hi if get_sqrt_ratio_at_tick(tick_hi) <= sqrt_price_x96 else tick_low


# --------------------------------------------------------------------------------------------
# FullMath / UnsafeMath
# --------------------------------------------------------------------------------------------

def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a * b / denominator) with a 512-bit intermediate (FullMath.mulDiv).

    Reverts (``ValueError``) when the denominator is 0 or the result overflows uint256.
    """
    _uint(a, 256, "a")
    _uint(b, 256, "b")
    _uint(denominator, 256, "denominator")
    if denominator == 0:
        raise ValueError("mulDiv: denominator is zero")
    result = (a * b) // denominator
    if result > MAX_UINT256:
        raise ValueError("mulDiv: result overflows uint256")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a * b / denominator) (FullMath.mulDivRoundingUp); reverts like mulDiv."""
    result = mul_div(a, b, denominator)
    if (a * b) % denominator > 0:
        if result >= MAX_UINT256:  # require(result < type(uint256).max)
            raise ValueError("mulDivRoundingUp: result overflows uint256")
        result += 1
    return result


def div_rounding_up(x: int, y: int) -> int:
    """ceil(x / y) (UnsafeMath.divRoundingUp); the EVM's div returns 0 for y == 0."""
    if y == 0:
        return 0
    return x // y + (1 if x % y else 0)


# --------------------------------------------------------------------------------------------
# SqrtPriceMath
# --------------------------------------------------------------------------------------------

def _ordered(sqrt_a_x96: int, sqrt_b_x96: int) -> tuple[int, int]:
    """A range's two sqrt prices, lower first (the swap every SqrtPriceMath and
    LiquidityAmounts function opens with)."""
    return (sqrt_b_x96, sqrt_a_x96) if sqrt_a_x96 > sqrt_b_x96 else (sqrt_a_x96, sqrt_b_x96)


def _price_range(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int) -> tuple[int, int]:
    """The two sqrt prices checked as uint160 and ordered, the liquidity as uint128: both
    amount deltas start so in SqrtPriceMath."""
    _uint(sqrt_a_x96, 160, "sqrt_a_x96")
    _uint(sqrt_b_x96, 160, "sqrt_b_x96")
    _uint(liquidity, 128, "liquidity")
    return _ordered(sqrt_a_x96, sqrt_b_x96)


def get_amount0_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """liquidity / sqrt(lower) - liquidity / sqrt(upper) (SqrtPriceMath.getAmount0Delta)."""
    sqrt_a_x96, sqrt_b_x96 = _price_range(sqrt_a_x96, sqrt_b_x96, liquidity)
    numerator1 = liquidity << 96
    numerator2 = sqrt_b_x96 - sqrt_a_x96
    if sqrt_a_x96 == 0:  # require(sqrtRatioAX96 > 0)
        raise ValueError("getAmount0Delta: sqrt ratio is zero")
    if round_up:
        return div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b_x96),
                               sqrt_a_x96)
    return mul_div(numerator1, numerator2, sqrt_b_x96) // sqrt_a_x96


def get_amount1_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """liquidity * (sqrt(upper) - sqrt(lower)) (SqrtPriceMath.getAmount1Delta)."""
    sqrt_a_x96, sqrt_b_x96 = _price_range(sqrt_a_x96, sqrt_b_x96, liquidity)
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b_x96 - sqrt_a_x96, Q96)
    return mul_div(liquidity, sqrt_b_x96 - sqrt_a_x96, Q96)


def get_amount0_delta_signed(sqrt_a_x96: int, sqrt_b_x96: int, liquidity_delta: int) -> int:
    """Signed token0 delta for a signed liquidity change (SqrtPriceMath, int128 overload):
    added liquidity rounds up (paid in), removed liquidity rounds down (paid out)."""
    if liquidity_delta < 0:
        return -get_amount0_delta(sqrt_a_x96, sqrt_b_x96, -liquidity_delta, False)
    return get_amount0_delta(sqrt_a_x96, sqrt_b_x96, liquidity_delta, True)


def get_amount1_delta_signed(sqrt_a_x96: int, sqrt_b_x96: int, liquidity_delta: int) -> int:
    """Signed token1 delta for a signed liquidity change (SqrtPriceMath, int128 overload)."""
    if liquidity_delta < 0:
        return -get_amount1_delta(sqrt_a_x96, sqrt_b_x96, -liquidity_delta, False)
    return get_amount1_delta(sqrt_a_x96, sqrt_b_x96, liquidity_delta, True)


# --------------------------------------------------------------------------------------------
# LiquidityAmounts (v3-periphery)
# --------------------------------------------------------------------------------------------

def _to_uint128(x: int) -> int:
    """LiquidityAmounts.toUint128: require((y = uint128(x)) == x)."""
    if x > MAX_UINT128:
        raise ValueError("toUint128: liquidity overflows uint128")
    return x


def get_liquidity_for_amount0(sqrt_a_x96: int, sqrt_b_x96: int, amount0: int) -> int:
    """amount0 * sqrt(a) * sqrt(b) / (sqrt(b) - sqrt(a)) (LiquidityAmounts)."""
    sqrt_a_x96, sqrt_b_x96 = _ordered(sqrt_a_x96, sqrt_b_x96)
    intermediate = mul_div(sqrt_a_x96, sqrt_b_x96, Q96)
    return _to_uint128(mul_div(amount0, intermediate, sqrt_b_x96 - sqrt_a_x96))


def get_liquidity_for_amount1(sqrt_a_x96: int, sqrt_b_x96: int, amount1: int) -> int:
    """amount1 / (sqrt(b) - sqrt(a)) (LiquidityAmounts)."""
    sqrt_a_x96, sqrt_b_x96 = _ordered(sqrt_a_x96, sqrt_b_x96)
    return _to_uint128(mul_div(amount1, Q96, sqrt_b_x96 - sqrt_a_x96))


def get_liquidity_for_amounts(sqrt_price_x96: int, sqrt_a_x96: int, sqrt_b_x96: int,
                              amount0: int, amount1: int) -> int:
    """The most liquidity the amounts buy at the price and range (LiquidityAmounts).

    ``<=`` at the lower bound as in v3-periphery's current source (an older revision's ``<``
    reverts there on a zero-width token1 interval; the reference vectors pin ``<=``).
    """
    sqrt_a_x96, sqrt_b_x96 = _ordered(sqrt_a_x96, sqrt_b_x96)
    if sqrt_price_x96 <= sqrt_a_x96:
        return get_liquidity_for_amount0(sqrt_a_x96, sqrt_b_x96, amount0)
    if sqrt_price_x96 < sqrt_b_x96:
        liquidity0 = get_liquidity_for_amount0(sqrt_price_x96, sqrt_b_x96, amount0)
        liquidity1 = get_liquidity_for_amount1(sqrt_a_x96, sqrt_price_x96, amount1)
        return liquidity0 if liquidity0 < liquidity1 else liquidity1
    return get_liquidity_for_amount1(sqrt_a_x96, sqrt_b_x96, amount1)


def get_amount0_for_liquidity(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int) -> int:
    """Token0 for liquidity over [a, b], rounded down (LiquidityAmounts)."""
    sqrt_a_x96, sqrt_b_x96 = _ordered(sqrt_a_x96, sqrt_b_x96)
    return mul_div(liquidity << 96, sqrt_b_x96 - sqrt_a_x96, sqrt_b_x96) // sqrt_a_x96


def get_amount1_for_liquidity(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int) -> int:
    """Token1 for liquidity over [a, b], rounded down (LiquidityAmounts)."""
    sqrt_a_x96, sqrt_b_x96 = _ordered(sqrt_a_x96, sqrt_b_x96)
    return mul_div(liquidity, sqrt_b_x96 - sqrt_a_x96, Q96)


def get_amounts_for_liquidity(sqrt_price_x96: int, sqrt_a_x96: int, sqrt_b_x96: int,
                              liquidity: int) -> tuple[int, int]:
    """(amount0, amount1) of liquidity at the price (LiquidityAmounts.getAmountsForLiquidity):
    all token0 at or below the range, all token1 at or above it."""
    _uint(liquidity, 128, "liquidity")
    sqrt_a_x96, sqrt_b_x96 = _ordered(sqrt_a_x96, sqrt_b_x96)
    if sqrt_price_x96 <= sqrt_a_x96:
        return get_amount0_for_liquidity(sqrt_a_x96, sqrt_b_x96, liquidity), 0
    if sqrt_price_x96 < sqrt_b_x96:
        return (get_amount0_for_liquidity(sqrt_price_x96, sqrt_b_x96, liquidity),
                get_amount1_for_liquidity(sqrt_a_x96, sqrt_price_x96, liquidity))
    return 0, get_amount1_for_liquidity(sqrt_a_x96, sqrt_b_x96, liquidity)


# --------------------------------------------------------------------------------------------
# Tick.getFeeGrowthInside and Position.update (fees owed)
# --------------------------------------------------------------------------------------------

def get_fee_growth_inside(tick_lower: int, tick_upper: int, tick_current: int,
                          fee_growth_global0_x128: int, fee_growth_global1_x128: int,
                          lower_outside: tuple[int, int] | None,
                          upper_outside: tuple[int, int] | None) -> tuple[int, int]:
    """Fee growth per unit of liquidity inside [tick_lower, tick_upper) (Tick.getFeeGrowthInside).

    ``lower_outside`` / ``upper_outside`` are the ticks' (feeGrowthOutside0X128,
    feeGrowthOutside1X128); None is a tick that was never initialised (storage reads 0). Every
    subtraction wraps modulo 2**256 exactly as solidity 0.7's unchecked uint256 arithmetic.
    """
    g0 = _uint(fee_growth_global0_x128, 256, "fee_growth_global0")
    g1 = _uint(fee_growth_global1_x128, 256, "fee_growth_global1")
    lo0, lo1 = lower_outside if lower_outside is not None else (0, 0)
    up0, up1 = upper_outside if upper_outside is not None else (0, 0)
    for name, value in (("lower_outside0", lo0), ("lower_outside1", lo1),
                        ("upper_outside0", up0), ("upper_outside1", up1)):
        _uint(value, 256, name)
    # fee growth below the range
    if tick_current >= tick_lower:
        below0, below1 = lo0, lo1
    else:
        below0, below1 = (g0 - lo0) % UINT256_MOD, (g1 - lo1) % UINT256_MOD
    # fee growth above the range
    if tick_current < tick_upper:
        above0, above1 = up0, up1
    else:
        above0, above1 = (g0 - up0) % UINT256_MOD, (g1 - up1) % UINT256_MOD
    return (g0 - below0 - above0) % UINT256_MOD, (g1 - below1 - above1) % UINT256_MOD


def fees_owed(fee_growth_inside_x128: int, fee_growth_inside_last_x128: int,
              liquidity: int) -> int:
    """Fees accrued since the last checkpoint (Position.update):
    ``uint128(FullMath.mulDiv(feeGrowthInside - feeGrowthInsideLast, liquidity, Q128))``,
    the subtraction wrapping modulo 2**256 and the cast truncating to 128 bits."""
    _uint(fee_growth_inside_x128, 256, "fee_growth_inside")
    _uint(fee_growth_inside_last_x128, 256, "fee_growth_inside_last")
    _uint(liquidity, 128, "liquidity")
    delta = (fee_growth_inside_x128 - fee_growth_inside_last_x128) % UINT256_MOD
    return mul_div(delta, liquidity, Q128) % UINT128_MOD


def _accrual_fields(lp: LPPosition, token: int) -> tuple[int | None, int | None]:
    if token == 0:
        return lp.fee_growth_inside_last0, lp.fee_growth_global0
    return lp.fee_growth_inside_last1, lp.fee_growth_global1


def has_fee_accrual(lp: LPPosition) -> bool:
    """Whether the position carries fee-growth state to accrue fees from."""
    return any(v is not None for v in (
        lp.fee_growth_inside_last0, lp.fee_growth_inside_last1, lp.fee_growth_global0,
        lp.fee_growth_global1, lp.fee_growth_outside_lower, lp.fee_growth_outside_upper))


def lp_fees(lp: LPPosition, tick_current: int | None = None) -> tuple[int, int]:
    """Uncollected fees (raw token units): ``tokens_owed`` plus, when the fee-growth fields are
    given, the growth accrued since ``fee_growth_inside_last`` (Position.update, as a poke
    would credit it: ``tokensOwed += uint128(...)`` wrapping at 2**128 as solidity 0.7 does).

    The pool's current tick is ``lp.tick_current``, else ``tick_current`` (the caller derives it
    from the valuation sqrt price). A token accrues when both its ``fee_growth_inside_last`` and
    ``fee_growth_global`` are given; one without the other is an error.
    """
    fees = [_uint(lp.tokens_owed0, 128, "tokens_owed0"),
            _uint(lp.tokens_owed1, 128, "tokens_owed1")]
    if not has_fee_accrual(lp):
        return fees[0], fees[1]
    for token in (0, 1):
        last, glob = _accrual_fields(lp, token)
        if (last is None) != (glob is None):
            raise ValueError(f"fee_growth_inside_last{token} and fee_growth_global{token} "
                             "must be given together")
    tick = lp.tick_current if lp.tick_current is not None else tick_current
    if tick is None:
        raise ValueError("fee growth accrual needs the pool's current tick")
    inside = get_fee_growth_inside(
        lp.tick_lower, lp.tick_upper, tick,
        lp.fee_growth_global0 if lp.fee_growth_global0 is not None else 0,
        lp.fee_growth_global1 if lp.fee_growth_global1 is not None else 0,
        lp.fee_growth_outside_lower, lp.fee_growth_outside_upper)
    for token in (0, 1):
        last, glob = _accrual_fields(lp, token)
        if last is not None and glob is not None:
            fees[token] = (fees[token] + fees_owed(inside[token], last, lp.liquidity)) % UINT128_MOD
    return fees[0], fees[1]


# --------------------------------------------------------------------------------------------
# Oracle prices -> sqrt price (CALCULATOR.md)
# --------------------------------------------------------------------------------------------

PriceLike = float | int | Decimal | str | Fraction


def exact_ratio(price: PriceLike) -> tuple[int, int]:
    """A decimal price as an exact (numerator, denominator) pair.

    Floats are read through their shortest repr string (``0.1`` is 1/10, not the binary
    expansion of the double), so a price typed as ``2995.12`` means exactly 2995.12.
    """
    if isinstance(price, bool):
        raise TypeError("a price cannot be a bool")
    if type(price) is float or isinstance(price, np.floating):  # fast path, hot in lp_values
        if not math.isfinite(price) or price <= 0:
            raise ValueError(f"price {price!r} must be positive and finite")
        return Decimal(repr(float(price))).as_integer_ratio()
    if isinstance(price, Fraction):
        value = price
    elif isinstance(price, int):
        value = Fraction(price)
    elif isinstance(price, float | np.floating):
        value = Fraction(Decimal(repr(float(price))))
    elif isinstance(price, Decimal):
        if not price.is_finite():
            raise ValueError(f"price {price} is not finite")
        value = Fraction(price)
    elif isinstance(price, str):
        decimal = Decimal(price.strip())
        if not decimal.is_finite():
            raise ValueError(f"price {price!r} is not finite")
        value = Fraction(decimal)
    else:
        raise TypeError(f"unsupported price type {type(price).__name__}")
    if value <= 0:
        raise ValueError(f"price {price!r} must be positive")
    return value.numerator, value.denominator


def sqrt_price_x96_from_prices(p0: PriceLike, p1: PriceLike, decimals0: int,
                               decimals1: int) -> int:
    """``isqrt(floor(p0 * 10**decimals1 * 2**192 / (p1 * 10**decimals0)))`` exactly.

    ``p0`` and ``p1`` are the USD prices of one whole token0 and token1; the pool price is
    raw token1 per raw token0 (CALCULATOR.md, uniswap_v3_lp). Exact rational arithmetic.
    """
    n0, d0 = exact_ratio(p0)
    n1, d1 = exact_ratio(p1)
    numerator = n0 * d1 * 10 ** decimals1 << 192
    denominator = d0 * n1 * 10 ** decimals0
    return isqrt(numerator // denominator)


def _scaled_sqrt_price(sqrt_price_x96: int, moves: tuple[int, int, int, int]) -> int:
    """``isqrt(floor(sqrt_price_x96**2 * (n0/d0) / (n1/d1)))``: a pinned pool price moved by the
    exact relative price changes n0/d0 of token0 and n1/d1 of token1."""
    n0, d0, n1, d1 = moves
    return isqrt((sqrt_price_x96 * sqrt_price_x96 * n0 * d1) // (d0 * n1))


# --------------------------------------------------------------------------------------------
# Position amounts and USD values
# --------------------------------------------------------------------------------------------

def lp_range(lp: LPPosition) -> tuple[int, int]:
    """The sqrt ratios of the position's ticks (raises ValueError('T') on invalid ticks)."""
    if lp.tick_lower >= lp.tick_upper:  # Pool.checkTicks: require(tickLower < tickUpper, 'TLU')
        raise ValueError("TLU")
    return get_sqrt_ratio_at_tick(lp.tick_lower), get_sqrt_ratio_at_tick(lp.tick_upper)


def fee_tick(sqrt_price_x96: int) -> int:
    """The tick of a sqrt price for the fee-growth comparisons, clamped into TickMath's domain
    (only its order relative to the position's ticks matters there)."""
    clamped = min(max(sqrt_price_x96, MIN_SQRT_RATIO), MAX_SQRT_RATIO - 1)
    return get_tick_at_sqrt_ratio(clamped)


def lp_amounts(lp: LPPosition, sqrt_price_x96: int) -> tuple[int, int, int, int]:
    """(amount0, amount1, fees0, fees1) in raw token units at a sqrt price.

    Amounts are LiquidityAmounts.getAmountsForLiquidity (rounded down, what burning the
    liquidity pays out); fees are ``tokens_owed`` plus the fee-growth accrual when those fields
    are given (the current tick is ``lp.tick_current``, else the tick of ``sqrt_price_x96``).
    """
    _uint(sqrt_price_x96, 160, "sqrt_price_x96")
    sqrt_a, sqrt_b = lp_range(lp)
    amount0, amount1 = get_amounts_for_liquidity(sqrt_price_x96, sqrt_a, sqrt_b, lp.liquidity)
    tick = None
    if has_fee_accrual(lp) and lp.tick_current is None:
        tick = fee_tick(sqrt_price_x96)
    fees0, fees1 = lp_fees(lp, tick)
    return amount0, amount1, fees0, fees1


def lp_sqrt_price(lp: LPPosition, price0: PriceLike, price1: PriceLike) -> int:
    """The sqrt price a position is valued at: the explicit override, else oracle-derived."""
    if lp.sqrt_price_x96 is not None:
        return lp.sqrt_price_x96
    return sqrt_price_x96_from_prices(price0, price1, lp.decimals0, lp.decimals1)


def lp_values(lp: LPPosition, price0: float | np.ndarray | Sequence[float],
              price1: float | np.ndarray | Sequence[float],
              base_prices: tuple[PriceLike, PriceLike] | None = None) -> np.ndarray:
    """USD value of an LP position (liquidity amounts plus fees) at arrays of token prices.

    ``price0`` / ``price1`` are USD prices of one whole token, broadcast together; each point is
    valued at its own exact sqrt price (``sqrt_price_x96_from_prices``). Fees are a fixed
    number of tokens (already earned), valued at each point's prices; their fee-growth accrual
    uses ``lp.tick_current``, else the tick at ``base_prices``, else each point's own tick.

    An explicit ``lp.sqrt_price_x96`` pins the pool price: with ``base_prices`` (the prices the
    override belongs to) each point's sqrt price is the override moved by the points' relative
    price changes (so stress still sees impermanent loss); without them every point uses the
    override as it is (the right thing for a valuation at the current prices only).
    """
    p0, p1 = np.broadcast_arrays(np.asarray(price0, dtype=np.float64),
                                 np.asarray(price1, dtype=np.float64))
    sqrt_a, sqrt_b = lp_range(lp)
    scale0 = 10 ** lp.decimals0
    scale1 = 10 ** lp.decimals1
    liquidity = _uint(lp.liquidity, 128, "liquidity")

    base_sqrt: int | None = lp.sqrt_price_x96
    base_ratios: tuple[int, int, int, int] | None = None
    if base_prices is not None:
        bn0, bd0 = exact_ratio(base_prices[0])
        bn1, bd1 = exact_ratio(base_prices[1])
        base_ratios = (bn0, bd0, bn1, bd1)
        if base_sqrt is None:
            base_sqrt = sqrt_price_x96_from_prices(base_prices[0], base_prices[1],
                                                   lp.decimals0, lp.decimals1)

    accrues = has_fee_accrual(lp) and lp.tick_current is None
    fixed_fees: tuple[int, int] | None = None
    if not accrues:
        fixed_fees = lp_fees(lp)
    elif base_sqrt is not None:
        fixed_fees = lp_fees(lp, fee_tick(base_sqrt))

    flat0 = p0.ravel()
    flat1 = p1.ravel()
    out = np.empty(flat0.shape, dtype=np.float64)
    for i in range(flat0.size):
        x0 = float(flat0[i])
        x1 = float(flat1[i])
        if lp.sqrt_price_x96 is None:
            sqrt_price = sqrt_price_x96_from_prices(x0, x1, lp.decimals0, lp.decimals1)
        elif base_ratios is None:
            sqrt_price = lp.sqrt_price_x96
        else:
            n0, d0 = exact_ratio(x0)
            n1, d1 = exact_ratio(x1)
            bn0, bd0, bn1, bd1 = base_ratios
            # token0 moved by (n0/d0)/(bn0/bd0), token1 by (n1/d1)/(bn1/bd1)
            sqrt_price = _scaled_sqrt_price(lp.sqrt_price_x96,
                                            (n0 * bd0, d0 * bn0, n1 * bd1, d1 * bn1))
        amount0, amount1 = get_amounts_for_liquidity(sqrt_price, sqrt_a, sqrt_b, liquidity)
        fees0, fees1 = fixed_fees if fixed_fees is not None else lp_fees(lp, fee_tick(sqrt_price))
        out[i] = (amount0 + fees0) / scale0 * x0 + (amount1 + fees1) / scale1 * x1
    return out.reshape(p0.shape)


def lp_value(lp: LPPosition, price0: PriceLike, price1: PriceLike) -> float:
    """USD value at the current prices (the override, when given, is the pool price)."""
    return float(lp_values(lp, float(price0), float(price1), base_prices=(price0, price1)))


# --------------------------------------------------------------------------------------------
# Portfolio-margin risk array
# --------------------------------------------------------------------------------------------

def is_stable(underlying: Underlying) -> bool:
    """A token is stable when its product class is ``stablecoin``."""
    return underlying.product_class == STABLECOIN


def lp_class_group(portfolio: Portfolio, lp: LPPosition) -> tuple[str, str, tuple[str, ...]]:
    """(class group, product class, stressed tokens) of an LP position (METHODOLOGY.md s. 6).

    volatile/stable: the volatile token's class group and class, only it is stressed;
    volatile/volatile: ``LP:<token0>/<token1>``, class ``crypto``, both stressed;
    stable/stable: ``LP:<token0>/<token1>``, class ``stablecoin``, both stressed (depeg).
    """
    u0 = portfolio.underlyings[lp.token0]
    u1 = portfolio.underlyings[lp.token1]
    s0, s1 = is_stable(u0), is_stable(u1)
    if s0 != s1:
        volatile = u1 if s0 else u0
        return volatile.class_group, volatile.product_class, (volatile.symbol,)
    label = f"LP:{lp.token0}/{lp.token1}"
    return label, (STABLECOIN if s0 else CRYPTO), (lp.token0, lp.token1)


def stress_families(tokens: Iterable[str]) -> list[tuple[str, ...]]:
    """The token sets moved together: each token alone, then (for two or more) all together."""
    tokens = tuple(dict.fromkeys(tokens))
    families = [(t,) for t in tokens]
    if len(tokens) > 1:
        families.append(tokens)
    return families


def grid_for(params: ParameterSet, product_class: str) -> np.ndarray:
    """The LP grid of a product class: the portfolio-margin points of that class (so LP P&L
    aligns by index with the class group it nets in), else the ``defi`` crypto / depeg grid."""
    points = params.portfolio_margin.points.get(product_class)
    if points is None:
        defi = params.defi
        points = defi.depeg_grid if product_class == STABLECOIN else defi.crypto_grid
    return np.asarray(points, dtype=np.float64)


def lp_family_pnl(lp: LPPosition, prices: dict[str, float], families: list[tuple[str, ...]],
                  points: np.ndarray) -> np.ndarray:
    """P&L (families x points) of the position when each family's tokens move by each point."""
    base = (prices[lp.token0], prices[lp.token1])
    base_value = float(lp_values(lp, base[0], base[1], base_prices=base))
    rows = []
    for family in families:
        f0 = 1.0 + points if lp.token0 in family else np.ones_like(points)
        f1 = 1.0 + points if lp.token1 in family else np.ones_like(points)
        rows.append(lp_values(lp, base[0] * f0, base[1] * f1, base_prices=base) - base_value)
    return np.vstack(rows) if rows else np.zeros((0, points.size))


def lp_scenario_pnl(portfolio: Portfolio, position: Position, params: ParameterSet,
                    points: np.ndarray | Sequence[float] | None = None,
                    ) -> tuple[str, str, np.ndarray]:
    """(class_group, product_class, pnl per valuation point) of an LP position.

    P&L = value at the point - current value (USD, fees included, full revaluation with the
    exact integer math: impermanent loss and a concentrated position's capped upside are in
    it). ``points`` defaults to the product class's grid; the house layer may pass its own.
    An LP position's size is its liquidity: ``position.quantity`` is not applied.
    """
    lp = position.lp
    if lp is None:
        raise EngineInputError(f"positions[{position.index}]", "invalid",
                               "not a uniswap_v3_lp position")
    class_group, product_class, stressed = lp_class_group(portfolio, lp)
    grid = grid_for(params, product_class) if points is None else np.asarray(points, np.float64)
    prices = {lp.token0: portfolio.underlyings[lp.token0].price,
              lp.token1: portfolio.underlyings[lp.token1].price}
    try:
        pnl = lp_family_pnl(lp, prices, stress_families(stressed), grid)
    except (ValueError, TypeError) as exc:
        raise EngineInputError(f"positions[{position.index}]", "invalid",
                               f"cannot value the LP position: {exc}") from exc
    return class_group, product_class, pnl.min(axis=0)
