"""The portfolio-margin block of many accounts at once: what the live sweep runs per chunk.

A chunk's accounts share one market state, so every contract any of them holds is valued once:
the chunk's *universe* is a `Portfolio` with one position (quantity 1) per contract held,
valued by ``valuation.value_positions`` and turned into one series table by the same
``PMRun`` the calculator uses for one account. The chunk's holdings then form one sparse book
(``series.build_structure``) and each grid the requirement needs (the regulatory one, the
house volatility shifts, the concentration overlay, the extended stress) is one
``series_pnl`` pass over the chunk's series plus one sparse product, instead of one of each per
account. What comes out per account is what ``portfolio_margin.calculate_block`` gives for the
account's own portfolio, the same numbers (tests/engine/test_batch.py holds them equal on random
books, tests/margin/test_batch_sweep.py on the demo book):

- net liquidation value, regulatory requirement, minimum charge, each house component, the house
  requirement and the requirement (the larger of regulatory and house);
- each held class group's P&L at its regulatory points (the risk arrays a snapshot keeps).

Where one account's figure would differ from the chunk's shared structure the account is left to
the calculator (``valued`` is False and the caller values it alone): contracts of kinds this
path does not cover (LP positions, perpetuals, tokens, futures options: their value depends on
the rest of the account's book or on collateral rules), class groups whose contracts are of more
than one product class (an index future's grid follows its index only when held with it,
METHODOLOGY.md section 1), house settings other than the snapshot components, and contracts
the valuation refuses (each such account gets the calculator's own error).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from hashlib import blake2b

import numpy as np

from .errors import POSITION_FIELD, EngineInputError
from .parameters import ParameterSet
from .pm_aggregation import REGULATORY, Grid, HouseRequest, Rows, grid_tables, requirements
from .portfolio import Portfolio
from .portfolio_margin import PMRun
from .series import (
    Book,
    ClassGroupTable,
    SeriesTable,
    Structure,
    build_structure,
    minimum_per_unit,
    series_pnl,
)
from .valuation import Valuation, value_positions

#: position kinds whose per-unit value and P&L depend on nothing else in the account
BATCH_KINDS = frozenset({"stock", "option", "future"})
#: house settings the batch applies (``SnapshotComponents``); any other is left to the calculator
BATCH_HOUSE = frozenset({"vol_shift", "concentration", "stress_range"})


@dataclass(frozen=True)
class ChunkBook:
    """The holdings of a chunk's accounts on its universe (one row per holding)."""

    universe: Portfolio  # one position per contract held, quantity 1, the chunk's market state
    n_accounts: int
    account: np.ndarray  # int64: 0..n_accounts-1
    contract: np.ndarray  # int64: index into universe.positions
    quantity: np.ndarray  # float64


@dataclass
class ChunkFigures:
    """Per account (arrays of n_accounts; meaningful where ``valued``)."""

    valued: np.ndarray  # bool: valued here; the others are left to the calculator
    refused: dict[int, EngineInputError]  # contract index -> why the valuation refused it
    net_liquidation_value: np.ndarray
    regulatory: np.ndarray
    minimum_charge: np.ndarray
    house: dict[str, np.ndarray] = field(default_factory=dict)  # component -> requirement
    house_requirement: np.ndarray | None = None
    requirement: np.ndarray | None = None
    #: per account: class group -> P&L at its regulatory points
    risk_arrays: list[dict[str, np.ndarray]] = field(default_factory=list)

    def components(self, account: int) -> dict[str, float]:
        return {name: float(values[account]) for name, values in self.house.items()}


