"""The portfolio-margin aggregation over class-group P&L: the one definition of how class-group
risk arrays become a requirement, shared by the sweep's batch path (``batch.value_chunk``, many
accounts at once) and the pre-trade check (one account's cached arrays plus the ordered
contracts' vectors, ``HeldArrays``).

Input: rows (account, class group), sorted by account and contiguous by product group within
an account; per grid the rows' P&L at its points (padding masked by ``valid``); each row's
minimum charge. Then (series.py's rules, METHODOLOGY.md sections 1 and 2):

    product group P&L = losses of its class groups in full + offset x their gains;
    worst loss = max(0, -min over the grid's valid points); product-group requirement =
    max(worst loss, minimum); regulatory requirement = sum over the account's product groups;
    house: vol_shift (the worst of the regulatory and shifted-vol grids, floored at the
    minimum), concentration (the ``top_class_groups`` riskiest class groups at +/- top_move,
    the rest at +/- other_move), extended_stress (the widened grid); house requirement = the
    largest component; requirement = max(regulatory, house).

Nothing here prices: the grids' P&L comes in. ``grid_tables`` says which grids the house
request needs, and ``contract_vectors`` values contracts on them once (per unit of quantity),
so that a book's class-group arrays are sums of quantity x vector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from . import scenarios
from .parameters import ConcentrationParameters, ParameterSet
from .portfolio import Portfolio
from .series import ClassGroupTable, minimum_per_unit, series_pnl

REGULATORY = "regulatory"
CONCENTRATION_TOP, CONCENTRATION_OTHER = "concentration_top", "concentration_other"
EXTENDED = "extended"


def _enabled(value) -> bool:
    return value is not None and value is not False


@dataclass(frozen=True)
class HouseRequest:
    """The house components a requirement includes, with their settings resolved."""

    vol_multipliers: tuple[float, ...] | None = None
    concentration: ConcentrationParameters | None = None
    stress_range: float | None = None

    @classmethod
    def of(cls, request: dict | None, params: ParameterSet) -> HouseRequest:
        request, defaults = request or {}, params.house
        multipliers = concentration = stress_range = None
        if _enabled(request.get("vol_shift")):
            value = request["vol_shift"]
            shift = defaults.vol_shift if value is True else float(value)
            multipliers = tuple(scenarios.vol_multipliers(shift))
        if _enabled(request.get("concentration")):
            value = request["concentration"]
            concentration = defaults.concentration
            if isinstance(value, dict):
                concentration = replace(concentration, **value)
        if _enabled(request.get("stress_range")):
            value = request["stress_range"]
            stress_range = defaults.stress_range if value is True else float(value)
        return cls(multipliers, concentration, stress_range)


def vol_grid(k: int) -> str:
    return f"vol_shift_{k}"


def grid_tables(groups: ClassGroupTable, reg_grids: list[np.ndarray], cg_class: list[str],
                request: HouseRequest) -> dict[str, tuple[ClassGroupTable, float]]:
    """Every grid the requirement needs, as (class-group table, vol multiplier)."""
    def on_grids(grids: list[np.ndarray]) -> ClassGroupTable:
        table = scenarios.GridTable.build(grids)
        return groups.with_points(table.points, table.valid)

    def per_class(make: Callable[[np.ndarray, str], np.ndarray]) -> list[np.ndarray]:
        # Class groups of one product class share its regulatory grid (the same array): each
        # derived grid is made once per class, not once per class group (a chunk holds
        # thousands of class groups on a handful of classes).
        made: dict[tuple[int, str], np.ndarray] = {}
        out = []
        for reg, cls in zip(reg_grids, cg_class, strict=True):
            key = (id(reg), cls)
            if key not in made:
                made[key] = make(reg, cls)
            out.append(made[key])
        return out

    out = {REGULATORY: (groups, 1.0)}
    for k, mult in enumerate(request.vol_multipliers or ()):
        out[vol_grid(k)] = (groups, mult)
    if request.concentration is not None:
        settings = request.concentration
        top, other = float(settings.top_move), float(settings.other_move)
        out[CONCENTRATION_TOP] = (on_grids(per_class(
            lambda reg, _: scenarios.scaled_grid(reg, top))), 1.0)
        out[CONCENTRATION_OTHER] = (on_grids(per_class(
            lambda reg, _: scenarios.scaled_grid(reg, other))), 1.0)
    if request.stress_range is not None:
        stress = request.stress_range
        out[EXTENDED] = (on_grids(per_class(
            lambda reg, cls: scenarios.extended_grid(reg, stress, cls))), 1.0)
    return out


# --------------------------------------------------------------------------- aggregation


@dataclass
class Rows:
    """The (account, class group) rows and their product-group rows."""

    n_accounts: int
    row_account: np.ndarray  # (rows,) non-decreasing
    pg_ptr: np.ndarray  # product-group row k covers rows pg_ptr[k]:pg_ptr[k + 1]
    pgrow_account: np.ndarray
    pgrow_offset: np.ndarray  # the least offset of the product group's class groups held
    account_ptr: np.ndarray  # rows of account a: account_ptr[a]:account_ptr[a + 1]
    #: per row, its place in its account's own portfolio (concentration ties go to the first)
    listed_order: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.row_account.shape[0])


@dataclass
class Grid:
    """Class-group P&L on one grid: per row, and the grid's validity per row and per
    product-group row."""

    pnl: np.ndarray  # (rows, width)
    valid: np.ndarray  # (rows, width) bool
    pg_valid: np.ndarray  # (product-group rows, width) bool


@dataclass
class Losses:
    pg_worst: np.ndarray
    pg_minimum: np.ndarray
    account_requirement: np.ndarray


@dataclass
class Requirements:
    """Per account."""

    regulatory: np.ndarray
    minimum_charge: np.ndarray
    house: dict[str, np.ndarray] = field(default_factory=dict)
    house_requirement: np.ndarray | None = None
    requirement: np.ndarray | None = None


def _group_sum(rows: Rows, values: np.ndarray) -> np.ndarray:
    """Sum over each product-group row's class-group rows (rows are contiguous)."""
    if not rows.n_rows:
        return np.zeros((0, *values.shape[1:]))
    return np.add.reduceat(values, rows.pg_ptr[:-1], axis=0)


