"""The firm-wide price-move simulator's engine: every book revalued at a shocked market.

A shock moves underlyings by relative amounts and may shift their implied vols (absolute), as a
stress scenario does (METHODOLOGY.md section 5; ``var.scenario_moves`` resolves both kinds):
one underlying (``symbol_shock``: ``AAPL -10 %``; a class group's name moves every member of
the group, as a custom stress scenario does) or a named scenario across all
(``named_shock``: the shipped ``data/stress_scenarios.json``).

The shocked market is the market a full recompute would see after the move: each moved
underlying at its new price, a future on it at its price moved alike, and an option on it
valued at its model at the new price with its implied vol (plus the scenario's shift), since
its last mark describes a market that no longer exists (``margin.book.current_mark`` marks to
model between quotes the same way). Options and contracts on underlyings that did not move keep
their marks. A future's move settles into cash (``variation``): equity after the move counts
it, as the next settlement posts it (the engine values a future at 0, ``margin.equity``).

Two paths give the same numbers:

- ``ShockableBook`` (the batch path): a chunk prepared once by ``batch.prepare_chunk`` (the
  universe valued, the series table and the sparse structure built) is revalued by shifting
  the spot of the moved series in its series table, repricing only those series' marks and
  grid P&L (vectorised), and aggregating with the one ``pm_aggregation.requirements``: the
  structure never changes, so a shock costs the moved series' pricing plus one sparse product
  and aggregation per grid.
- ``shock_portfolio`` (the calculator path): one account's ``Portfolio`` at the shocked
  market, for books the batch does not cover (Reg T, crypto collateral, LP positions) and as
  the reference the tests hold the batch path to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import pricing
from .batch import PreparedChunk
from .errors import EngineInputError
from .parameters import ParameterSet
from .pm_aggregation import Grid, HouseRequest, Rows, grid_tables, requirements
from .portfolio import OPTION_KINDS, Portfolio, StressScenario, Underlying
from .series import OPTION, SeriesTable, minimum_per_unit, series_pnl
from .valuation import value_positions
from .var import named_scenarios, scenario_moves

#: the range of a move the simulator takes: a price falls at most to (almost) nothing
#: (the stress file's own floor, LUNA's -99.99 %) and rises at most elevenfold
MOVE_FLOOR = -0.9999
MOVE_CEILING = 10.0


@dataclass(frozen=True)
class PriceShock:
    """Relative price moves and absolute implied-vol shifts by underlying symbol (only the
    underlyings that move are listed)."""

    label: str
    moves: dict[str, float] = field(default_factory=dict)
    vol_shifts: dict[str, float] = field(default_factory=dict)

    def moves_anything(self, symbol: str) -> bool:
        return bool(self.moves.get(symbol) or self.vol_shifts.get(symbol))


def check_move(move: float) -> float:
    """The move as a float, or an ``EngineInputError`` naming what is wrong with it."""
    try:
        move = float(move)
    except (TypeError, ValueError):
        raise EngineInputError("move", "invalid", f"{move!r} is not a number") from None
    if not math.isfinite(move):
        raise EngineInputError("move", "not_finite", "the move must be a finite number")
    if not MOVE_FLOOR <= move <= MOVE_CEILING:
        raise EngineInputError(
            "move", "out_of_range", f"a move must lie between {MOVE_FLOOR * 100:g} % and "
                                    f"+{MOVE_CEILING * 100:,.0f} % (a price cannot fall below 0)")
    return move


def _shock(label: str, underlyings: dict[str, Underlying], scenario: StressScenario
           ) -> PriceShock:
    price, vol = scenario_moves(underlyings, 0, scenario, named_scenarios())
    return PriceShock(label, {s: m for s, m in price.items() if m},
                      {s: v for s, v in vol.items() if v})


def symbol_shock(symbol: str, move: float, underlyings: dict[str, Underlying]) -> PriceShock:
    """``symbol`` (an underlying, or a class group's name: every member) moved by ``move``."""
    move = check_move(move)
    symbol = symbol.strip().upper()
    groups = {u.class_group for u in underlyings.values()}
    if symbol not in underlyings and symbol not in groups:
        raise EngineInputError("symbol", "unknown_symbol",
                               f"no book of the firm holds anything on {symbol!r}")
    return _shock(f"{symbol} {move * 100:+g} %", underlyings,
                  StressScenario(name=symbol, moves={symbol: move}))


def named_shock(name: str, underlyings: dict[str, Underlying]) -> PriceShock:
    """A shipped named stress scenario across every underlying."""
    named = named_scenarios()
    if name not in named:
        raise EngineInputError("scenario", "unknown_scenario",
                               f"unknown stress scenario {name!r}; named ones are "
                               f"{', '.join(named)}")
    return _shock(named[name]["title"], underlyings, StressScenario(name=name, moves={}))


# --------------------------------------------------------------------------- calculator path


def shock_portfolio(portfolio: Portfolio, shock: PriceShock, params: ParameterSet,
                    vols: np.ndarray | None = None) -> Portfolio:
    """The book at the shocked market (module docstring). ``vols``: each position's implied
    vol at the current market (``value_positions(...).vols``), for options given a mark but
    no vol; computed when not given."""
    if vols is None and any(p.kind in OPTION_KINDS and p.implied_vol is None
                            and shock.moves_anything(p.root) for p in portfolio.positions):
        vols = value_positions(portfolio, params, need_model=False, greeks=False).vols
    underlyings = {s: replace(u, price=u.price * (1.0 + shock.moves[s])) if s in shock.moves
                   else u for s, u in portfolio.underlyings.items()}
    positions = []
    for i, p in enumerate(portfolio.positions):
        move = shock.moves.get(p.root, 0.0)
        if p.kind in OPTION_KINDS and shock.moves_anything(p.root):
            vol = p.implied_vol if p.implied_vol is not None else (
                None if vols is None or np.isnan(vols[i]) else float(vols[i]))
            if vol is not None:
                vol = max(vol + shock.vol_shifts.get(p.root, 0.0), 0.0)
            p = replace(p, price=None if vol is not None else p.price, implied_vol=vol)
        elif p.kind == "future" and move and p.price is not None:
            p = replace(p, price=p.price * (1.0 + move))
        positions.append(p)
    return replace(portfolio, underlyings=underlyings, positions=tuple(positions))


def futures_variation(portfolio: Portfolio, shock: PriceShock) -> float:
    """What the move settles into cash on the book's futures: units x price x move."""
    total = 0.0
    for p in portfolio.positions:
        move = shock.moves.get(p.root, 0.0)
        if p.kind == "future" and move:
            price = p.price if p.price is not None else portfolio.underlyings[p.root].price
            total += float(p.quantity) * float(p.multiplier) * float(price) * move
    return total


# --------------------------------------------------------------------------- batch path


@dataclass
class ShockedFigures:
    """Per account of the book (meaningful where the batch values it)."""

    net_liquidation_value: np.ndarray
    variation: np.ndarray  # futures' settlement of the move (0 without a shock)
    requirement: np.ndarray


class ShockableBook:
    """A prepared chunk (``batch.prepare_chunk``) revalued at shocked markets (module
    docstring). Built once per market state; ``figures`` for each shock."""

    def __init__(self, prepared: PreparedChunk, n_accounts: int) -> None:
        self.prepared, self.n = prepared, n_accounts
        self.valued = prepared.held
        self._base_requirement: np.ndarray | None = None
        chunk = prepared.chunk
        if chunk is None:
            return
        run = self.run = chunk.run
        positions = run.portfolio.positions
        self.rate = float(run.portfolio.rate)
        self.roots = sorted({p.root for p in positions})
        root_index = {s: k for k, s in enumerate(self.roots)}
        self.position_root = np.array([root_index[p.root] for p in positions], np.int64)
        self.multiplier = np.array([float(p.multiplier) for p in positions])
        self.is_future = np.array([p.kind == "future" for p in positions], dtype=bool)
        pos_series = run.pos_series
        self.series_root = np.full(len(run.series), -1, np.int64)
        self.series_root[pos_series] = self.position_root
        # Contracts of different underlyings whose terms and market coincide share a series
        # (two stocks of one class group at the same price): moved apart, they would need two.
        shared = self.series_root[pos_series] != self.position_root
        self.shared_roots = {frozenset({self.roots[int(self.series_root[s])],
                                        positions[i].root})
                             for i, s in zip(np.flatnonzero(shared).tolist(),
                                             pos_series[shared].tolist(), strict=True)}
        st = chunk.structure
        self.request = HouseRequest.of(run.portfolio.house, run.params)
        self.tables = grid_tables(run.groups, run.reg_grids, run.cg_class, self.request)
        self.valid = {name: (table.valid[st.row_cg], table.pg_valid()[st.pgrow_pg])
                      for name, (table, _) in self.tables.items()}
        self.rows = Rows(n_accounts, st.row_account, st.pg_ptr, st.pgrow_account,
                         chunk.pgrow_offset, st.account_ptr,
                         chunk._listed_order() if self.request.concentration is not None
                         else None)
        # the grids' P&L per series at the current market: a shock reprices only its series
        self.base_pnl = {name: series_pnl(run.series, table, self.rate, mult)
                         for name, (table, mult) in self.tables.items()}

    def separable(self, shock: PriceShock) -> bool:
        """Whether the series table can carry the shock (no shared series moved apart)."""
        return all(len({(shock.moves.get(s, 0.0), shock.vol_shifts.get(s, 0.0))
                        for s in pair}) == 1 for pair in getattr(self, "shared_roots", ()))

    def figures(self, shock: PriceShock | None = None) -> ShockedFigures:
        """Every covered account's net liquidation value, futures variation and requirement
        at the shocked market (the current one without a shock)."""
        n = self.n
        chunk = self.prepared.chunk
        if chunk is None:
            return ShockedFigures(np.zeros(n), np.zeros(n), np.zeros(n))
        if shock is not None and not self.separable(shock):
            raise EngineInputError("shock", "not_separable",
                                   "contracts of underlyings moved apart share a series")
        run = self.run
        series = run.series
        move = np.zeros(len(self.roots))
        shift = np.zeros(len(self.roots))
        if shock is not None:
            for k, symbol in enumerate(self.roots):
                move[k] = shock.moves.get(symbol, 0.0)
                shift[k] = shock.vol_shifts.get(symbol, 0.0)
        s_move, s_shift = move[self.series_root], shift[self.series_root]
        is_option = series.kind == OPTION
        moved = np.flatnonzero((s_move != 0) | ((s_shift != 0) & is_option))
        shocked = _shifted(series, moved, s_move, s_shift, self.rate)
        # each held contract's value per unit of quantity: the valuation's, or the moved mark
        market_value = chunk.market_value.copy()
        p_moved = (move[self.position_root] != 0) | (shift[self.position_root] != 0)
        market_value[p_moved] = np.where(
            self.is_future[p_moved], 0.0,
            shocked.mark[run.pos_series[p_moved]] * self.multiplier[p_moved])
        weights = chunk.quantity
        nlv = np.bincount(chunk.account, weights=weights * market_value[chunk.position],
                          minlength=n)
        spot_change = (shocked.spot - series.spot)[run.pos_series]
        variation = np.bincount(
            chunk.account, weights=np.where(self.is_future[chunk.position],
                                            chunk.units * spot_change[chunk.position], 0.0),
            minlength=n)
        requirement = self._requirement(shocked, moved, p_moved)
        return ShockedFigures(nlv, variation, requirement)

    def _requirement(self, shocked: SeriesTable, moved: np.ndarray, p_moved: np.ndarray
                     ) -> np.ndarray:
        """Every account's requirement at the shocked series: aggregated again only for the
        accounts holding a moved contract (the others keep the current market's, computed
        once), so a move of one underlying costs its holders' aggregation."""
        chunk = self.prepared.chunk
        if self._base_requirement is None or not moved.size:
            requirement = self._aggregate(shocked, moved, np.arange(self.n))
            if not moved.size:
                self._base_requirement = requirement
            return requirement.copy()
        holders = np.unique(chunk.account[p_moved[chunk.position]])
        requirement = self._base_requirement.copy()
        if holders.size:
            requirement[holders] = self._aggregate(shocked, moved, holders)
        return requirement

    def _aggregate(self, shocked: SeriesTable, moved: np.ndarray, accounts: np.ndarray
                   ) -> np.ndarray:
        """The requirement of ``accounts`` (sorted indexes) by the one aggregation
        (``pm_aggregation.requirements``) over their rows of the structure."""
        chunk = self.prepared.chunk
        st, rows = chunk.structure, self.rows
        everyone = accounts.shape[0] == self.n
        if everyone:
            picked, pg_picked, sub_rows = slice(None), slice(None), rows
        else:
            picked, pg_picked, sub_rows = _sub_rows(rows, accounts)
        S = st.S[picked] if not everyone else st.S
        # the minimum charge caps a long option's at its mark: the shocked mark
        entry_min = minimum_per_unit(shocked, S.data, S.indices)
        minimum = np.add.reduceat(entry_min, S.indptr[:-1]) if entry_min.size \
            else np.zeros(S.shape[0])
        minimum[np.diff(S.indptr) == 0] = 0.0
        grids = {}
        for name, (table, mult) in self.tables.items():
            pnl = self.base_pnl[name]
            if moved.size:
                pnl = pnl.copy()
                pnl[moved] = series_pnl(_take(shocked, moved), table, self.rate, mult)
            valid, pg_valid = self.valid[name]
            grids[name] = Grid(np.asarray(S @ pnl), valid[picked], pg_valid[pg_picked])
        return requirements(sub_rows, grids, minimum, self.request).requirement


def _sub_rows(rows: Rows, accounts: np.ndarray) -> tuple[np.ndarray, np.ndarray, Rows]:
    """The rows and product-group rows of ``accounts`` (sorted), renumbered 0..m-1."""
    counts = rows.account_ptr[accounts + 1] - rows.account_ptr[accounts]
    starts = rows.account_ptr[accounts]
    picked = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) \
        + np.arange(int(counts.sum()))
    renumber = np.full(rows.n_accounts, -1, np.int64)
    renumber[accounts] = np.arange(accounts.shape[0])
    pg_picked = np.flatnonzero(renumber[rows.pgrow_account] >= 0)
    sizes = np.diff(rows.pg_ptr)[pg_picked]
    sub = Rows(accounts.shape[0], renumber[rows.row_account[picked]],
               np.concatenate([[0], np.cumsum(sizes)]).astype(rows.pg_ptr.dtype),
               renumber[rows.pgrow_account[pg_picked]], rows.pgrow_offset[pg_picked],
               np.concatenate([[0], np.cumsum(counts)]).astype(rows.account_ptr.dtype),
               rows.listed_order[picked] if rows.listed_order is not None else None)
    return picked, pg_picked, sub