@dataclass
class UniverseRun:
    """A universe valued whole (every contract it covers), kept for the next chunk valued on
    the same universe: the sweep keeps one universe per worker process across the chunks of a
    market state (``margin.valuing.UniverseCache``), so a contract is valued, its series built
    and priced on each grid once per process instead of once per chunk holding it."""

    universe: Portfolio
    params: ParameterSet
    covered: np.ndarray  # bool per universe contract: valued in ``run``
    refused: dict[int, EngineInputError]
    index: np.ndarray  # the universe contracts of ``run``'s positions
    valued: Valuation | None
    run: PMRun | None
    #: grid name -> the series P&L on it (``_Chunk.cg_pnl``), filled as chunks ask
    pnl: dict[str, np.ndarray] = field(default_factory=dict)
    #: grid name -> the class-group table and vol multiplier ``pnl`` was priced on (what
    #: ``reprice_universe`` prices its new rows on)
    grids: dict[str, tuple[ClassGroupTable, float]] = field(default_factory=dict)


def value_universe(universe: Portfolio, params: ParameterSet) -> UniverseRun:
    """Value every contract of ``universe`` the batch covers once (``value_chunk`` with
    ``whole``); a contract the valuation refuses is left out, as ``value_chunk`` leaves it."""
    covered, refused, index, valued, run = _value_covered(universe, params, lambda c: c)
    return UniverseRun(universe, params, covered, refused, index, valued, run)


#: the series fields a move of the market changes (the others are the contract's terms)
_MARKET_FIELDS = ("model", "spot", "t", "div_yield", "vol", "mark", "min_unit")
#: the series fields that must be the same after a move for the run's structure to stand
_TERMS_FIELDS = ("kind", "strike", "is_call", "cap_long")
#: the valuation's per-position arrays
_VALUED_FIELDS = ("marks", "vols", "models", "spots", "market_values")


def reprice_universe(whole: UniverseRun, part: UniverseRun, at: np.ndarray
                     ) -> UniverseRun | None:
    """``whole`` with some of its contracts valued again at a new market state: ``part`` is
    ``value_universe`` of a universe of just those contracts (its positions are ``whole``'s at
    ``at``, in that order), e.g. every contract resting on the underlyings a tick moved.

    The run's structure (which contracts, their series, class and product groups) rests on
    the contracts' terms, not on prices: only the moved contracts' values, their series'
    market fields and their rows of each grid's series P&L change, and those are computed for
    the part alone (``series_pnl`` of its series on each grid priced so far). What comes out
    is what ``value_universe`` of the whole universe at the new state gives (each contract's
    value and series rest only on itself and what it is valued on, all in the part). None
    when the part does not fit that structure (a contract refused or covered where it was not
    before, or the other way, a series shared with a contract outside the part, terms that
    differ): the caller values the universe again whole. ``whole`` is left as it was (its
    arrays are shared with what other caches hold)."""
    run, part_run = whole.run, part.run
    n_part = len(part.universe.positions)
    if run is None or part.params != whole.params or at.shape[0] != n_part:
        return None
    # the same contracts covered and refused (a stale mark refused before and after: its
    # holders stay the calculator's); the refusals' messages are the part's
    refused = {int(at[k]): error for k, error in part.refused.items()}
    if refused.keys() != {i for i in at.tolist() if i in whole.refused} \
            or not np.array_equal(part.covered, whole.covered[at]):
        return None
    refused = {**{i: e for i, e in whole.refused.items() if i not in refused}, **refused}
    moved = at[part.covered]  # universe positions valued, in the part's run order
    if moved.size == 0:
        return replace(whole, universe=_with_positions(whole.universe, part.universe, at),
                       refused=refused)
    if part_run is None:
        return None
    where = np.searchsorted(whole.index, moved)  # their positions in the whole's run
    if not np.array_equal(whole.index[np.minimum(where, whole.index.shape[0] - 1)], moved):
        return None
    rows, part_rows = run.pos_series[where], part_run.pos_series
    # one series of the whole per series of the part, used by none of the whole's other
    # contracts, of the same terms and class group
    pairs = np.unique(np.column_stack([rows, part_rows]), axis=0)
    if np.unique(pairs[:, 0]).shape[0] != pairs.shape[0] \
            or np.unique(pairs[:, 1]).shape[0] != pairs.shape[0] \
            or np.isin(run.pos_series, pairs[:, 0]).sum() != where.shape[0]:
        return None
    series, part_series = run.series, part_run.series
    target, source = pairs[:, 0], pairs[:, 1]
    if part_series.custom_index.size or any(
            not np.array_equal(getattr(series, f)[target], getattr(part_series, f)[source])
            for f in _TERMS_FIELDS):
        return None
    names, part_names = run.groups.names, part_run.groups.names
    if any(names[int(a)] != part_names[int(b)] for a, b in zip(
            series.class_group[target].tolist(), part_series.class_group[source].tolist(),
            strict=True)):
        return None
    new_series = SeriesTable(**{f: getattr(series, f) for f in series.__dataclass_fields__})
    for f in _MARKET_FIELDS:
        column = getattr(series, f).copy()
        column[target] = getattr(part_series, f)[source]
        setattr(new_series, f, column)
    valued = whole.valued
    new_valued = replace(valued, rows=list(valued.rows))
    for f in _VALUED_FIELDS:
        column = getattr(valued, f).copy()
        column[where] = getattr(part.valued, f)
        setattr(new_valued, f, column)
    for k, r in enumerate(where.tolist()):
        new_valued.rows[r] = part.valued.rows[k]
    new_valued.net_liquidation_value = float(new_valued.market_values.sum())
    universe = _with_positions(whole.universe, part.universe, at)
    new_run = copy.copy(run)
    new_run.series, new_run.valuation = new_series, new_valued
    new_run.portfolio = replace(
        run.portfolio, positions=tuple(universe.positions[i] for i in whole.index.tolist()),
        underlyings={s: universe.underlyings[s] for s in run.portfolio.underlyings})
    rate = float(run.portfolio.rate)
    pnl: dict[str, np.ndarray] = {}
    for name, priced in whole.pnl.items():
        groups, vol_mult = whole.grids[name]
        priced = priced.copy()
        priced[target] = series_pnl(_take(new_series, target), groups, rate, vol_mult)
        pnl[name] = priced
    return replace(whole, universe=universe, refused=refused, valued=new_valued, run=new_run,
                   pnl=pnl, grids=dict(whole.grids))