def group_losses(rows: Rows, grid: Grid, minimum: np.ndarray) -> Losses:
    """Each product group's worst loss and minimum on one grid, and each account's sum."""
    loss = _group_sum(rows, np.minimum(grid.pnl, 0.0))
    gain = _group_sum(rows, np.maximum(grid.pnl, 0.0))
    pg_pnl = loss + rows.pgrow_offset[:, None] * gain
    worst = np.maximum(-np.where(grid.pg_valid, pg_pnl, np.inf).min(axis=1), 0.0) \
        if pg_pnl.shape[0] else np.zeros(0)
    pg_minimum = _group_sum(rows, minimum)
    requirement = np.bincount(rows.pgrow_account, weights=np.maximum(worst, pg_minimum),
                              minlength=rows.n_accounts)
    return Losses(worst, pg_minimum, requirement)


def concentration_requirement(rows: Rows, regulatory: Grid, top: Grid, other: Grid,
                              minimum: np.ndarray, top_class_groups: int) -> np.ndarray:
    """Each account's ``top_class_groups`` riskiest class groups (worst regulatory loss) on the
    top grid, the rest on the other grid, ties to the class group listed first."""
    worst = np.maximum(-np.where(regulatory.valid, regulatory.pnl, np.inf).min(axis=1), 0.0) \
        if rows.n_rows else np.zeros(0)
    listed = rows.listed_order if rows.listed_order is not None else np.arange(rows.n_rows)
    order = np.lexsort((listed, -worst, rows.row_account))
    rank = np.empty(rows.n_rows, np.int64)
    rank[order] = np.arange(rows.n_rows) - rows.account_ptr[rows.row_account[order]]
    pnl = np.where((rank < int(top_class_groups))[:, None], top.pnl, other.pnl)
    return group_losses(rows, Grid(pnl, top.valid, top.pg_valid), minimum).account_requirement


def requirements(rows: Rows, grids: dict[str, Grid], minimum: np.ndarray,
                 request: HouseRequest) -> Requirements:
    """The regulatory requirement, the house components (``house.house_components``' order),
    the house requirement and the requirement of every account (module docstring)."""
    regulatory = group_losses(rows, grids[REGULATORY], minimum)
    out = Requirements(regulatory.account_requirement,
                       np.bincount(rows.pgrow_account, weights=regulatory.pg_minimum,
                                   minlength=rows.n_accounts))
    if request.vol_multipliers is not None:
        worst = regulatory.pg_worst.copy()
        for k in range(len(request.vol_multipliers)):
            worst = np.maximum(worst, group_losses(rows, grids[vol_grid(k)], minimum).pg_worst)
        out.house["vol_shift"] = np.bincount(
            rows.pgrow_account, weights=np.maximum(worst, regulatory.pg_minimum),
            minlength=rows.n_accounts)
    if request.concentration is not None:
        out.house["concentration"] = concentration_requirement(
            rows, grids[REGULATORY], grids[CONCENTRATION_TOP], grids[CONCENTRATION_OTHER],
            minimum, int(request.concentration.top_class_groups))
    if request.stress_range is not None:
        out.house["extended_stress"] = group_losses(rows, grids[EXTENDED],
                                                    minimum).account_requirement
    out.house_requirement = np.max(np.vstack(list(out.house.values())), axis=0) \
        if out.house else np.zeros(rows.n_accounts)
    out.requirement = np.maximum(out.regulatory, out.house_requirement)
    return out


