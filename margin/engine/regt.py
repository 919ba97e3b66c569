"""Strategy-based margin: Regulation T, FINRA 4210(c), the Cboe Margin Manual (METHODOLOGY.md s. 3).

``calculate_block(portfolio, params, valuation)`` returns the ``reg_t`` block of CALCULATOR.md:
``initial`` (Cboe's deposit convention: what an empty account pays in to open the book, i.e. the
strategies' requirements plus long-option costs minus short-option and short-sale proceeds),
``maintenance`` (FINRA 4210(c) in net-liquidation terms: the NLV the account must keep on current
marks), ``minimum_equity`` (reported, never added), the chosen ``strategies`` and the ``excluded``
position ids (futures, futures options, crypto, perpetuals, LP positions, anything on a future,
crypto or stablecoin underlying).

How the book is paired
----------------------
Positions in one instrument are netted into a *leg* first. Per underlying, every way a leg can take
part in a recognised strategy is a column of a set-partitioning model: singles (long/short stock,
long option, uncovered short), covered call / covered put against the stock, vertical, calendar
and diagonal spreads (long leg expiring no earlier than the short), short straddles / strangles,
and the two-vertical combinations of one expiry (iron condor / iron butterfly at the wider side's
width; balanced call / put butterflies and condors at their debit). A column is a strategy *per
unit* (one contract of each option leg, one deliverable of stock); its count is a variable. The
model ``min sum(cost * count)`` subject to "every option contract is used exactly once" and "no
more stock than held" is solved as a linear programme (HiGHS dual simplex) for the whole account
at once (it is block-diagonal by underlying), first for the least ``initial``, then, on the optimal
face (complementary slackness with the phase-1 duals), for the least ``maintenance``. Quantities are never
expanded into contracts, so size grows with the number of distinct instruments, not contracts.

Pairs of legs alone form a bipartite b-matching (short calls and long puts on one side, short
puts, long calls and the stock on the other), whose LP is integral. The four-leg combinations make
it a matching of matchings, and a butterfly uses two contracts of its body, so the LP can stop on a
half-integral vertex (a half butterfly); the body is capped at ``floor(q / 2)`` butterflies (the
exact projection of splitting the body into two half-legs), which removed every strict integrality
gap we could find, but not every fractional vertex (about 1 random dense book in 1,000). The
counts are therefore checked, and an underlying whose counts are fractional is re-solved on its own
with integrality imposed (HiGHS branch and bound on that one block), so the result is always an
exact least-cost partition; stock covering options of different multipliers goes the same way.

Protective puts (long stock + long put), short stock + long call, and collars carry no saving
over their parts under these rules (the put is paid in full either way); they are recognised after
the optimisation by attaching unpaired, non-long-dated long puts (calls) to the stock, which
leaves every total unchanged.

Every percentage comes from ``params.reg_t``; the per-strategy requirement functions below
(``*_requirement``) are public so they can be checked one by one.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csc_matrix, csr_matrix

from margin.engine.errors import EngineInputError
from margin.engine.portfolio import (
    BROAD_INDEX_CLASSES,
    OPTION_MULTIPLIER,
    Portfolio,
    Position,
    Underlying,
)

ParameterSet = dict[str, Any]

EXCLUDED_KINDS = frozenset({"future", "future_option", "crypto", "perpetual", "uniswap_v3_lp"})
EXCLUDED_PRODUCT_CLASSES = frozenset({"future", "crypto", "stablecoin"})

_TIME_TOL = 1e-9          # years: two expiries closer than this are the same expiry
_STRIKE_TOL = 1e-9        # strikes / widths equal within this (relative to the strike)
_INT_TOL = 1e-6           # integrality tolerance on strategy counts
_DENSE_LIMIT = 250_000    # constraint matrices up to this many entries are passed dense


# --------------------------------------------------------------------------------------------
# Rates and legs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """A strategy's (or a total's) requirement: ``initial`` deposit and ``maintenance``."""

    initial: float
    maintenance: float

    def __add__(self, other: Requirement) -> Requirement:
        return Requirement(self.initial + other.initial, self.maintenance + other.maintenance)

    def times(self, k: float) -> Requirement:
        return Requirement(self.initial * k, self.maintenance * k)


ZERO = Requirement(0.0, 0.0)


@dataclass(frozen=True)
class Rates:
    """The ``reg_t`` parameters as they apply to one underlying (leverage and class applied)."""

    long_stock_initial: float
    long_stock_maintenance: float
    short_stock_initial: float
    short_stock_maintenance: float
    short_stock_per_share: float
    short_stock_low_price: float
    short_stock_low_price_maintenance: float
    short_stock_low_price_per_share: float
    uncovered: float
    uncovered_minimum: float
    long_option_loan_value: float
    long_option_loan_months: int


def _leveraged(base: float, leverage: float) -> float:
    """A stock maintenance percentage times the leverage, never above 100 % (nor below base)."""
    return max(base, min(1.0, base * leverage))


def rates_for(params: ParameterSet, underlying: Underlying) -> Rates:
    """The strategy-based percentages for ``underlying``.

    Broad-based index classes use ``uncovered_broad_index`` (15 %) instead of
    ``uncovered_equity`` (20 %). A leveraged ETF's ``leverage`` multiplies the uncovered-option
    percentages (including the 10 % minimum) and the stock maintenance percentages (capped at
    100 %); Reg T's 50 % initial stays, raised only where the leveraged maintenance exceeds it.
    """
    r = params.reg_t
    lev = max(1.0, abs(float(underlying.leverage or 1.0)))
    long_m = _leveraged(r.long_stock_maintenance, lev)
    short_m = _leveraged(r.short_stock_maintenance, lev)
    broad = underlying.product_class in BROAD_INDEX_CLASSES
    uncovered = r.uncovered_broad_index if broad else r.uncovered_equity
    return Rates(
        long_stock_initial=max(r.long_stock_initial, long_m),
        long_stock_maintenance=long_m,
        short_stock_initial=max(r.short_stock_initial, short_m),
        short_stock_maintenance=short_m,
        short_stock_per_share=r.short_stock_maintenance_per_share,
        short_stock_low_price=r.short_stock_low_price,
        short_stock_low_price_maintenance=_leveraged(
            r.short_stock_low_price_maintenance, lev),
        short_stock_low_price_per_share=r.short_stock_low_price_per_share,
        uncovered=uncovered * lev,
        uncovered_minimum=r.uncovered_minimum * lev,
        long_option_loan_value=r.long_option_loan_value,
        long_option_loan_months=r.long_option_loan_months,
    )


@dataclass
class Leg:
    """One netted instrument of one underlying.

    ``right`` is ``"stock"``, ``"call"`` or ``"put"``; ``sign`` +1 long / -1 short; ``quantity``
    is the absolute net (contracts, or shares for stock). ``value`` is the mark of one contract
    (mark per unit times multiplier), or of one share for stock. ``spot`` is the underlying price.
    ``long_dated`` marks an option expiring more than the loan-value months out.
    """

    right: str
    sign: int
    quantity: float
    spot: float
    value: float
    strike: float = 0.0
    expiry: float = 0.0
    multiplier: float = 1.0
    long_dated: bool = False
    members: tuple[int, ...] = ()   # indexes of the positions netted into it (request order)
    underlying: str = ""

    @property
    def order(self) -> int:
        return self.members[0] if self.members else 0

    @property
    def is_option(self) -> bool:
        return self.right != "stock"

    @property
    def is_long(self) -> bool:
        return self.sign > 0


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar months, the day clamped to the month's length."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def is_long_dated(position: Position, valuation_date: date | None, months: int) -> bool:
    """True when the option expires more than ``months`` calendar months after the valuation
    date; without an expiry date, when its time to expiry exceeds ``months / 12`` years."""
    if position.expiry is not None and valuation_date is not None:
        return position.expiry > add_months(valuation_date, months)
    t = position.time_to_expiry
    return t is not None and float(t) > months / 12.0


# --------------------------------------------------------------------------------------------
# Per-strategy requirements (per unit: one contract of each option leg; stock per share or per
# option deliverable). ``initial`` follows the deposit convention: requirement + long-option cost
# - short-option proceeds; ``maintenance`` is in net-liquidation terms.
# --------------------------------------------------------------------------------------------

def short_stock_maintenance_per_share(price: float, rates: Rates) -> float:
    """30 % or $5/share at $5 and above; 100 % or $2.50/share below $5 (FINRA 4210(c))."""
    if price < rates.short_stock_low_price:
        return max(rates.short_stock_low_price_maintenance * price,
                   rates.short_stock_low_price_per_share)
    return max(rates.short_stock_maintenance * price, rates.short_stock_per_share)


def long_stock_requirement(price: float, shares: float, rates: Rates) -> Requirement:
    """Long stock: 50 % initial, 25 % maintenance."""
    value = price * shares
    return Requirement(rates.long_stock_initial * value, rates.long_stock_maintenance * value)


def short_stock_requirement(price: float, shares: float, rates: Rates) -> Requirement:
    """Short stock: proceeds plus 50 % (the 50 % is the deposit); maintenance 30 % / $5 etc."""
    return Requirement(rates.short_stock_initial * price * shares,
                       short_stock_maintenance_per_share(price, rates) * shares)


def long_option_requirement(value: float, long_dated: bool, rates: Rates) -> Requirement:
    """Long option: paid in full; 75 % of its value (loan value 25 %) when long-dated."""
    paid = (1.0 - rates.long_option_loan_value) * value if long_dated else value
    return Requirement(paid, paid)


def uncovered_excess(right: str, strike: float, spot: float, multiplier: float,
                     rates: Rates) -> float:
    """The uncovered short's requirement beyond its premium, per contract:
    max(x % of the underlying - out-of-the-money amount, 10 % of the underlying (call) or of the
    strike (put)), x = 20 % (15 % broad-based index), times the leverage."""
    if right == "call":
        otm, floor_base = max(strike - spot, 0.0), spot
    else:
        otm, floor_base = max(spot - strike, 0.0), strike
    return multiplier * max(rates.uncovered * spot - otm, rates.uncovered_minimum * floor_base)


def uncovered_margin(right: str, strike: float, spot: float, premium: float, multiplier: float,
                     rates: Rates) -> float:
    """Cboe's margin requirement of one uncovered short contract, premium included."""
    return premium * multiplier + uncovered_excess(right, strike, spot, multiplier, rates)