def _with_positions(universe: Portfolio, part: Portfolio, at: np.ndarray) -> Portfolio:
    """``universe`` with its positions at ``at`` taken from ``part`` (each keeping its place
    in the universe: an error names a contract by it) and the part's underlyings."""
    positions = list(universe.positions)
    for k, i in enumerate(at.tolist()):
        positions[i] = replace(part.positions[k], index=i)
    return replace(universe, positions=tuple(positions),
                   underlyings={**universe.underlyings, **part.underlyings})


def value_chunk(book: ChunkBook, params: ParameterSet,
                whole: UniverseRun | None = None) -> ChunkFigures:
    """The portfolio-margin figures of every account the batch covers (module docstring).
    With ``whole`` (``value_universe`` of ``book.universe`` and ``params``) the contracts are
    not valued again: the accounts are aggregated on its run, the same numbers (an account's
    figures rest only on its own contracts' series; the universe's others add rows no
    account of the chunk holds)."""
    prepared = prepare_chunk(book, params, whole)
    n = book.n_accounts
    figures = ChunkFigures(prepared.held, prepared.refused, np.zeros(n), np.zeros(n),
                           np.zeros(n))
    if prepared.chunk is None:
        return _empty(figures, n)
    prepared.chunk.fill(figures)
    return figures


@dataclass(frozen=True)
class PreparedChunk:
    """A chunk's book on its valued universe, before any grid is priced: which accounts the
    batch covers (``held``), the contracts the valuation refused, and the chunk's structure
    (None when no account is covered). The firm-wide simulator (``margin.engine.shock``)
    revalues it at shifted prices without building it again."""

    held: np.ndarray
    refused: dict[int, EngineInputError]
    chunk: _Chunk | None