# --------------------------------------------------------------------------- contract vectors


@dataclass
class ContractVectors:
    """Contracts valued once on every grid of the requirement, per unit of quantity (quantity
    x vector is a holding's class-group P&L), with what their minimum and value need."""

    symbols: list[str]
    class_group: list[str]
    product_group: list[str]
    product_class: list[str]
    offset: np.ndarray  # their class group's product-group offset
    multiplier: np.ndarray
    market_value: np.ndarray  # per unit of quantity
    mark: np.ndarray  # per unit of the underlying (before the multiplier)
    min_unit: np.ndarray  # per unit of the underlying
    cap_long: np.ndarray
    pnl: dict[str, np.ndarray]  # grid -> (n, width): P&L per unit of quantity
    valid: dict[str, np.ndarray]  # grid -> (n, width)

    def index(self) -> dict[str, int]:
        return {s: k for k, s in enumerate(self.symbols)}


def contract_vectors(universe: Portfolio, params: ParameterSet, valued, run) -> ContractVectors:
    """Each contract of ``universe`` (one position of quantity 1 per contract, valued: a
    ``Valuation`` and its ``PMRun``) on every grid its house request needs."""
    groups = run.groups
    request = HouseRequest.of(universe.house, params)
    tables = grid_tables(groups, run.reg_grids, run.cg_class, request)
    positions = universe.positions
    series_of = run.pos_series
    cg = run.series.class_group[series_of]
    multiplier = np.array([float(p.multiplier) for p in positions])
    pnl, valid = {}, {}
    for name, (table, mult) in tables.items():
        pnl[name] = multiplier[:, None] * series_pnl(run.series, table, float(universe.rate),
                                                     mult)[series_of]
        valid[name] = table.valid[cg]
    pg = [groups.pg_names[int(groups.product_group[c])] for c in cg]
    offset = np.array([params.portfolio_margin.offset_for(pg[k], run.cg_class[int(c)],
                                                          universe.offsets)
                       for k, c in enumerate(cg)])
    return ContractVectors(
        [p.id for p in positions], [groups.names[int(c)] for c in cg], pg,
        [run.cg_class[int(c)] for c in cg], offset, multiplier,
        np.asarray(valued.market_values, dtype=np.float64), run.series.mark[series_of],
        run.series.min_unit[series_of], run.series.cap_long[series_of], pnl, valid)