def uncovered_requirement(leg: Leg, rates: Rates) -> Requirement:
    """Uncovered short: deposit = requirement - premium received; the NLV already carries the
    option's current value, so maintenance is the same excess on current marks."""
    x = uncovered_excess(leg.right, leg.strike, leg.spot, leg.multiplier, rates)
    return Requirement(x, x)


def single_requirement(leg: Leg, rates: Rates, units: float = 1.0) -> Requirement:
    """A leg held alone: ``units`` contracts, or shares for stock."""
    if leg.right == "stock":
        fn = long_stock_requirement if leg.is_long else short_stock_requirement
        return fn(leg.value, units, rates)
    if leg.is_long:
        return long_option_requirement(leg.value, leg.long_dated, rates).times(units)
    return uncovered_requirement(leg, rates).times(units)


def covered_call_requirement(stock_price: float, call: Leg, rates: Rates) -> Requirement:
    """Long stock (one deliverable) + short call: 50 % of the stock, the call needs nothing and
    its premium is credited; maintenance 25 % of the stock valued at no more than the strike."""
    shares = call.multiplier
    return Requirement(
        rates.long_stock_initial * stock_price * shares - call.value,
        rates.long_stock_maintenance * min(stock_price, call.strike) * shares)


def covered_put_requirement(stock_price: float, put: Leg, rates: Rates) -> Requirement:
    """Short stock (one deliverable) + short put: the short sale's 50 %, the put needs nothing and
    its premium is credited; maintenance on the short stock valued at no less than the strike."""
    shares = put.multiplier
    return Requirement(
        rates.short_stock_initial * stock_price * shares - put.value,
        short_stock_maintenance_per_share(max(stock_price, put.strike), rates) * shares)