def prepare_chunk(book: ChunkBook, params: ParameterSet,
                  whole: UniverseRun | None = None) -> PreparedChunk:
    """The universe valued once and the chunk's structure built (``value_chunk``'s first half):
    contracts the batch does not cover, or the valuation refuses, leave their holders to the
    calculator."""
    universe = book.universe
    if whole is not None:
        if whole.universe is not universe or whole.params != params:
            raise ValueError("the universe run was valued for another universe or parameters")
        held = _accounts_valued(book, whole.covered)
        if whole.run is None or not held.any():
            return PreparedChunk(held, dict(whole.refused), None)
        return PreparedChunk(held, dict(whole.refused),
                             _Chunk(book, held, whole.index, whole.run, whole.valued, whole.pnl,
                                    whole.grids))
    def holders_contracts(covered: np.ndarray) -> np.ndarray:
        keep = np.zeros(len(universe.positions), dtype=bool)
        keep[book.contract[_accounts_valued(book, covered)[book.account]]] = True
        return keep & covered

    covered, refused, index, valued, run = _value_covered(universe, params, holders_contracts)
    held = _accounts_valued(book, covered)
    chunk = _Chunk(book, held, index, run, valued) if run is not None else None
    return PreparedChunk(held, refused, chunk)


def _value_covered(universe: Portfolio, params: ParameterSet,
                   select: Callable[[np.ndarray], np.ndarray]
                   ) -> tuple[np.ndarray, dict[int, EngineInputError], np.ndarray,
                              Valuation | None, PMRun | None]:
    """Value the contracts ``select(covered)`` picks among those the batch covers. A contract
    the valuation refuses is left out and the rest valued again: the accounts holding it get
    the calculator's own refusal (the same error, in their own terms). Returns the covered
    mask, the refusals, the valued contracts' universe indexes, the valuation and its run."""
    covered = _covered_contracts(universe)
    if set(universe.house or {}) - BATCH_HOUSE:
        covered[:] = False
    refused: dict[int, EngineInputError] = {}
    while True:
        sub, index = _subset(universe, select(covered))
        try:
            valued = value_positions(sub, params, need_model=True, greeks=False)
            run = PMRun(sub, params, valued) if sub.positions else None
        except EngineInputError as exc:
            match = POSITION_FIELD.match(exc.field or "")
            if match is None:
                covered[:] = False
                continue
            # with every other mark refused for the same reason, found in one pass: one at a
            # time, a universe of stale marks (quotes older than a move, a day rolled over)
            # was valued again once per mark (300 marks: 100 s for 50,000 contracts)
            for i, error in {int(match.group(1)): exc, **_refused_marks(sub, params)}.items():
                refused[i] = error
                covered[i] = False
            continue
        return covered, refused, index, valued, run


#: how ``value_positions`` without the model reports a mark it cannot value at
_UNUSABLE_MARK = "; implied_vol is null"


def _refused_marks(portfolio: Portfolio, params: ParameterSet) -> dict[int, EngineInputError]:
    """Every option of ``portfolio`` whose mark the valuation refuses (outside its no-arbitrage
    bounds, or on one: no implied vol), by universe index: ``value_positions`` without the
    model values past them and names each in a warning. Empty when it refuses anything else."""
    try:
        valued = value_positions(portfolio, params, need_model=False, greeks=False)
    except EngineInputError:
        return {}
    found: dict[int, EngineInputError] = {}
    for warning in valued.warnings:
        field, _, message = warning.partition(": ")
        match = POSITION_FIELD.match(field)
        if match is not None and message.endswith(_UNUSABLE_MARK):
            found[int(match.group(1))] = EngineInputError(
                field, "outside_no_arbitrage_bounds", message.removesuffix(_UNUSABLE_MARK))
    return found


