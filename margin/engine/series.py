"""The batch structure of portfolio margin: series risk arrays and sparse account aggregation.

A *series* is one distinct contract in one market state (an option series, a stock, a future,
a crypto token, a perpetual; an LP position is a "custom" series carrying its own P&L). Its
theoretical P&L per unit at every valuation point of its class group's grid is computed once
per market state (``series_pnl``: linear series by one multiplication, every option series by
one vectorised ``pricing.option_value`` call with the model codes as an array, so each model's
kernel runs once over all of its series x points). Accounts then aggregate:

    rows = (account, class group) pairs, sorted by account then class group;
    S    = rows x series sparse matrix of units (quantity x multiplier, netted per contract);
    cg   = S @ pnl_series                         (class-group P&L per point, 100 % netting);
    pg   = G @ min(cg, 0) + offset * G @ max(cg, 0) (product group: losses in full, gains x offset);
    worst loss = max(0, -min over the points); minimum = sum of |units| x minimum per unit
    (a long option's capped at its mark); product-group requirement = max(worst loss, minimum);
    account requirement = sum over its product groups.

Class groups are numbered so that those of one product group are contiguous; rows sorted by
(account, class group) are therefore also sorted by (account, product group), which makes ``G``
a plain index-pointer matrix and lets the numba kernel (``aggregate_numba``) walk each account
once, in parallel, without materialising the rows x points arrays. ``aggregate_numpy`` (scipy)
is the reference the kernel is tested against; ``aggregate`` picks one.

Nothing here knows about requests: ``portfolio_margin`` builds these arrays from a ``Portfolio``
(a book of one account) and ``margin.bench`` from a synthetic book of 100,000 accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

LINEAR = 0  # P&L per unit = spot x move (stock, ETF, future, crypto, perpetual)
OPTION = 1  # P&L per unit = model value at the moved spot - mark
CUSTOM = 2  # P&L per unit given (Uniswap v3 LP positions, one unit each)

TIE_RTOL = 1e-9  # values within this (relative, at least 1e-9 absolute) tie: first one wins


@dataclass
class SeriesTable:
    """Distinct contracts of one market state (all arrays of length n)."""

    kind: np.ndarray  # int8: LINEAR / OPTION / CUSTOM
    model: np.ndarray  # int8: pricing model code (options), -1 otherwise
    class_group: np.ndarray  # int64: index into ClassGroupTable
    spot: np.ndarray  # float64: the price the grid moves (underlying / future price)
    strike: np.ndarray  # float64
    t: np.ndarray  # float64: years to expiry
    div_yield: np.ndarray  # float64
    vol: np.ndarray  # float64: implied vol (each option keeps its own at every point)
    is_call: np.ndarray  # bool
    mark: np.ndarray  # float64: current mark per unit (the P&L base of an option)
    min_unit: np.ndarray  # float64: minimum charge per unit (0 for non-contracts)
    cap_long: np.ndarray  # bool: a long position's minimum is capped at its mark (options)
    custom_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    custom_pnl: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def with_custom_pnl(self, custom_pnl: np.ndarray) -> SeriesTable:
        """The same series with other custom P&L rows (house grids for LP positions)."""
        out = SeriesTable(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        out.custom_pnl = custom_pnl
        return out


@dataclass
class ClassGroupTable:
    """Class groups (numbered so that each product group's are contiguous) and product groups."""

    names: list[str]
    product_class: list[str]
    product_group: np.ndarray  # int64 per class group, non-decreasing
    points: np.ndarray  # (n_cg, width) valuation points (padding 0)
    valid: np.ndarray  # (n_cg, width) bool
    pg_names: list[str]
    pg_offset: np.ndarray  # float64 per product group

    def __post_init__(self) -> None:
        if np.any(np.diff(self.product_group) < 0):
            raise ValueError("class groups must be numbered contiguously by product group")

    @property
    def width(self) -> int:
        return int(self.points.shape[1])

    def pg_valid(self) -> np.ndarray:
        """Per product group, the validity mask of its (shared) grid."""
        first = np.searchsorted(self.product_group, np.arange(len(self.pg_names)))
        return self.valid[first]

    def with_points(self, points: np.ndarray, valid: np.ndarray) -> ClassGroupTable:
        return ClassGroupTable(self.names, self.product_class, self.product_group, points, valid,
                               self.pg_names, self.pg_offset)


@dataclass
class Book:
    """Positions of many accounts, each on one series: units = quantity x multiplier."""

    n_accounts: int
    account: np.ndarray  # int64
    series: np.ndarray  # int64
    units: np.ndarray  # float64


@dataclass
class Structure:
    """Sparse aggregation structure of a book (independent of the market state)."""

    n_accounts: int
    S: sp.csr_matrix  # rows (account, class group) x series, units netted per contract
    row_account: np.ndarray
    row_cg: np.ndarray
    row_pg: np.ndarray
    account_ptr: np.ndarray  # rows of account a: account_ptr[a]:account_ptr[a + 1]
    pg_ptr: np.ndarray  # pg row k covers rows pg_ptr[k]:pg_ptr[k + 1]
    pgrow_account: np.ndarray
    pgrow_pg: np.ndarray
    G: sp.csr_matrix  # pg rows x rows, ones

    @property
    def n_rows(self) -> int:
        return int(self.row_account.shape[0])


@dataclass
class Result:
    """Requirements of every account; the detail arrays are filled by the numpy path."""

    account_requirement: np.ndarray  # (n_accounts,)
    account_minimum: np.ndarray  # (n_accounts,)
    driver_pgrow: np.ndarray  # (n_accounts,) pg row with the largest requirement (-1: none)
    driver_point: np.ndarray  # (n_accounts,) index of its worst point (-1: none)
    cg_pnl: np.ndarray | None = None  # (rows, width)
    cg_minimum: np.ndarray | None = None  # (rows,)
    pg_pnl: np.ndarray | None = None  # (pg rows, width), padding NaN
    pg_worst: np.ndarray | None = None
    pg_minimum: np.ndarray | None = None
    pg_requirement: np.ndarray | None = None


# --------------------------------------------------------------------------- series P&L


def series_pnl(series: SeriesTable, groups: ClassGroupTable, rate: float,
               vol_mult: float = 1.0) -> np.ndarray:
    """P&L per unit of every series at every point of its class group's grid (n x width).

    Padding points are 0. Options: one vectorised ``option_value`` call for all of them (the
    model is an array: one pass per model inside the pricing kernels); an option at expiry
    (t <= 0) is worth its intrinsic value. ``vol_mult`` scales every implied vol
    (house volatility stress).
    """
    from . import pricing

    n, width = len(series), groups.width
    pts = groups.points[series.class_group]  # (n, width)
    out = np.zeros((n, width))
    lin = np.flatnonzero(series.kind == LINEAR)
    if lin.size:
        out[lin] = series.spot[lin, None] * pts[lin]
    opt = np.flatnonzero(series.kind == OPTION)
    if opt.size:
        moved = series.spot[opt, None] * (1.0 + pts[opt])
        t = series.t[opt]
        vol = series.vol[opt] * vol_mult
        live = t > 0
        if not live.all():  # at expiry the intrinsic value, whatever the vol
            vol = np.where(live, vol, 1.0)
        value = pricing.option_value(
            series.model[opt, None], moved, series.strike[opt, None], t[:, None], rate,
            series.div_yield[opt, None], vol[:, None], series.is_call[opt, None])
        out[opt] = value - series.mark[opt, None]
    if series.custom_index.size:
        out[series.custom_index] = series.custom_pnl[:, :width]
    out[~groups.valid[series.class_group]] = 0.0
    return out


def minimum_per_unit(series: SeriesTable, units: np.ndarray, series_idx: np.ndarray) -> np.ndarray:
    """Minimum charge of each (netted) holding: |units| x minimum, a long's capped at its mark."""
    unit_min = series.min_unit[series_idx]
    cap = series.cap_long[series_idx] & (units > 0)
    unit_min = np.where(cap, np.minimum(unit_min, np.maximum(series.mark[series_idx], 0.0)),
                        unit_min)
    return np.abs(units) * unit_min


# --------------------------------------------------------------------------- structure


def _changes(sorted_keys: np.ndarray) -> np.ndarray:
    """Mask of the first element of each run of equal keys."""
    out = np.empty(sorted_keys.shape[0], dtype=bool)
    if out.size:
        out[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=out[1:])
    return out


def build_structure(book: Book, series_cg: np.ndarray, cg_pg: np.ndarray) -> Structure:
    """Rows (account, class group), the netted sparse matrix S and the product-group pointers."""
    n_series = int(series_cg.shape[0])
    n_cg = int(cg_pg.shape[0])
    acct = np.asarray(book.account, dtype=np.int64)
    ser = np.asarray(book.series, dtype=np.int64)
    row_key = acct * n_cg + series_cg[ser]
    full_key = row_key * n_series + ser
    order = np.argsort(full_key, kind="stable")
    full_sorted = full_key[order]
    units_sorted = np.asarray(book.units, dtype=np.float64)[order]
    # net holdings of one contract in one account
    starts = np.flatnonzero(_changes(full_sorted))
    entry_key = full_sorted[starts]
    entry_units = np.add.reduceat(units_sorted, starts) if starts.size else units_sorted[:0]
    entry_series = entry_key % n_series
    entry_row_key = entry_key // n_series
    row_starts = np.flatnonzero(_changes(entry_row_key))
    row_keys = entry_row_key[row_starts]
    n_rows = int(row_keys.shape[0])
    indptr = np.append(row_starts, entry_row_key.shape[0]).astype(np.int64)
    S = sp.csr_matrix((entry_units, entry_series, indptr), shape=(n_rows, n_series))
    row_account = row_keys // n_cg
    row_cg = row_keys % n_cg
    row_pg = cg_pg[row_cg]
    account_ptr = np.searchsorted(row_account, np.arange(book.n_accounts + 1)).astype(np.int64)
    n_pg = int(cg_pg.max()) + 1 if n_cg else 1
    pg_key = row_account * n_pg + row_pg
    pg_starts = np.flatnonzero(_changes(pg_key))
    pg_ptr = np.append(pg_starts, n_rows).astype(np.int64)
    G = sp.csr_matrix((np.ones(n_rows), np.arange(n_rows, dtype=np.int64), pg_ptr),
                      shape=(pg_starts.shape[0], n_rows))
    return Structure(book.n_accounts, S, row_account, row_cg, row_pg, account_ptr, pg_ptr,
                     row_account[pg_starts], row_pg[pg_starts], G)


# --------------------------------------------------------------------------- aggregation


def _first_min(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row, the first valid column within the tie tolerance of the row minimum."""
    v = np.where(valid, values, np.inf)
    m = v.min(axis=1, keepdims=True)
    tol = TIE_RTOL * np.maximum(1.0, np.abs(m))
    return np.argmax(v <= m + tol, axis=1)


def aggregate_numpy(st: Structure, groups: ClassGroupTable, series: SeriesTable,
                    pnl: np.ndarray) -> Result:
    """Reference aggregation with scipy.sparse (keeps every intermediate for reporting)."""
    S = st.S
    cg_pnl = np.asarray(S @ pnl)
    entry_min = minimum_per_unit(series, S.data, S.indices)
    cg_min = np.add.reduceat(entry_min, S.indptr[:-1]) if entry_min.size else np.zeros(st.n_rows)
    cg_min[np.diff(S.indptr) == 0] = 0.0
    G = st.G
    loss = np.asarray(G @ np.minimum(cg_pnl, 0.0))
    gain = np.asarray(G @ np.maximum(cg_pnl, 0.0))
    off = groups.pg_offset[st.pgrow_pg]
    pg_pnl = loss + off[:, None] * gain
    valid = groups.pg_valid()[st.pgrow_pg]
    pg_pnl = np.where(valid, pg_pnl, np.nan)
    worst = np.maximum(-np.nanmin(np.where(valid, pg_pnl, np.inf), axis=1), 0.0) \
        if pg_pnl.shape[0] else np.zeros(0)
    pg_min = np.asarray(G @ cg_min)
    pg_req = np.maximum(worst, pg_min)
    n_acc = st.n_accounts
    acct_req = np.bincount(st.pgrow_account, weights=pg_req, minlength=n_acc)
    acct_min = np.bincount(st.pgrow_account, weights=pg_min, minlength=n_acc)
    # driver: per account the first pg row within tolerance of the largest requirement
    drv_row = np.full(n_acc, -1, np.int64)
    drv_pt = np.full(n_acc, -1, np.int64)
    if pg_req.size:
        best = np.full(n_acc, -np.inf)
        np.maximum.at(best, st.pgrow_account, pg_req)
        tol = TIE_RTOL * np.maximum(1.0, np.abs(best))
        hit = pg_req >= best[st.pgrow_account] - tol[st.pgrow_account]
        rows = np.flatnonzero(hit)
        # first hit per account (rows are sorted by account)
        first = rows[_changes(st.pgrow_account[rows])]
        drv_row[st.pgrow_account[first]] = first
        pts = _first_min(np.nan_to_num(pg_pnl, nan=np.inf), valid)
        drv_pt[st.pgrow_account[first]] = pts[first]
    return Result(acct_req, acct_min, drv_row, drv_pt, cg_pnl, cg_min, pg_pnl, worst, pg_min,
                  pg_req)


# The numba kernel mirrors ``aggregate_numpy`` loop for loop (tests check they agree); split
# into helpers it would cost calls in the hot loop, so it keeps its complexity.
@njit(cache=True, parallel=True)
def _aggregate_kernel(  # noqa: C901
        account_ptr, pg_ptr_of_account, pg_ptr, row_ptr, s_indices, s_data, entry_min,
        pgrow_offset, pgrow_valid, pnl, out_req, out_min, out_row,
        out_pt):  # pragma: no cover - compiled
    n_acc = account_ptr.shape[0] - 1
    width = pnl.shape[1]
    for a in prange(n_acc):
        loss = np.zeros(width)
        gain = np.zeros(width)
        cg = np.zeros(width)
        total = 0.0
        total_min = 0.0
        best_req = -np.inf
        best_row = -1
        best_pt = -1
        for k in range(pg_ptr_of_account[a], pg_ptr_of_account[a + 1]):
            for j in range(width):
                loss[j] = 0.0
                gain[j] = 0.0
            mn = 0.0
            for r in range(pg_ptr[k], pg_ptr[k + 1]):
                for j in range(width):
                    cg[j] = 0.0
                for e in range(row_ptr[r], row_ptr[r + 1]):
                    s = s_indices[e]
                    u = s_data[e]
                    mn += entry_min[e]
                    for j in range(width):
                        cg[j] += u * pnl[s, j]
                for j in range(width):
                    if cg[j] < 0.0:
                        loss[j] += cg[j]
                    else:
                        gain[j] += cg[j]
            off = pgrow_offset[k]
            vmin = np.inf
            for j in range(width):
                if pgrow_valid[k, j]:
                    v = loss[j] + off * gain[j]
                    if v < vmin:
                        vmin = v
            tol = TIE_RTOL * max(1.0, abs(vmin))
            pt = -1
            for j in range(width):
                if pgrow_valid[k, j]:
                    v = loss[j] + off * gain[j]
                    if v <= vmin + tol:
                        pt = j
                        break
            worst = -vmin if vmin < 0.0 else 0.0
            req = worst if worst > mn else mn
            total += req
            total_min += mn
            if best_row < 0 or req > best_req + TIE_RTOL * max(1.0, abs(best_req)):
                best_req = req
                best_row = k
                best_pt = pt
        out_req[a] = total
        out_min[a] = total_min
        out_row[a] = best_row
        out_pt[a] = best_pt


def aggregate_numba(st: Structure, groups: ClassGroupTable, series: SeriesTable,
                    pnl: np.ndarray) -> Result:
    """The fused, parallel kernel: account requirements and drivers only (no detail arrays)."""
    S = st.S
    entry_min = minimum_per_unit(series, S.data, S.indices)
    pg_ptr_of_account = np.searchsorted(st.pgrow_account, np.arange(st.n_accounts + 1))
    n_acc = st.n_accounts
    out_req = np.zeros(n_acc)
    out_min = np.zeros(n_acc)
    out_row = np.full(n_acc, -1, np.int64)
    out_pt = np.full(n_acc, -1, np.int64)
    _aggregate_kernel(st.account_ptr, pg_ptr_of_account.astype(np.int64), st.pg_ptr,
                      S.indptr.astype(np.int64), S.indices.astype(np.int64),
                      S.data.astype(np.float64), entry_min, groups.pg_offset[st.pgrow_pg],
                      groups.pg_valid()[st.pgrow_pg], np.ascontiguousarray(pnl, np.float64),
                      out_req, out_min, out_row, out_pt)
    return Result(out_req, out_min, out_row, out_pt)


def aggregate(st: Structure, groups: ClassGroupTable, series: SeriesTable, pnl: np.ndarray,
              detail: bool = False) -> Result:
    """Account requirements: the numba kernel for the batch, the numpy path for detail."""
    if detail:
        return aggregate_numpy(st, groups, series, pnl)
    return aggregate_numba(st, groups, series, pnl)