def protective_put_requirement(stock_price: float, put: Leg, rates: Rates) -> Requirement:
    """Long stock + long put: 50 % of the stock plus the put paid in full (25 % maintenance)."""
    return (long_stock_requirement(stock_price, put.multiplier, rates)
            + Requirement(put.value, put.value))


def protective_call_requirement(stock_price: float, call: Leg, rates: Rates) -> Requirement:
    """Short stock + long call: the short sale's requirement plus the call paid in full."""
    return (short_stock_requirement(stock_price, call.multiplier, rates)
            + Requirement(call.value, call.value))


def collar_requirement(stock_price: float, call: Leg, put: Leg, rates: Rates) -> Requirement:
    """Long stock + short call + long put: covered call plus the put paid in full."""
    return covered_call_requirement(stock_price, call, rates) + Requirement(put.value, put.value)


def spread_width(short: Leg, long: Leg) -> float:
    """Money at risk between the strikes (0 for a debit spread), per contract."""
    if short.right == "call":
        return max(long.strike - short.strike, 0.0) * short.multiplier
    return max(short.strike - long.strike, 0.0) * short.multiplier


def spread_requirement(short: Leg, long: Leg) -> Requirement:
    """Short option covered by a long option of the same right expiring no earlier: a credit
    spread requires its width (net credit applied), a debit spread pays its debit; maintenance is
    the maximum loss from current marks, ``width + long value - short value``, never below 0."""
    initial = spread_width(short, long) + long.value - short.value
    return Requirement(initial, max(initial, 0.0))


def straddle_requirement(call: Leg, put: Leg, rates: Rates) -> Requirement:
    """Short call + short put: the greater side's requirement plus the other side's premium;
    less both premiums received that is the greater side's excess (maintenance alike)."""
    xc = uncovered_excess("call", call.strike, call.spot, call.multiplier, rates)
    xp = uncovered_excess("put", put.strike, put.spot, put.multiplier, rates)
    rc, rp = xc + call.value, xp + put.value
    tol = 1e-12 * max(abs(rc), abs(rp), 1.0)
    if rc > rp + tol:
        x = xc
    elif rp > rc + tol:
        x = xp
    else:  # equal requirements: either side may be "the greater"; take the larger deposit
        x = max(xc, xp)
    return Requirement(x, x)