def _empty(figures: ChunkFigures, n: int) -> ChunkFigures:
    figures.house_requirement = np.zeros(n)
    figures.requirement = np.zeros(n)
    figures.risk_arrays = [{} for _ in range(n)]
    return figures


def _covered_contracts(universe: Portfolio) -> np.ndarray:
    """Contracts the batch values: kinds it covers, in class groups of one product class."""
    positions = universe.positions
    covered = np.array([p.kind in BATCH_KINDS for p in positions], dtype=bool)
    classes: dict[str, set[str]] = {}
    for p in positions:
        und = universe.underlyings.get(p.root) if p.kind != "uniswap_v3_lp" else None
        if und is not None:
            classes.setdefault(und.class_group, set()).add(und.product_class)
    for i, p in enumerate(positions):
        if covered[i] and len(classes[universe.underlyings[p.root].class_group]) > 1:
            covered[i] = False
    return covered


def _accounts_valued(book: ChunkBook, covered: np.ndarray) -> np.ndarray:
    """Accounts all of whose holdings are covered."""
    uncovered = np.zeros(book.n_accounts, dtype=bool)
    uncovered[book.account[~covered[book.contract]]] = True
    return ~uncovered


def _subset(universe: Portfolio, keep: np.ndarray) -> tuple[Portfolio, np.ndarray]:
    """The universe reduced to the kept contracts, and their indexes. Each position keeps its
    ``index`` in the universe (only error messages read it: a refusal names the contract)."""
    index = np.flatnonzero(keep)
    positions = tuple(universe.positions[i] for i in index)
    roots = {p.root for p in positions}
    underlyings = {s: u for s, u in universe.underlyings.items() if s in roots}
    return replace(universe, positions=positions, underlyings=underlyings), index


