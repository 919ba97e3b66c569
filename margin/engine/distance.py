"""Distance to a call: how far the market can move before an account's excess turns negative.

An account is in deficit when its equity falls below its requirement. A move of the market
changes both: equity by the book's profit and loss, and the requirement because it is
recomputed on the moved book (a short put's requirement grows as the stock falls towards its
strike; a protected stock's shrinks). So the distance is found by revaluing the whole
portfolio at moved prices, never by extrapolating today's risk array:

- ``shocked``: the portfolio with the underlyings of the chosen class groups (all of them for
  the whole market) moved by a relative amount; options keep the implied volatility they are
  valued at today (sticky strike) and are re-marked by the model at the moved price; futures
  move with their underlying; stablecoins never move (they are pegged, not risky collateral);
- ``first_deficit``: the nearest move, in one direction, at which the excess is negative:
  the excess on an evenly spaced grid out to ``limit`` (each grid point a full revaluation),
  then bisection between the last covered point and the first deficit until they are
  ``tolerance`` apart. The grid (not a bare bisection over the whole range) finds the nearest
  crossing when the excess is not monotonic in the move (a short straddle loses both ways);
  "none within" is reported when no grid point is a deficit;
- ``stressed``: the figures under preset moves of the whole market (PRESETS).

The engine does not know the account's margin type or cash: the caller passes ``figures``,
which turns a portfolio into (equity, requirement) as the account's valuation does (the
calculator's blocks for the requirement the account's type rests on). Nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .errors import EngineInputError
from .portfolio import OPTION_KINDS, STABLECOIN, Portfolio
from .valuation import Valuation

#: preset whole-market moves a client can pick (issue 18: -5 %, -10 %, -20 % and up)
PRESETS: tuple[float, ...] = (-0.20, -0.10, -0.05, 0.05, 0.10, 0.20)
#: how far each direction is searched (relative move) and the grid's step
SEARCH_LIMIT, GRID_STEP = 0.50, 0.025
#: bisection stops when the covered and the deficit move are this close (0.01 % of the price)
TOLERANCE = 1e-4
DOWN, UP = -1, 1

#: a portfolio -> (equity, requirement) as the account's valuation computes them
Figures = Callable[[Portfolio], tuple[float, float]]


def movable_groups(portfolio: Portfolio) -> list[str]:
    """The class groups a market move moves (every underlying's but a stablecoin's), sorted."""
    return sorted({u.class_group for u in portfolio.underlyings.values()
                   if u.product_class != STABLECOIN})


def shocked(portfolio: Portfolio, valued: Valuation, move: float,
            groups: Sequence[str] | None = None) -> Portfolio:
    """The portfolio with the underlyings of ``groups`` (None: every movable one) moved by
    ``move`` (-0.1 = down 10 %). ``valued`` is today's valuation of ``portfolio``: each
    option keeps the implied volatility it is valued at (its mark's, or the stored one)."""
    moving = set(movable_groups(portfolio) if groups is None else groups)
    factor = 1.0 + float(move)
    if factor <= 0:
        raise EngineInputError("move", "out_of_range", f"a move of {move:.0%} leaves no price")
    moved_roots = {s for s, u in portfolio.underlyings.items()
                   if u.class_group in moving and u.product_class != STABLECOIN}
    underlyings = {s: replace(u, price=u.price * factor) if s in moved_roots else u
                   for s, u in portfolio.underlyings.items()}
    positions = []
    for i, p in enumerate(portfolio.positions):
        root = p.root if p.kind != "uniswap_v3_lp" else None
        if root not in moved_roots:
            positions.append(p)
        elif p.kind in OPTION_KINDS and np.isfinite(valued.vols[i]):
            # sticky strike: the vol stays, the model re-marks the option at the moved price
            positions.append(replace(p, price=None, implied_vol=float(valued.vols[i])))
        elif p.price is not None and p.kind not in OPTION_KINDS:
            positions.append(replace(p, price=float(p.price) * factor))  # a future's own price
        else:
            positions.append(p)
    return replace(portfolio, underlyings=underlyings, positions=tuple(positions))


def excess_at(portfolio: Portfolio, valued: Valuation, figures: Figures,
              moves: Sequence[float] | np.ndarray, groups: Sequence[str] | None = None
              ) -> np.ndarray:
    """Equity - requirement of the book revalued at each move (a full revaluation each)."""
    out = np.empty(len(moves))
    for k, move in enumerate(np.asarray(moves, dtype=float)):
        equity, requirement = figures(shocked(portfolio, valued, float(move), groups))
        out[k] = equity - requirement
    return out


@dataclass(frozen=True)
class Crossing:
    """Where, in one direction, the excess first turns negative.

    ``move`` is the furthest move still covered (excess >= 0) and ``deficit_move`` the
    nearest deficit, ``TOLERANCE`` apart; both None when no move out to ``limit`` is a
    deficit; ``move`` 0 and ``deficit_move`` 0 when the account is in deficit already."""

    direction: int
    limit: float
    move: float | None
    deficit_move: float | None
    #: the grid the search valued: (move, excess) pairs, nearest first (the chart's points)
    curve: tuple[tuple[float, float], ...] = ()

    @property
    def found(self) -> bool:
        return self.move is not None


def first_deficit(excess: Callable[[np.ndarray], np.ndarray], direction: int, *,
                  limit: float = SEARCH_LIMIT, step: float = GRID_STEP,
                  tolerance: float = TOLERANCE) -> Crossing:
    """The nearest move in ``direction`` (DOWN or UP) at which ``excess(moves)`` is negative
    (module docstring: grid, then bisection)."""
    if direction not in (DOWN, UP):
        raise ValueError("direction is DOWN (-1) or UP (+1)")
    count = max(int(round(limit / step)), 1)
    grid = direction * np.round(np.arange(count + 1) * (limit / count), 10) + 0.0  # no -0.0
    values = np.asarray(excess(grid), dtype=float)
    curve = tuple(zip(grid.tolist(), values.tolist(), strict=True))
    if values[0] < 0:
        return Crossing(direction, limit, 0.0, 0.0, curve)
    below = np.flatnonzero(values < 0)
    if not below.size:
        return Crossing(direction, limit, None, None, curve)
    covered, deficit = float(grid[below[0] - 1]), float(grid[below[0]])
    while abs(deficit - covered) > tolerance:
        middle = (covered + deficit) / 2.0
        if float(np.asarray(excess(np.array([middle])))[0]) < 0:
            deficit = middle
        else:
            covered = middle
    return Crossing(direction, limit, covered, deficit, curve)


@dataclass(frozen=True)
class Stressed:
    """The figures after a whole-market move."""

    move: float
    equity: float
    requirement: float

    @property
    def excess(self) -> float:
        return self.equity - self.requirement


def stressed(portfolio: Portfolio, valued: Valuation, figures: Figures,
             moves: Sequence[float] = PRESETS) -> list[Stressed]:
    """Equity and requirement of the book revalued after each whole-market move."""
    out = []
    for move in moves:
        equity, requirement = figures(shocked(portfolio, valued, float(move)))
        out.append(Stressed(float(move), equity, requirement))
    return out


__all__ = ["DOWN", "PRESETS", "SEARCH_LIMIT", "TOLERANCE", "UP", "Crossing", "Stressed",
           "excess_at", "first_deficit", "movable_groups", "shocked", "stressed"]