def _same(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def combo_requirement(bull_long: Leg, bull_short: Leg, bear_short: Leg,
                      bear_long: Leg) -> Requirement | None:
    """Two verticals of one expiry: a bullish one (long the lower strike, short the higher) below
    a bearish one (short the lower, long the higher), ``bull_short.strike <= bear_short.strike``.

    - put credit + call credit (iron condor / iron butterfly): the wider side's width;
    - call debit + call credit, put credit + put debit, balanced (equal widths): butterfly /
      condor, which pays its debit (requirement 0).
    Returns None when the four legs do not form one of these.
    """
    legs = (bull_long, bull_short, bear_short, bear_long)
    m, t = bull_long.multiplier, bull_long.expiry
    if any(not leg.is_option or not _same(leg.multiplier, m, _STRIKE_TOL)
           or abs(leg.expiry - t) > _TIME_TOL for leg in legs):
        return None
    if not (bull_long.is_long and bear_long.is_long and not bull_short.is_long
            and not bear_short.is_long):
        return None
    if bull_long.right != bull_short.right or bear_long.right != bear_short.right:
        return None
    if not (bull_long.strike < bull_short.strike <= bear_short.strike < bear_long.strike):
        return None
    w1 = bull_short.strike - bull_long.strike
    w2 = bear_long.strike - bear_short.strike
    if bull_short.right == bear_short.right:
        if not _same(w1, w2, _STRIKE_TOL):
            return None                  # only balanced butterflies / condors
        req = 0.0
    elif bull_short.right == "put":      # put credit spread + call credit spread
        req = max(w1, w2) * m
    else:                                # call debit + put debit: no saving, not a strategy
        return None
    initial = req + bull_long.value + bear_long.value - bull_short.value - bear_short.value
    return Requirement(initial, max(initial, 0.0))


def combo_name(bull_short: Leg, bear_short: Leg) -> str:
    body = _same(bull_short.strike, bear_short.strike, _STRIKE_TOL)
    if bull_short.right != bear_short.right:
        return "iron_butterfly" if body else "iron_condor"
    return f"{bull_short.right}_{'butterfly' if body else 'condor'}"


def spread_name(short: Leg, long: Leg) -> str:
    if abs(short.expiry - long.expiry) <= _TIME_TOL:
        kind = "credit" if spread_width(short, long) > 0 else "debit"
        return f"{short.right}_{kind}_spread"
    if _same(short.strike, long.strike, _STRIKE_TOL):
        return "calendar_spread"
    return "diagonal_spread"


def single_name(leg: Leg) -> str:
    if leg.right == "stock":
        return "long_stock" if leg.is_long else "short_stock"
    return f"long_{leg.right}" if leg.is_long else f"uncovered_{leg.right}"


def _spread_ok(short: Leg, long: Leg) -> bool:
    return (short.is_option and long.is_option and not short.is_long and long.is_long
            and short.right == long.right
            and _same(short.multiplier, long.multiplier, _STRIKE_TOL)
            and long.expiry >= short.expiry - _TIME_TOL)


def _straddle_ok(call: Leg, put: Leg) -> bool:
    return (call.right == "call" and put.right == "put" and not call.is_long
            and not put.is_long and _same(call.multiplier, put.multiplier, _STRIKE_TOL)
            and abs(call.expiry - put.expiry) <= _TIME_TOL)


def strategy_requirement(group: Sequence[tuple[Leg, int]],
                         rates: Rates) -> tuple[str, Requirement] | None:
    """Classify a group of legs (each with its count of units: contracts, or one option
    deliverable of stock) as one strategy unit and price it; None if not a recognised strategy.

    This is the reference definition of the strategy universe: the optimiser's columns are built
    from the same functions, and the tests check the optimiser against an exhaustive search that
    partitions small books with this function.
    """
    units: list[Leg] = []
    for leg, count in group:
        units.extend([leg] * count)
    stocks = [u for u in units if u.right == "stock"]
    opts = [u for u in units if u.is_option]
    if len(stocks) > 1 or not opts:
        return None  # stock alone is priced per share, not per unit
    if stocks:
        return _stock_strategy(stocks[0], opts, rates)
    if len(opts) == 1:
        return single_name(opts[0]), single_requirement(opts[0], rates)
    if len(opts) == 2:
        return _two_option_strategy(opts[0], opts[1], rates)
    if len(opts) == 4:
        return _four_option_strategy(opts)
    return None


def _stock_strategy(stock: Leg, opts: list[Leg], rates: Rates
                    ) -> tuple[str, Requirement] | None:
    """Stock with one option (covered / protective) or with a short call and a long put
    (collar)."""
    price = stock.value
    if len(opts) == 1:
        o = opts[0]
        if stock.is_long and o.right == "call" and not o.is_long:
            return "covered_call", covered_call_requirement(price, o, rates)
        if not stock.is_long and o.right == "put" and not o.is_long:
            return "covered_put", covered_put_requirement(price, o, rates)
        if stock.is_long and o.right == "put" and o.is_long:
            return "protective_put", protective_put_requirement(price, o, rates)
        if not stock.is_long and o.right == "call" and o.is_long:
            return "protective_call", protective_call_requirement(price, o, rates)
        return None
    if len(opts) == 2 and stock.is_long:
        calls = [o for o in opts if o.right == "call" and not o.is_long]
        puts = [o for o in opts if o.right == "put" and o.is_long]
        if len(calls) == 1 and len(puts) == 1 and _same(
                calls[0].multiplier, puts[0].multiplier, _STRIKE_TOL):
            return "collar", collar_requirement(price, calls[0], puts[0], rates)
    return None


def _two_option_strategy(a: Leg, b: Leg, rates: Rates) -> tuple[str, Requirement] | None:
    """A spread (short one, long the other) or a short straddle / strangle."""
    if a.is_long and not b.is_long:
        a, b = b, a
    if not a.is_long and b.is_long and _spread_ok(a, b):
        return spread_name(a, b), spread_requirement(a, b)
    if not a.is_long and not b.is_long:
        call, put = (a, b) if a.right == "call" else (b, a)
        if _straddle_ok(call, put):
            name = ("short_straddle" if _same(call.strike, put.strike, _STRIKE_TOL)
                    else "short_strangle")
            return name, straddle_requirement(call, put, rates)
    return None


def _four_option_strategy(opts: list[Leg]) -> tuple[str, Requirement] | None:
    """Two longs and two shorts: the cheaper pairing of butterfly / condor shapes."""
    longs = sorted((o for o in opts if o.is_long), key=lambda o: o.strike)
    shorts = sorted((o for o in opts if not o.is_long), key=lambda o: o.strike)
    if len(longs) != 2 or len(shorts) != 2:
        return None
    best: tuple[str, Requirement] | None = None
    for s1, s2 in ((shorts[0], shorts[1]), (shorts[1], shorts[0])):
        req = combo_requirement(longs[0], s1, s2, longs[1])
        if req is not None and (best is None or req.initial < best[1].initial):
            best = (combo_name(s1, s2), req)
    return best


# --------------------------------------------------------------------------------------------
# Building legs from the portfolio
# --------------------------------------------------------------------------------------------

def _is_excluded(p: Position, portfolio: Portfolio) -> bool:
    if p.kind in EXCLUDED_KINDS or p.kind not in ("stock", "option"):
        return True
    und = portfolio.underlyings.get(p.root)
    return und is None or und.product_class in EXCLUDED_PRODUCT_CLASSES


def _option_multiplier(p: Position) -> float:
    m = p.multiplier
    return float(m) if m else OPTION_MULTIPLIER


def _years(p: Position, valuation_date: date | None) -> float:
    if p.time_to_expiry is not None:
        return float(p.time_to_expiry)
    if p.expiry is not None and valuation_date is not None:
        return (p.expiry - valuation_date).days / 365.0
    return 0.0


def build_legs(portfolio: Portfolio, marks: np.ndarray, params: ParameterSet
               ) -> tuple[dict[str, list[Leg]], list[tuple[int, ...]], list[str]]:
    """Net the positions per instrument into legs, grouped by underlying in order of first
    appearance. Returns (legs by underlying, position-index groups that net to zero, excluded
    ids). An option instrument is (underlying, right, strike, expiry, multiplier, exercise);
    a netted leg is marked at the |quantity|-weighted mark of its positions."""
    months = params.reg_t.long_option_loan_months
    vdate = portfolio.valuation_date
    positions = portfolio.positions
    excluded: list[str] = []
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(positions):
        if _is_excluded(p, portfolio):
            excluded.append(p.id)
            continue
        if not math.isfinite(float(marks[i])):
            raise EngineInputError(f"positions[{i}].price", "invalid",
                                   "no finite mark to value the position for strategy-based margin")
        if p.kind == "stock":
            key: tuple = ("stock", p.root)
        else:
            key = ("option", p.root, p.right, float(p.strike),
                   p.expiry if p.expiry is not None else round(_years(p, vdate), 12),
                   _option_multiplier(p), p.exercise)
        groups.setdefault(key, []).append(i)

    by_underlying: dict[str, list[Leg]] = {}
    zero: list[tuple[int, ...]] = []
    for key, idx in groups.items():
        first = positions[idx[0]]
        stock = key[0] == "stock"
        if stock:
            units = [float(positions[i].quantity) * float(positions[i].multiplier or 1.0)
                     for i in idx]
            scale = 1.0
        else:
            units = [float(positions[i].quantity) for i in idx]
            scale = _option_multiplier(first)
        net = math.fsum(units)
        gross = math.fsum(abs(u) for u in units)
        if abs(net) <= 1e-12 * max(gross, 1.0):
            zero.append(tuple(idx))
            continue
        mark = math.fsum(abs(u) * float(marks[i]) for u, i in zip(units, idx, strict=True)) / gross
        leg = Leg(right="stock" if stock else first.right, sign=1 if net > 0 else -1,
                  quantity=abs(net), spot=float(portfolio.underlyings[first.root].price),
                  value=mark * scale, members=tuple(idx), underlying=first.root)
        if not stock:
            leg.strike = float(first.strike)
            leg.expiry = _years(first, vdate)
            leg.multiplier = scale
            leg.long_dated = is_long_dated(first, vdate, months)
        by_underlying.setdefault(first.root, []).append(leg)
    return by_underlying, zero, excluded


# --------------------------------------------------------------------------------------------
# The optimisation model
# --------------------------------------------------------------------------------------------

@dataclass
class _Column:
    name: str
    legs: tuple[tuple[Leg, int], ...]       # option legs and their contracts per strategy unit
    req: Requirement                        # per strategy unit (its stock included)
    cost: Requirement                       # the same less the stock's stand-alone requirement
    stock: Leg | None = None                # the stock covering it (one deliverable per unit)


@dataclass
class _Block:
    """The legs and columns of one underlying: rows are its option legs (used exactly), then
    ``<=`` rows for the stock's deliverables and butterfly bodies."""

    symbol: str
    rates: Rates
    stock: Leg | None
    options: list[Leg]
    columns: list[_Column] = field(default_factory=list)
    eq: list[tuple[int, int, float]] = field(default_factory=list)   # (row, column, coef)
    ub: list[tuple[int, int, float]] = field(default_factory=list)
    ub_rhs: list[float] = field(default_factory=list)

    @property
    def integral(self) -> bool:
        return all(abs(leg.quantity - round(leg.quantity)) <= 1e-9 for leg in self.options)

    @property
    def paired(self) -> bool:
        """Whether any column joins legs (else every leg stands alone)."""
        return len(self.columns) > len(self.options)

    def add(self, name: str, legs: tuple[tuple[Leg, int], ...], req: Requirement,
            stock: Leg | None = None, ub: tuple[tuple[int, float], ...] = ()) -> None:
        j = len(self.columns)
        cost = req
        if stock is not None:  # the stock's own requirement is added back when decoding
            shares = legs[0][0].multiplier
            cost = req + single_requirement(stock, self.rates, shares).times(-1.0)
        self.columns.append(_Column(name, legs, req, cost, stock))
        for leg, k in legs:
            self.eq.append((self.row[id(leg)], j, float(k)))
        for row, coef in ub:
            self.ub.append((row, j, coef))

    def __post_init__(self) -> None:
        self.row = {id(leg): r for r, leg in enumerate(self.options)}


def build_block(symbol: str, legs: list[Leg], rates: Rates) -> _Block:
    """Every strategy unit the legs of one underlying can form, as columns (in this order:
    singles, covered, spreads, straddles / strangles, condors / butterflies)."""
    stock = next((leg for leg in legs if leg.right == "stock"), None)
    options = [leg for leg in legs if leg.is_option]
    blk = _Block(symbol, rates, stock, options)
    for leg in options:  # singles first: column j is leg j alone
        blk.add(single_name(leg), ((leg, 1),), single_requirement(leg, rates))
    shorts = [leg for leg in options if not leg.is_long]
    if not shorts:
        return blk
    longs = [leg for leg in options if leg.is_long]
    if stock is not None:
        _add_covered(blk, stock, shorts)
    _add_spreads(blk, shorts, longs)
    _add_straddles(blk, shorts)
    _add_combos(blk, shorts, longs)
    return blk


def _add_covered(blk: _Block, stock: Leg, shorts: list[Leg]) -> None:
    """Covered call / covered put: one deliverable of the stock per contract."""
    want = "call" if stock.is_long else "put"
    covered = [s for s in shorts if s.right == want]
    if not covered:
        return
    mults = {s.multiplier for s in covered}
    row = len(blk.ub_rhs)
    one = len(mults) == 1
    blk.ub_rhs.append(math.floor(stock.quantity / covered[0].multiplier + 1e-9)
                      if one else stock.quantity)
    fn = covered_call_requirement if stock.is_long else covered_put_requirement
    name = "covered_call" if stock.is_long else "covered_put"
    for s in covered:
        blk.add(name, ((s, 1),), fn(stock.value, s, blk.rates), stock,
                ((row, 1.0 if one else s.multiplier),))


def _add_spreads(blk: _Block, shorts: list[Leg], longs: list[Leg]) -> None:
    """Spreads (vertical, calendar, diagonal): the long expiring no earlier than the short."""
    for s in shorts:
        for lg in longs:
            if _spread_ok(s, lg):
                blk.add(spread_name(s, lg), ((s, 1), (lg, 1)), spread_requirement(s, lg))


def _add_straddles(blk: _Block, shorts: list[Leg]) -> None:
    """Short straddles / strangles."""
    for c in shorts:
        if c.right != "call":
            continue
        for p in shorts:
            if p.right == "put" and _straddle_ok(c, p):
                name = ("short_straddle" if _same(c.strike, p.strike, _STRIKE_TOL)
                        else "short_strangle")
                blk.add(name, ((c, 1), (p, 1)), straddle_requirement(c, p, blk.rates))


def _verticals(shorts: list[Leg], longs: list[Leg]
               ) -> tuple[list[tuple[Leg, Leg]], list[tuple[Leg, Leg]]]:
    """Same-expiry verticals: bull (long lower, short higher) and bear (short lower, long
    higher), each (lower leg, higher leg)."""
    bulls: list[tuple[Leg, Leg]] = []
    bears: list[tuple[Leg, Leg]] = []
    for s in shorts:
        for lg in longs:
            if (s.right == lg.right and abs(s.expiry - lg.expiry) <= _TIME_TOL
                    and _same(s.multiplier, lg.multiplier, _STRIKE_TOL)):
                if lg.strike < s.strike:
                    bulls.append((lg, s))
                elif lg.strike > s.strike:
                    bears.append((s, lg))
    return bulls, bears


def _add_combos(blk: _Block, shorts: list[Leg], longs: list[Leg]) -> None:
    """Two verticals of one expiry: iron condors / butterflies, balanced condors /
    butterflies."""
    bulls, bears = _verticals(shorts, longs)
    body_rows: dict[int, int] = {}
    for bl, bs in bulls:
        for cs, cl in bears:
            if bs.strike > cs.strike:
                continue
            req = combo_requirement(bl, bs, cs, cl)
            if req is None:
                continue
            if bs is cs:  # butterfly: two contracts of its body, at most floor(q / 2) of them
                if id(bs) not in body_rows:
                    body_rows[id(bs)] = len(blk.ub_rhs)
                    blk.ub_rhs.append(math.floor(bs.quantity / 2 + 1e-9))
                blk.add(combo_name(bs, cs), ((bl, 1), (bs, 2), (cl, 1)), req,
                        ub=((body_rows[id(bs)], 1.0),))
            else:
                blk.add(combo_name(bs, cs), ((bl, 1), (bs, 1), (cs, 1), (cl, 1)), req)


# --------------------------------------------------------------------------------------------
# Solving
# --------------------------------------------------------------------------------------------

@dataclass
class SolveInfo:
    """Diagnostics of the last ``calculate_block`` (tests and benchmarks read it)."""

    columns: int = 0
    rows: int = 0
    lp_solves: int = 0
    fractional_initial: bool = False      # the least-initial LP vertex was fractional
    fractional_maintenance: bool = False  # the tie-break LP vertex was fractional
    mip_blocks: int = 0                   # underlyings re-solved with integrality imposed


LAST_SOLVE = SolveInfo()


def _stack(blocks: Sequence[_Block]):
    """(c_initial, c_maintenance, A_eq, b_eq, A_ub, b_ub) of block-diagonal blocks."""
    c1: list[float] = []
    c2: list[float] = []
    eq_r: list[int] = []
    eq_c: list[int] = []
    eq_v: list[float] = []
    ub_r: list[int] = []
    ub_c: list[int] = []
    ub_v: list[float] = []
    b_eq: list[float] = []
    b_ub: list[float] = []
    for blk in blocks:
        j0, r0, u0 = len(c1), len(b_eq), len(b_ub)
        c1.extend(col.cost.initial for col in blk.columns)
        c2.extend(col.cost.maintenance for col in blk.columns)
        b_eq.extend(leg.quantity for leg in blk.options)
        b_ub.extend(blk.ub_rhs)
        for r, j, v in blk.eq:
            eq_r.append(r0 + r)
            eq_c.append(j0 + j)
            eq_v.append(v)
        for r, j, v in blk.ub:
            ub_r.append(u0 + r)
            ub_c.append(j0 + j)
            ub_v.append(v)
    n = len(c1)
    if (len(b_eq) + len(b_ub)) * n <= _DENSE_LIMIT:  # small: dense is cheaper to hand over
        a_eq = np.zeros((len(b_eq), n))
        np.add.at(a_eq, (eq_r, eq_c), eq_v)
        a_ub = None
        if b_ub:
            a_ub = np.zeros((len(b_ub), n))
            np.add.at(a_ub, (ub_r, ub_c), ub_v)
    else:
        a_eq = csc_matrix((eq_v, (eq_r, eq_c)), shape=(len(b_eq), n))
        a_ub = csr_matrix((ub_v, (ub_r, ub_c)), shape=(len(b_ub), n)) if b_ub else None
    return (np.asarray(c1), np.asarray(c2), a_eq, np.asarray(b_eq, float), a_ub,
            np.asarray(b_ub, float) if b_ub else None)


def _lexicographic_lp(c1, c2, a_eq, b_eq, a_ub, b_ub, info: SolveInfo) -> np.ndarray | None:
    """Least ``c1``; then least ``c2`` on the optimal face, i.e. complementary slackness with
    the phase-1 duals: zero-reduced-cost columns only, ``<=`` rows with a non-zero dual kept
    binding. Phase 2 is skipped only when nothing but the solution's own columns prices out."""
    res = linprog(c1, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None),
                  method="highs-ds")
    info.lp_solves += 1
    if res.status != 0:
        return None
    x = res.x
    info.fractional_initial |= bool(np.abs(x - np.round(x)).max() > _INT_TOL)
    scale = max(1.0, float(np.abs(c1).max()))
    d = c1 - a_eq.T @ res.eqlin.marginals
    rows = [LinearConstraint(a_eq, b_eq, b_eq)]
    free_slacks = 0
    if a_ub is not None:
        y_ub = res.ineqlin.marginals
        d -= a_ub.T @ y_ub
        tight = np.abs(y_ub) > 1e-7 * scale
        free_slacks = int(np.count_nonzero(~tight))
        lower = np.where(tight, b_ub, -np.inf)
        rows.append(LinearConstraint(a_ub, lower, b_ub))
    keep = (d <= 1e-7 * scale) | (x > _INT_TOL)
    if int(keep.sum()) == int(np.count_nonzero(x > _INT_TOL)) and free_slacks == 0:
        return x  # no other column could enter: x is the only optimum
    res2 = milp(c2, constraints=rows, bounds=Bounds(0, np.where(keep, np.inf, 0.0)))
    info.lp_solves += 1
    if res2.status != 0:
        return x
    tol = 1e-9 * scale * max(1.0, float(b_eq.sum()))
    if float(c1 @ res2.x) > float(c1 @ x) + tol:
        return x
    info.fractional_maintenance |= bool(np.abs(res2.x - np.round(res2.x)).max() > _INT_TOL)
    return res2.x