@dataclass
class HeldArrays:
    """One account's class-group arrays on every grid, built from its holdings' vectors, and
    what an order changes: ``moved`` adds quantity x the ordered contracts' vectors to them
    (no contract is priced again) and aggregates with ``requirements``."""

    vectors: ContractVectors  # the held contracts (and any other it was given)
    quantity: np.ndarray  # per contract of ``vectors``
    request: HouseRequest
    row_names: list[str] = field(default_factory=list)
    grids: dict[str, np.ndarray] = field(default_factory=dict)  # grid -> (rows, width)
    _layouts: dict = field(default_factory=dict, repr=False)  # (rows, live contracts) -> _Layout

    @classmethod
    def build(cls, vectors: ContractVectors, quantity: np.ndarray,
              request: HouseRequest) -> HeldArrays:
        held = cls(vectors, np.asarray(quantity, dtype=np.float64), request)
        rows = sorted({vectors.class_group[k] for k in np.flatnonzero(held.quantity)})
        at = {name: r for r, name in enumerate(rows)}
        row_of = np.array([at.get(c, -1) for c in vectors.class_group], np.int64)
        live = np.flatnonzero(held.quantity)
        for name, pnl in vectors.pnl.items():
            arrays = np.zeros((len(rows), pnl.shape[1]))
            np.add.at(arrays, row_of[live], held.quantity[live, None] * pnl[live])
            held.grids[name] = arrays
        held.row_names = rows
        return held

    def with_contracts(self, others: list[ContractVectors]) -> HeldArrays:
        """The same book with more contracts it may order (held at zero)."""
        parts = [self.vectors, *others]
        width = {name: max(v.pnl[name].shape[1] for v in parts) for name in self.grids}
        v = self.vectors
        vectors = ContractVectors(
            *(sum((getattr(o, f) for o in parts), []) for f in
              ("symbols", "class_group", "product_group", "product_class")),
            *(np.concatenate([getattr(o, f) for o in parts]) for f in
              ("offset", "multiplier", "market_value", "mark", "min_unit", "cap_long")),
            {n: np.vstack([_pad(o.pnl[n], w, 0.0) for o in parts]) for n, w in width.items()},
            {n: np.vstack([_pad(o.valid[n], w, False) for o in parts])
             for n, w in width.items()})
        quantity = np.concatenate([self.quantity, np.zeros(len(vectors.symbols)
                                                            - len(v.symbols))])
        return HeldArrays(vectors, quantity, self.request, self.row_names,
                          {n: _pad(a, width[n], 0.0) for n, a in self.grids.items()})

    def net_liquidation_value(self, quantity: np.ndarray) -> float:
        return float(quantity @ self.vectors.market_value)

    def moved(self, change: dict[int, float]) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                       list[str]]:
        """Quantities and class-group arrays after ``change`` (contract index -> quantity
        added): the cached arrays plus quantity x vector of the changed contracts only."""
        quantity = self.quantity.copy()
        names = list(self.row_names)
        grids = {name: arrays.copy() for name, arrays in self.grids.items()}
        v = self.vectors
        for k, dq in change.items():
            quantity[k] += dq
            group = v.class_group[k]
            if group not in names:
                names.append(group)
                for name in grids:
                    grids[name] = np.vstack([grids[name], np.zeros(grids[name].shape[1])])
            r = names.index(group)
            for name, arrays in grids.items():
                arrays[r] += dq * v.pnl[name][k]
        return quantity, grids, names

    def _layout(self, names: list[str], live: np.ndarray) -> _Layout:
        key = (tuple(names), live.tobytes())
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= 256:
                self._layouts.clear()
            layout = self._layouts[key] = _Layout.of(self.vectors, live, names)
        return layout

    def probes(self, change: dict[int, float], k: int, added: np.ndarray
               ) -> tuple[Requirements, np.ndarray]:
        """The book after ``change`` plus each of ``added`` of contract ``k`` (a search's
        candidates): requirements (one entry per candidate, all aggregated at once, as
        accounts of one batch) and net liquidation values."""
        quantity, grids, names = self.moved({**change, k: change.get(k, 0.0)})
        v, m = self.vectors, len(added)
        totals = quantity[k] + added
        out = Requirements(np.zeros(m), np.zeros(m), {}, np.zeros(m), np.zeros(m))
        for closing in (False, True):
            idx = np.flatnonzero((totals == 0) == closing)
            if not idx.size:
                continue
            pattern = quantity.copy()
            pattern[k] = 0.0 if closing else 1.0
            live = np.flatnonzero(pattern)
            layout = self._layout(names, live)
            n_rows, count = layout.rows.n_rows, idx.size
            at = [p for p, r in enumerate(layout.keep) if names[r] == v.class_group[k]]
            stacked = {}
            for name, arrays in grids.items():
                pnl = np.repeat(arrays[layout.keep][None], count, axis=0)
                if at:
                    pnl[:, at[0]] += added[idx, None] * v.pnl[name][k]
                valid, pg_valid = layout.valid[name]
                stacked[name] = Grid(pnl.reshape(count * n_rows, -1),
                                     np.tile(valid, (count, 1)), np.tile(pg_valid, (count, 1)))
            units = quantity[live] * v.multiplier[live]
            units[live == k] = 0.0  # contract k's minimum is each candidate's own
            minimum = np.repeat(np.bincount(
                layout.live_row, minimum_per_unit(_MinimumTable(v), units, live),
                minlength=n_rows)[None], count, axis=0)
            if at:
                minimum[:, at[0]] += minimum_per_unit(_MinimumTable(v), totals[idx]
                                                      * v.multiplier[k], np.full(count, k))
            found = requirements(_stacked(layout.rows, count), stacked, minimum.ravel(),
                                 self.request)
            for field_name in ("regulatory", "minimum_charge", "house_requirement",
                               "requirement"):
                getattr(out, field_name)[idx] = getattr(found, field_name)
            for name, values in found.house.items():
                out.house.setdefault(name, np.zeros(m))[idx] = values
        return out, self.net_liquidation_value(quantity) + added * v.market_value[k]

    def figures(self, quantity: np.ndarray, grids: dict[str, np.ndarray],
                names: list[str]) -> tuple[Requirements, float]:
        """The requirements and net liquidation value of the book at ``quantity``, whose
        class-group arrays are ``grids`` (rows ``names``)."""
        live = np.flatnonzero(quantity)
        layout = self._layout(names, live)
        # each row's minimum: its contracts' netted units at their minimum per unit
        units = quantity[live] * self.vectors.multiplier[live]
        minimum = np.bincount(layout.live_row, minimum_per_unit(_MinimumTable(self.vectors),
                                                                units, live),
                              minlength=layout.rows.n_rows)
        out = {name: Grid(arrays[layout.keep], *layout.valid[name])
               for name, arrays in grids.items()}
        return requirements(layout.rows, out, minimum, self.request), \
            self.net_liquidation_value(quantity)


