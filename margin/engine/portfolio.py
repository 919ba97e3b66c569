"""The normalised portfolio every engine part reads.

The calculator parses a request (CALCULATOR.md) into these frozen dataclasses; the live path
builds the same from the book. Both hand the result to ``validation.validate_portfolio``, the
one place the domain bounds are checked (finite positive prices, declared underlyings, expiry
not before the valuation date, one product class per class group...). After it every number
is finite and in range and every oracle round has passed its checks and left a plain `price`
on its `Underlying`; engine code does not re-validate input.

The names below (product classes, kinds, methods, rights...) are the contract's vocabulary,
defined here once and imported wherever they are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

PRODUCT_CLASSES = (
    "equity", "narrow_index", "broad_index_high_cap", "broad_index", "future", "crypto",
    "stablecoin",
)
UNDERLYING_TYPES = ("stock", "etf", "index", "future", "token")
POSITION_KINDS = (
    "stock", "option", "future", "future_option", "crypto", "perpetual", "uniswap_v3_lp",
)
BROAD_INDEX_CLASSES = ("broad_index_high_cap", "broad_index")
FUTURE_CLASS = "future"  # index futures follow their index's class when held with it
STABLECOIN = "stablecoin"
#: the underlying type a product class implies when a request gives none (CALCULATOR.md)
DEFAULT_TYPE = {
    "equity": "stock",
    "narrow_index": "index",
    "broad_index_high_cap": "index",
    "broad_index": "index",
    "future": "future",
    "crypto": "token",
    "stablecoin": "token",
}
EUROPEAN_TYPES = ("index", "token")  # cash-settled index and crypto options are European
OPTION_KINDS = ("option", "future_option")
LINEAR_KINDS = ("stock", "crypto", "future", "perpetual")
SPAN_KINDS = ("future", "future_option")
LP_KIND = "uniswap_v3_lp"
METHODS = ("portfolio_margin", "reg_t", "span", "var", "collateral")
RIGHTS = ("call", "put")
EXERCISES = ("american", "european")
#: the shipped named stress scenarios (data/stress_scenarios.json holds their moves)
NAMED_STRESS = ("1987-10-19", "2008-10", "2020-03-16", "2022-05", "2022-11")
DAYS_PER_YEAR = 365.0  # time to expiry is calendar days / 365 (CALCULATOR.md)
OPTION_MULTIPLIER = 100.0  # an equity option's default deliverable
RISK_ARRAY_LENGTH = 16  # SPAN scenarios per risk array


@dataclass(frozen=True)
class Underlying:
    symbol: str
    price: float
    product_class: str
    type: str
    class_group: str
    product_group: str
    dividend_yield: float = 0.0
    leverage: float = 1.0
    volatility: float | None = None
    # When the price came from an oracle round, the independent reference it was checked
    # against (kept for reporting; the price itself is already validated).
    reference_price: float | None = None


@dataclass(frozen=True)
class Position:
    """One position as requested. Fields a kind does not use are None.

    - stock / crypto / perpetual: ``symbol``
    - option / future / future_option: ``underlying``; options also ``right``, ``strike``,
      ``time_to_expiry`` (years, calendar days / 365, already resolved from ``expiry``),
      ``exercise`` ('american' | 'european', defaulted from the underlying's type),
      ``price`` (mark per unit) and/or ``implied_vol``
    - future / future_option: ``multiplier`` required; ``risk_array`` optional (16 values per
      long contract, profit positive, SPAN order)
    - perpetual: ``entry_price``, ``funding_accrued``
    - uniswap_v3_lp: ``lp``
    """

    index: int
    id: str
    kind: str
    quantity: float
    symbol: str | None = None
    underlying: str | None = None
    right: str | None = None
    strike: float | None = None
    expiry: date | None = None
    time_to_expiry: float | None = None
    multiplier: float = 1.0
    exercise: str | None = None
    price: float | None = None
    implied_vol: float | None = None
    risk_array: tuple[float, ...] | None = None
    entry_price: float | None = None
    funding_accrued: float = 0.0
    lp: LPPosition | None = None

    @property
    def root(self) -> str:
        """The underlying symbol this position moves with."""
        return self.symbol if self.symbol is not None else self.underlying  # type: ignore[return-value]

    @property
    def is_call(self) -> bool:
        return self.right == "call"


@dataclass(frozen=True)
class LPPosition:
    """A Uniswap v3 position; every X96/X128 value is a Python int, never a float."""

    token0: str
    token1: str
    decimals0: int
    decimals1: int
    liquidity: int
    tick_lower: int
    tick_upper: int
    tokens_owed0: int = 0
    tokens_owed1: int = 0
    fee_growth_inside_last0: int | None = None
    fee_growth_inside_last1: int | None = None
    fee_growth_global0: int | None = None
    fee_growth_global1: int | None = None
    fee_growth_outside_lower: tuple[int, int] | None = None
    fee_growth_outside_upper: tuple[int, int] | None = None
    tick_current: int | None = None
    sqrt_price_x96: int | None = None  # explicit override of the oracle-derived sqrt price


@dataclass(frozen=True)
class StressScenario:
    name: str
    moves: dict[str, float]  # symbol -> relative move (-0.2 = down 20 %)


@dataclass(frozen=True)
class Portfolio:
    valuation_date: date
    underlyings: dict[str, Underlying]
    positions: tuple[Position, ...]
    rate: float = 0.0
    valuation_time: datetime | None = None
    methods: tuple[str, ...] = ()
    house: dict | None = None
    offsets: dict[str, float] = field(default_factory=dict)
    span_parameters: dict[str, dict] = field(default_factory=dict)
    history: dict[str, tuple[float, ...]] | None = None
    stress: tuple[StressScenario, ...] = ()

    def positions_of(self, *kinds: str) -> tuple[Position, ...]:
        return tuple(p for p in self.positions if p.kind in kinds)