def _shifted(series: SeriesTable, moved: np.ndarray, move: np.ndarray, shift: np.ndarray,
             rate: float) -> SeriesTable:
    """The series table with the moved series at their shocked spot, vol and mark (options at
    their model value there; linear series marked at their spot)."""
    if not moved.size:
        return series
    spot, vol, mark = series.spot.copy(), series.vol.copy(), series.mark.copy()
    spot[moved] = series.spot[moved] * (1.0 + move[moved])
    option = moved[series.kind[moved] == OPTION]
    linear = moved[series.kind[moved] != OPTION]
    mark[linear] = spot[linear]
    if option.size:
        vol[option] = np.maximum(series.vol[option] + shift[option], 0.0)
        t = series.t[option]
        live = t > 0
        # at expiry the intrinsic value, whatever the vol (as ``series_pnl`` prices it)
        mark[option] = pricing.option_value(
            series.model[option], spot[option], series.strike[option], t, rate,
            series.div_yield[option], np.where(live, vol[option], 1.0), series.is_call[option])
    return replace(series, spot=spot, vol=vol, mark=mark)


def _take(series: SeriesTable, index: np.ndarray) -> SeriesTable:
    """The series at ``index`` (the batch covers no custom LP series)."""
    return SeriesTable(**{name: getattr(series, name)[index]
                          for name in series.__dataclass_fields__
                          if name not in ("custom_index", "custom_pnl")})
