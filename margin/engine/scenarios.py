"""Valuation points (METHODOLOGY.md sections 1 and 2), all read from the parameter set.

Regulatory grids: ``params.portfolio_margin.points[product_class]`` (10 points, the
unchanged price excluded; stablecoin 5). House grids are derived from them:

- extended stress: each side of a grid that does not reach ``stress_range`` is replaced by as
  many equidistant points reaching it (a side already wider is kept as it is); the stablecoin
  depeg grid is its own stress and is kept;
- symmetric grids (concentration overlay, per-symbol range overrides): ``n_down`` equidistant
  points down to ``-down`` and ``n_up`` up to ``+up``, with the regulatory grid's counts so that
  points stay aligned by index across the class groups of a product group;
- vol shifts: relative implied-vol multipliers ``(1 + s, 1 - s)``.

Grids are float64 arrays; ``GridTable`` pads them into one (grids x max points) matrix with a
validity mask for the batch code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parameters import ParameterSet
from .portfolio import STABLECOIN

DEPEG_CLASS = STABLECOIN  # the depeg grid is its own stress


def points_for(params: ParameterSet, product_class: str) -> np.ndarray:
    """The regulatory valuation points of a product class (relative moves, ascending)."""
    return np.asarray(params.portfolio_margin.points[product_class], dtype=np.float64)


def regulatory_grids(params: ParameterSet) -> dict[str, np.ndarray]:
    """Every product class's regulatory grid."""
    return {cls: points_for(params, cls) for cls in params.portfolio_margin.points}


def side_counts(points: np.ndarray) -> tuple[int, int]:
    """Number of points below and above the unchanged price."""
    return int(np.count_nonzero(points < 0)), int(np.count_nonzero(points > 0))


def symmetric_grid(n_down: int, n_up: int, down: float, up: float | None = None) -> np.ndarray:
    """``n_down`` equidistant moves down to ``-down`` and ``n_up`` up to ``+up`` (0 excluded)."""
    up = down if up is None else up
    lo = -down * np.arange(n_down, 0, -1, dtype=np.float64) / max(n_down, 1)
    hi = up * np.arange(1, n_up + 1, dtype=np.float64) / max(n_up, 1)
    return np.concatenate([lo, hi])


def extended_grid(points: np.ndarray, stress_range: float, product_class: str) -> np.ndarray:
    """The regulatory grid with each side reaching at least +/- ``stress_range``."""
    points = np.asarray(points, dtype=np.float64)
    if product_class == DEPEG_CLASS or stress_range <= 0:
        return points.copy()
    return widened_grid(points, stress_range)


def scaled_grid(points: np.ndarray, down: float, up: float | None = None) -> np.ndarray:
    """A grid with the same side counts as ``points`` reaching ``-down`` / ``+up``."""
    n_down, n_up = side_counts(np.asarray(points))
    return symmetric_grid(n_down, n_up, down, up)


def widened_grid(points: np.ndarray, down: float, up: float | None = None) -> np.ndarray:
    """``points`` with each side widened (never narrowed) to reach ``-down`` / ``+up``."""
    points = np.asarray(points, dtype=np.float64)
    up = down if up is None else up
    lo = points[points < 0]
    hi = points[points > 0]
    if lo.size and -lo.min() < down:
        lo = symmetric_grid(lo.size, 0, down)
    if hi.size and hi.max() < up:
        hi = symmetric_grid(0, hi.size, 0.0, up)
    return np.concatenate([lo, hi])


def vol_multipliers(vol_shift: float) -> tuple[float, float]:
    """Relative implied-vol shifts of the house volatility stress: up, then down."""
    return 1.0 + vol_shift, max(1.0 - vol_shift, 0.0)


@dataclass
class GridTable:
    """Distinct grids padded into one matrix (padding 0, masked by ``valid``)."""

    points: np.ndarray  # (n_grids, width) float64
    valid: np.ndarray  # (n_grids, width) bool
    length: np.ndarray  # (n_grids,) int64

    @classmethod
    def build(cls, grids: list[np.ndarray]) -> GridTable:
        width = max((len(g) for g in grids), default=1)
        pts = np.zeros((max(len(grids), 1), width))
        valid = np.zeros_like(pts, dtype=bool)
        length = np.zeros(max(len(grids), 1), dtype=np.int64)
        for i, g in enumerate(grids):
            pts[i, : len(g)] = g
            valid[i, : len(g)] = True
            length[i] = len(g)
        return cls(pts, valid, length)

    @property
    def width(self) -> int:
        return self.points.shape[1]


class GridRegistry:
    """Interns grids by value so that equal grids share one id."""

    def __init__(self) -> None:
        self._ids: dict[tuple[float, ...], int] = {}
        self.grids: list[np.ndarray] = []

    def intern(self, grid: np.ndarray) -> int:
        key = tuple(float(x) for x in grid)
        gid = self._ids.get(key)
        if gid is None:
            gid = self._ids[key] = len(self.grids)
            self.grids.append(np.asarray(grid, dtype=np.float64))
        return gid

    def table(self) -> GridTable:
        return GridTable.build(self.grids)