def _solve_mip(c: np.ndarray, a_eq, b_eq, a_ub, b_ub,
               extra: tuple[np.ndarray, float] | None = None) -> np.ndarray | None:
    cons = [LinearConstraint(a_eq, b_eq, b_eq)]
    if a_ub is not None:
        cons.append(LinearConstraint(a_ub, -np.inf, b_ub))
    if extra is not None:
        cons.append(LinearConstraint(extra[0][None, :], -np.inf, extra[1]))
    res = milp(c, constraints=cons, integrality=np.ones_like(c), bounds=Bounds(0, np.inf),
               options={"mip_rel_gap": 0.0})
    return res.x if res.status == 0 else None


def _lexicographic_mip(c1, c2, a_eq, b_eq, a_ub, b_ub) -> np.ndarray | None:
    """The same optimum with integrality imposed (one underlying; see the module docstring)."""
    x = _solve_mip(c1, a_eq, b_eq, a_ub, b_ub)
    if x is None:
        return None
    tol = 1e-9 * max(1.0, float(np.abs(c1).max())) * max(1.0, float(b_eq.sum()))
    x2 = _solve_mip(c2, a_eq, b_eq, a_ub, b_ub, (c1, float(c1 @ x) + tol))
    return x2 if x2 is not None else x


def solve_blocks(blocks: Sequence[_Block]) -> list[np.ndarray]:
    """Counts per column of every block: least total ``initial``, then least ``maintenance``.

    Blocks without a joining column are their singles. The others are solved as one LP
    (block-diagonal); a block whose counts come out fractional is re-solved on its own with
    integrality imposed."""
    global LAST_SOLVE
    info = LAST_SOLVE = SolveInfo()
    out = [np.asarray([leg.quantity for leg in blk.options]
                      + [0.0] * (len(blk.columns) - len(blk.options))) for blk in blocks]
    active = [k for k, blk in enumerate(blocks) if blk.paired]
    if not active:
        return out
    c1, c2, a_eq, b_eq, a_ub, b_ub = _stack([blocks[k] for k in active])
    info.columns, info.rows = len(c1), len(b_eq) + (0 if b_ub is None else len(b_ub))
    x = _lexicographic_lp(c1, c2, a_eq, b_eq, a_ub, b_ub, info)
    if x is None:  # cannot happen: the singles are always feasible
        return out
    start = 0
    for k in active:
        blk = blocks[k]
        xb = x[start:start + len(blk.columns)]
        start += len(blk.columns)
        if blk.integral:
            if np.abs(xb - np.round(xb)).max() > _INT_TOL:
                info.mip_blocks += 1
                xm = _lexicographic_mip(*_stack([blk]))
                if xm is not None:
                    xb = xm
            xb = np.round(xb)
        xb = np.where(np.abs(xb) < 1e-12, 0.0, xb)
        out[k] = xb
    return out