@dataclass
class _Layout:
    """The rows of a book with given live contracts: the class groups held, in the order
    the account's own portfolio lists them (product groups by first contract by symbol, class
    groups within them likewise), the offsets and validity of each."""

    keep: list[int]  # the rows of ``names`` held, in order
    rows: Rows
    valid: dict[str, tuple[np.ndarray, np.ndarray]]  # grid -> (per row, per product-group row)
    live_row: np.ndarray  # per live contract, its row

    @classmethod
    def of(cls, v: ContractVectors, live: np.ndarray, names: list[str]) -> _Layout:
        held_groups = {v.class_group[k] for k in live}
        # rows whose contracts all closed are gone, as from a book without them
        keep = [r for r, name in enumerate(names) if name in held_groups]
        first: dict[str, int] = {}  # class group -> its first contract by symbol
        pg_first: dict[str, int] = {}
        for k in sorted(live.tolist(), key=lambda k: v.symbols[k]):
            first.setdefault(v.class_group[k], k)
            pg_first.setdefault(v.product_group[k], len(pg_first))
        rank = {s: i for i, s in enumerate(sorted(v.symbols[k] for k in live))}
        keep.sort(key=lambda r: (pg_first[v.product_group[first[names[r]]]],
                                 rank[v.symbols[first[names[r]]]]))
        row_contract = np.array([first[names[r]] for r in keep], np.int64)
        pg = [v.product_group[k] for k in row_contract]
        starts = [r for r in range(len(pg)) if r == 0 or pg[r] != pg[r - 1]]
        pg_ptr = np.array([*starts, len(pg)], np.int64)
        pgrow_offset = np.minimum.reduceat(v.offset[row_contract], pg_ptr[:-1]) \
            if len(pg) else np.zeros(0)
        listed = np.array([pg_first[p] * (1 << 31) + rank[v.symbols[first[names[r]]]]
                           for p, r in zip(pg, keep, strict=True)], np.int64)
        rows = Rows(1, np.zeros(len(keep), np.int64), pg_ptr,
                    np.zeros(len(starts), np.int64), pgrow_offset,
                    np.array([0, len(keep)], np.int64), listed)
        row_at = {names[r]: i for i, r in enumerate(keep)}
        valid = {name: (grid[row_contract], grid[row_contract][pg_ptr[:-1]])
                 for name, grid in v.valid.items()}
        return cls(keep, rows, valid,
                   np.array([row_at[v.class_group[k]] for k in live], np.int64))


def _stacked(rows: Rows, count: int) -> Rows:
    """``count`` copies of one account's rows, as ``count`` accounts."""
    n_rows, n_pg = rows.n_rows, len(rows.pg_ptr) - 1
    starts = (rows.pg_ptr[:-1][None] + n_rows * np.arange(count)[:, None]).ravel()
    return Rows(count, np.repeat(np.arange(count), n_rows), np.append(starts, count * n_rows),
                np.repeat(np.arange(count), n_pg), np.tile(rows.pgrow_offset, count),
                np.arange(count + 1) * n_rows,
                np.tile(rows.listed_order, count) if rows.listed_order is not None else None)


def _pad(values: np.ndarray, width: int, fill) -> np.ndarray:
    if values.shape[1] == width:
        return values
    return np.pad(values, ((0, 0), (0, width - values.shape[1])), constant_values=fill)


@dataclass
class _MinimumTable:
    """What ``series.minimum_per_unit`` reads of a series table, per contract."""

    vectors: ContractVectors

    @property
    def min_unit(self) -> np.ndarray:
        return self.vectors.min_unit

    @property
    def cap_long(self) -> np.ndarray:
        return self.vectors.cap_long

    @property
    def mark(self) -> np.ndarray:
        return self.vectors.mark