class _Chunk:
    """The chunk's book on the universe's series: one structure, one pass per grid."""

    def __init__(self, book: ChunkBook, held: np.ndarray, index: np.ndarray, run: PMRun,
                 valued: Valuation, pnl: dict[str, np.ndarray] | None = None,
                 grids: dict[str, tuple[ClassGroupTable, float]] | None = None) -> None:
        self.run, self.n = run, book.n_accounts
        self.pnl = pnl  # a universe run's series P&L per grid (``UniverseRun.pnl``)
        self.grids = grids if grids is not None else {}  # and what each was priced on
        position_of = np.full(len(book.universe.positions), -1, np.int64)
        position_of[index] = np.arange(index.shape[0])
        rows = held[book.account]
        self.account = book.account[rows]
        self.position = position_of[book.contract[rows]]  # position of the reduced universe
        self.quantity = book.quantity[rows]
        multiplier = np.array([float(p.multiplier) for p in run.portfolio.positions])
        units = self.quantity * multiplier[self.position]
        self.units = units
        self.market_value = valued.market_values  # per unit of quantity (quantity 1)
        self.structure: Structure = build_structure(
            Book(self.n, self.account, run.pos_series[self.position], units),
            run.series.class_group, run.groups.product_group)
        st = self.structure
        groups = run.groups
        # the offset of each (account, product group): its held class groups' least offset
        cg_offset = np.array([
            run.params.portfolio_margin.offset_for(groups.pg_names[int(groups.product_group[c])],
                                                   run.cg_class[c], run.portfolio.offsets)
            for c in range(len(groups.names))])
        self.pgrow_offset = np.minimum.reduceat(cg_offset[st.row_cg], st.pg_ptr[:-1]) \
            if st.n_rows else np.zeros(0)
        S = st.S
        entry_min = minimum_per_unit(run.series, S.data, S.indices)
        self.cg_minimum = np.add.reduceat(entry_min, S.indptr[:-1]) if entry_min.size \
            else np.zeros(st.n_rows)
        self.cg_minimum[np.diff(S.indptr) == 0] = 0.0

    # -- passes ------------------------------------------------------------------------------

    def cg_pnl(self, groups: ClassGroupTable, vol_mult: float = 1.0,
               name: str | None = None) -> np.ndarray:
        rate = float(self.run.portfolio.rate)
        if self.pnl is None or name is None:
            pnl = SERIES_PNL.get(self.run.series, groups, rate, vol_mult)
        else:
            # a universe run: its whole series priced once per grid (the grid of a name is the
            # same for every chunk on the run: ``grid_tables`` of the run's groups and house)
            pnl = self.pnl.get(name)
            if pnl is None:
                pnl = self.pnl[name] = series_pnl(self.run.series, groups, rate, vol_mult)
                self.grids[name] = (groups, vol_mult)
                # and for the chunks valued on their own contracts (a tick's) meanwhile
                SERIES_PNL.put(self.run.series, groups, rate, vol_mult, pnl)
        return np.asarray(self.structure.S @ pnl)

    def grid(self, groups: ClassGroupTable, vol_mult: float = 1.0,
             name: str | None = None) -> Grid:
        st = self.structure
        return Grid(self.cg_pnl(groups, vol_mult, name), groups.valid[st.row_cg],
                    groups.pg_valid()[st.pgrow_pg])

    # -- figures -----------------------------------------------------------------------------

    def fill(self, figures: ChunkFigures) -> None:
        """The requirements by the one aggregation (``pm_aggregation.requirements``) over
        the chunk's class-group P&L on every grid its house request needs."""
        st, run = self.structure, self.run
        figures.net_liquidation_value = np.bincount(
            self.account, weights=self.quantity * self.market_value[self.position],
            minlength=self.n)
        request = HouseRequest.of(run.portfolio.house, run.params)
        grids = {name: self.grid(table, mult, name) for name, (table, mult)
                 in grid_tables(run.groups, run.reg_grids, run.cg_class, request).items()}
        rows = Rows(self.n, st.row_account, st.pg_ptr, st.pgrow_account, self.pgrow_offset,
                    st.account_ptr,
                    self._listed_order() if request.concentration is not None else None)
        found = requirements(rows, grids, self.cg_minimum, request)
        figures.regulatory, figures.minimum_charge = found.regulatory, found.minimum_charge
        figures.house, figures.house_requirement = found.house, found.house_requirement
        figures.requirement = found.requirement
        cg_pnl, valid = grids[REGULATORY].pnl, grids[REGULATORY].valid
        arrays: list[dict[str, np.ndarray]] = [{} for _ in range(self.n)]
        for r in range(st.n_rows):
            arrays[int(st.row_account[r])][run.groups.names[int(st.row_cg[r])]] = \
                cg_pnl[r][valid[r]]
        figures.risk_arrays = arrays

    def _listed_order(self) -> np.ndarray:
        """Per (account, class group) row, its place in the account's own portfolio's order
        (``PMRun``: product groups by first appearance, class groups by first appearance
        within them, positions sorted by symbol as the universe is)."""
        st = self.structure
        row_of_position = np.repeat(np.arange(st.n_rows), np.diff(st.S.indptr))
        # a row's first position: the least universe index among the account's holdings in it
        series_first = np.full(len(self.run.series), np.iinfo(np.int64).max)
        np.minimum.at(series_first, self.run.pos_series, np.arange(self.run.pos_series.shape[0]))
        cg_first = np.full(st.n_rows, np.iinfo(np.int64).max)
        np.minimum.at(cg_first, row_of_position, series_first[st.S.indices])
        pg_first = np.minimum.reduceat(cg_first, st.pg_ptr[:-1]) if st.n_rows \
            else np.zeros(0, np.int64)
        pg_of_row = np.repeat(np.arange(st.pg_ptr.shape[0] - 1), np.diff(st.pg_ptr))
        return pg_first[pg_of_row] * (np.iinfo(np.int32).max + 1) + cg_first