# --------------------------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------------------------

@dataclass
class _Chosen:
    name: str
    legs: list[Leg]
    req: Requirement

    @property
    def members(self) -> list[int]:
        return sorted({i for leg in self.legs for i in leg.members})


def calculate_block(portfolio: Portfolio, params: ParameterSet, valuation: Any) -> dict:
    """The ``reg_t`` block (CALCULATOR.md): raw floats, keys in the documented order."""
    marks = np.asarray(valuation.marks, dtype=float)
    legs_by_und, zero_groups, excluded = build_legs(portfolio, marks, params)
    blocks = [build_block(sym, legs, rates_for(params, portfolio.underlyings[sym]))
              for sym, legs in legs_by_und.items()]
    counts = solve_blocks(blocks)

    entries: list[tuple[list[int], str, Requirement]] = []
    for blk, x in zip(blocks, counts, strict=True):
        for ch in decode_block(blk, x):
            entries.append((ch.members, ch.name, ch.req))
    entries.extend((sorted(g), "netted", ZERO) for g in zero_groups)
    entries.sort(key=lambda e: e[0])

    positions = portfolio.positions
    strategies = [{"strategy": name, "positions": [positions[i].id for i in members],
                   "initial": float(req.initial), "maintenance": float(req.maintenance)}
                  for members, name, req in entries]
    return {
        "initial": math.fsum(e[2].initial for e in entries),
        "maintenance": math.fsum(e[2].maintenance for e in entries),
        "minimum_equity": params.reg_t.minimum_equity,
        "strategies": strategies,
        "excluded": excluded,
    }


