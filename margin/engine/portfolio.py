"""The normalised portfolio every engine part reads.

The calculator parses and validates a request (CALCULATOR.md) into these frozen dataclasses;
the live path builds the same from the book. By the time a `Portfolio` exists every number is
finite and in range, every option's underlying is declared, every oracle round has passed its
checks and left a plain `price` on its `Underlying`. Engine code never re-validates input.
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