class SeriesPnlCache:
    """Series P&L rows kept across chunks: every chunk of an end-of-day run (and of a tick's
    sweep) values the same contracts in the same market state, and pricing them on every grid
    is most of a chunk's engine time. A row is found by everything ``series_pnl`` reads for it
    (terms, market, grid, rate, vol multiplier), so a hit is the row it would compute; bounded,
    cleared whole when full."""

    def __init__(self, max_rows: int = 400_000) -> None:
        self.max_rows = max_rows
        self.rows: dict[bytes, np.ndarray] = {}
        self.hits = self.misses = 0
        #: the series table last keyed and its rows' own digests (``_series_keys``)
        self._last_series: tuple[SeriesTable, list[bytes]] | None = None

    def get(self, series: SeriesTable, groups: ClassGroupTable, rate: float,
            vol_mult: float = 1.0) -> np.ndarray:
        if series.custom_index.size:  # LP rows carry their own P&L: not kept here
            return series_pnl(series, groups, rate, vol_mult)
        keys = self._keys(series, groups, rate, vol_mult)
        found = [self.rows.get(key) for key in keys]
        missing = np.array([k for k, row in enumerate(found) if row is None], np.int64)
        self.hits += len(keys) - missing.size
        self.misses += missing.size
        out = np.empty((len(series), groups.width))
        if missing.size:
            computed = series_pnl(_take(series, missing), groups, rate, vol_mult)
            if len(self.rows) + missing.size > self.max_rows:
                self.rows.clear()
            for k, row in zip(missing.tolist(), computed, strict=True):
                self.rows[keys[k]] = found[k] = row
        for k, row in enumerate(found):
            out[k] = row
        return out

    def put(self, series: SeriesTable, groups: ClassGroupTable, rate: float, vol_mult: float,
            pnl: np.ndarray) -> None:
        """Keep rows ``series_pnl`` computed elsewhere (a universe run's, ``UniverseRun``)."""
        if series.custom_index.size:
            return
        keys = self._keys(series, groups, rate, vol_mult)
        if len(self.rows) + len(keys) > self.max_rows:
            self.rows.clear()
        self.rows.update(zip(keys, pnl, strict=True))

    def _keys(self, series: SeriesTable, groups: ClassGroupTable, rate: float,
              vol_mult: float) -> list[bytes]:
        """Each row's key: a 16-byte digest of the series' own fields (terms and market)
        joined to one of its class group's grid, rate and vol multiplier. The series part is
        digested once per series table, not once per grid asked of it (a chunk asks six), the
        grid part once per class group."""
        grid = np.column_stack([groups.points, groups.valid, np.full(len(groups.points), rate),
                                np.full(len(groups.points), vol_mult)]).astype(np.float64)
        grid_keys = [blake2b(row.tobytes(), digest_size=16).digest() for row in grid]
        return [own + grid_keys[cg] for own, cg in zip(
            self._series_keys(series), series.class_group.tolist(), strict=True)]

    def _series_keys(self, series: SeriesTable) -> list[bytes]:
        kept = self._last_series
        if kept is not None and kept[0] is series:
            return kept[1]
        table = np.column_stack([
            series.kind, series.model, series.spot, series.strike, series.t, series.div_yield,
            series.vol, series.is_call, series.mark]).astype(np.float64)
        # 16-byte digests, not the rows' bytes: the process keeps up to ``max_rows`` keys,
        # 300,000 after an end-of-day run at 100k accounts (50,000 contracts on 6 grids)
        keys = [blake2b(row.tobytes(), digest_size=16).digest() for row in table]
        self._last_series = (series, keys)  # the table itself kept: its id is not reused
        return keys


def _take(series: SeriesTable, index: np.ndarray) -> SeriesTable:
    """The series at ``index`` (none custom)."""
    return SeriesTable(**{name: getattr(series, name)[index]
                          for name in series.__dataclass_fields__
                          if name not in ("custom_index", "custom_pnl")})


#: the process's cache (a worker values chunk after chunk of one market state)
SERIES_PNL = SeriesPnlCache()