def _collars(stock: Leg, put: Leg, n: float, covered: list[list[Any]], rates: Rates,
             out: list[_Chosen]) -> float:
    """Pair up to ``n`` long puts with covered calls of the same deliverable as collars
    (consuming the covered counts); the puts left."""
    for entry in covered:
        call = entry[0].legs[0][0]
        j = min(n, entry[1])
        if j <= 0 or not _same(call.multiplier, put.multiplier, _STRIKE_TOL):
            continue
        out.append(_Chosen("collar", [stock, call, put],
                           collar_requirement(stock.value, call, put, rates).times(j)))
        entry[1] -= j
        n -= j
    return n


def decode_block(blk: _Block, x: np.ndarray) -> list[_Chosen]:
    """The strategies of one underlying from its column counts, then the zero-saving labels
    (collar, protective put, protective call) that leave every total unchanged."""
    rates = blk.rates
    out: list[_Chosen] = []
    alone = {id(leg): float(x[j]) for j, leg in enumerate(blk.options)}  # singles come first
    covered: list[list[Any]] = []          # [column, count] of covered calls / puts
    stock_used = 0.0
    for col, k in zip(blk.columns[len(blk.options):], x[len(blk.options):], strict=True):
        if k <= 0:
            continue
        if col.stock is not None:
            stock_used += k * col.legs[0][0].multiplier
            covered.append([col, float(k)])
        else:
            out.append(_Chosen(col.name, [leg for leg, _ in col.legs], col.req.times(float(k))))

    stock = blk.stock
    free = max(stock.quantity - stock_used, 0.0) if stock is not None else 0.0
    if stock is not None:
        want = "put" if stock.is_long else "call"
        for leg in blk.options:
            n = alone[id(leg)]
            if n <= 0 or not leg.is_long or leg.right != want or leg.long_dated:
                continue  # a long-dated option alone is cheaper (75 %) than paid in full
            if stock.is_long:  # a put on stock already under a covered call: collar
                n = _collars(stock, leg, n, covered, rates, out)
            j = min(n, math.floor(free / leg.multiplier + 1e-9))
            if j > 0:
                fn = protective_put_requirement if stock.is_long else protective_call_requirement
                out.append(_Chosen("protective_put" if stock.is_long else "protective_call",
                                   [stock, leg], fn(stock.value, leg, rates).times(j)))
                free -= j * leg.multiplier
                n -= j
            alone[id(leg)] = n
        for col, k in covered:
            if k > 0:
                out.append(_Chosen(col.name, [stock, col.legs[0][0]], col.req.times(k)))
        if free > 1e-9:
            out.append(_Chosen(single_name(stock), [stock],
                               single_requirement(stock, rates, free)))
    for leg in blk.options:
        if alone[id(leg)] > 1e-12:
            out.append(_Chosen(single_name(leg), [leg],
                               single_requirement(leg, rates, alone[id(leg)])))
    return out
