"""Step 3 of the engine: the ``portfolio_margin`` block (METHODOLOGY.md sections 1 and 2).

``calculate_block(portfolio, params, valuation)`` turns the request's portfolio into the batch
structure of ``series`` (distinct contracts, their class groups and product groups, a book of
one account), runs the same aggregation the live snapshots run over 100,000 accounts, and
renders the block in CALCULATOR.md's shape and key order with raw floats (the caller rounds).

``PMRun`` is that one-account batch; ``house`` reuses it with other grids, vol multipliers and
minimum floors for the house components.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import scenarios
from .errors import EngineInputError
from .parameters import ParameterSet
from .portfolio import OPTION_KINDS, Portfolio, Position
from .series import (
    CUSTOM,
    LINEAR,
    OPTION,
    Book,
    ClassGroupTable,
    Result,
    SeriesTable,
    aggregate_numpy,
    build_structure,
    series_pnl,
)
from .validation import Problems, check_class_groups, effective_class
from .valuation import Valuation

SECURITY_FUTURE_CLASSES = ("equity", "narrow_index")  # futures on these are security futures


@dataclass
class _Group:
    name: str
    product_group: str
    classes: list[str]
    members: list[str]  # underlying symbols held in the group
    order: int


def _product_group_of(portfolio: Portfolio, class_group: str) -> str:
    for und in portfolio.underlyings.values():
        if und.class_group == class_group:
            return und.product_group
    return class_group


def _check_held_groups(groups: list[_Group], portfolio: Portfolio,
                       params: ParameterSet) -> None:
    """The validator's class-group rule on the groups as held: an index future follows its
    index's class only when held with it (METHODOLOGY.md section 1), so the classes and grids
    that meet here can differ from the declared ones ``validate_portfolio`` checked."""
    held = [(next((s for s in g.members if portfolio.underlyings[s].product_class == cls),
                  g.name), g.name, g.product_group, cls)
            for g in groups for cls in dict.fromkeys(g.classes)]
    problems = Problems()
    check_class_groups(held, params, problems)
    if problems.items:
        raise problems.items[0]


class PMRun:
    """The portfolio of one request as a one-account batch (series, groups, structure)."""

    def __init__(self, portfolio: Portfolio, params: ParameterSet, valuation: Valuation) -> None:
        self.portfolio = portfolio
        self.params = params
        self.valuation = valuation
        positions = portfolio.positions
        self.lp_positions: list[tuple[int, Position, str]] = []  # (series, position, class)

        groups: dict[str, _Group] = {}
        pos_group: list[str] = []
        lp_regulatory: dict[int, np.ndarray] = {}
        for i, p in enumerate(positions):
            if p.kind == "uniswap_v3_lp":
                from .defi import uniswap_v3

                cg, pclass, pnl = uniswap_v3.lp_scenario_pnl(portfolio, p, params)
                lp_regulatory[i] = np.asarray(pnl, dtype=np.float64)
                members: list[str] = []
                pg = _product_group_of(portfolio, cg)
            else:
                und = portfolio.underlyings[p.root]
                cg, pclass, pg = und.class_group, und.product_class, und.product_group
                members = [und.symbol]
            g = groups.get(cg)
            if g is None:
                g = groups[cg] = _Group(cg, pg, [], [], len(groups))
            g.classes.append(pclass)
            g.members.extend(m for m in members if m not in g.members)
            pos_group.append(cg)

        # product groups by first appearance, class groups contiguous within them
        pg_order: dict[str, int] = {}
        for g in groups.values():
            pg_order.setdefault(g.product_group, len(pg_order))
        ordered = sorted(groups.values(), key=lambda g: (pg_order[g.product_group], g.order))
        self.cg_names = [g.name for g in ordered]
        self.cg_index = {name: k for k, name in enumerate(self.cg_names)}
        _check_held_groups(ordered, portfolio, params)
        self.cg_class = [effective_class(g.classes) for g in ordered]
        self.cg_members = [g.members for g in ordered]
        self.pg_names = list(pg_order)
        cg_pg = np.array([pg_order[g.product_group] for g in ordered], dtype=np.int64)
        class_grids = {c: scenarios.points_for(params, c) for c in set(self.cg_class)}
        self.reg_grids = [class_grids[c] for c in self.cg_class]
        pg_offset = np.zeros(len(self.pg_names))
        for k, pg in enumerate(self.pg_names):
            members = np.flatnonzero(cg_pg == k).tolist()
            pg_offset[k] = min(params.portfolio_margin.offset_for(pg, self.cg_class[m],
                                                                  portfolio.offsets)
                               for m in members)
        table = scenarios.GridTable.build(self.reg_grids)
        self.groups = ClassGroupTable(self.cg_names, self.cg_class, cg_pg, table.points,
                                      table.valid, self.pg_names, pg_offset)
        self.series, pos_series = self._build_series(pos_group, lp_regulatory)
        units = np.array([float(p.quantity) * float(p.multiplier)
                          if p.kind != "uniswap_v3_lp" else 1.0 for p in positions])
        self.pos_series = pos_series
        self.book = Book(1, np.zeros(len(positions), np.int64), pos_series, units)
        self.structure = build_structure(self.book, self.series.class_group, cg_pg)

    # ------------------------------------------------------------------ series

    def _build_series(self, pos_group: list[str], lp_regulatory: dict[int, np.ndarray]
                      ) -> tuple[SeriesTable, np.ndarray]:
        """One series per distinct contract (model, group, spot, strike, expiry, vol, mark)."""
        portfolio, val = self.portfolio, self.valuation
        positions = portfolio.positions
        min_contract = self.params.portfolio_margin.minimum_per_contract
        unds = portfolio.underlyings
        is_opt = np.array([p.kind in OPTION_KINDS for p in positions], dtype=bool)
        is_lp = np.array([p.kind == "uniswap_v3_lp" for p in positions], dtype=bool)
        kind = np.where(is_opt, OPTION, np.where(is_lp, CUSTOM, LINEAR)).astype(np.int8)
        cg = np.array([self.cg_index[g] for g in pos_group], dtype=np.int64)
        strike = np.array([p.strike if p.strike is not None else 0.0 for p in positions],
                          dtype=np.float64)
        t = np.array([p.time_to_expiry if p.time_to_expiry is not None else 0.0
                      for p in positions], dtype=np.float64)
        t = np.where(is_opt, np.maximum(t, 0.0), 0.0)
        q = np.array([unds[p.root].dividend_yield or 0.0 if is_opt[i] else 0.0
                      for i, p in enumerate(positions)], dtype=np.float64)
        is_call = np.array([p.right == "call" for p in positions], dtype=bool)
        sec_future = np.array([p.kind == "future"
                               and unds[p.root].product_class in SECURITY_FUTURE_CLASSES
                               for p in positions], dtype=bool)
        spot = np.where(is_lp, 0.0, val.spots)
        vol = np.where(is_opt, val.vols, np.nan)
        mark = np.where(is_opt | is_lp, val.marks, spot)
        model = np.where(is_opt, val.models, -1).astype(np.int8)
        min_unit = np.where(is_opt | sec_future, min_contract, 0.0)
        missing = is_opt & (t > 0) & np.isnan(vol)
        if missing.any():
            p = positions[int(np.flatnonzero(missing)[0])]
            raise EngineInputError(
                f"positions[{p.index}].price", "outside_no_arbitrage_bounds",
                "the option has no implied volatility to value it at the points")
        # distinct contracts: identical key rows share a series (LP positions never do)
        key = np.column_stack([kind, model, cg, spot, strike, t, q, np.nan_to_num(vol, nan=-1.0),
                               is_call, mark, min_unit,
                               np.where(is_lp, np.arange(len(positions)), -1)])
        seen: dict[tuple, int] = {}
        pos_series = np.array([seen.setdefault(tuple(row), len(seen)) for row in key.tolist()],
                              dtype=np.int64)  # series numbered by first appearance
        first = np.unique(pos_series, return_index=True)[1]  # first position of each series
        lp_first = [int(i) for i in first if is_lp[i]]
        width = self.groups.width
        custom = np.zeros((len(lp_first), width))
        for k, i in enumerate(lp_first):
            r = lp_regulatory[i]
            custom[k, : min(width, r.shape[0])] = r[:width]
            self.lp_positions.append((int(pos_series[i]), positions[i], self.cg_class[cg[i]]))
        series = SeriesTable(
            kind=kind[first], model=model[first], class_group=cg[first], spot=spot[first],
            strike=strike[first], t=t[first], div_yield=q[first], vol=vol[first],
            is_call=is_call[first], mark=mark[first], min_unit=min_unit[first],
            cap_long=is_opt[first],
            custom_index=np.array([pos_series[i] for i in lp_first], np.int64),
            custom_pnl=custom)
        return series, pos_series.astype(np.int64)

    # ------------------------------------------------------------------ runs

    def lp_pnl_for(self, grids: list[np.ndarray], width: int) -> np.ndarray:
        """LP P&L rows on other grids (house): ``lp_scenario_pnl`` at those points."""
        from .defi import uniswap_v3

        out = np.zeros((len(self.lp_positions), width))
        for k, (s, p, _pclass) in enumerate(self.lp_positions):
            cg = int(self.series.class_group[s])
            grid = grids[cg]
            if np.array_equal(grid, self.reg_grids[cg]):
                row = self.series.custom_pnl[k, : grid.shape[0]]
            else:
                row = np.asarray(uniswap_v3.lp_scenario_pnl(self.portfolio, p, self.params,
                                                            points=grid)[2], dtype=np.float64)
            out[k, : min(width, row.shape[0])] = row[:width]
        return out

    def run(self, grids: list[np.ndarray] | None = None, vol_mult: float = 1.0,
            cg_min_floor: np.ndarray | None = None) -> tuple[Result, ClassGroupTable]:
        """The batch aggregation of this account on the regulatory grids or on ``grids``."""
        groups, series = self.groups, self.series
        if grids is not None:
            table = scenarios.GridTable.build(grids)
            groups = groups.with_points(table.points, table.valid)
            if self.lp_positions:
                series = series.with_custom_pnl(self.lp_pnl_for(grids, table.width))
        pnl = series_pnl(series, groups, float(self.portfolio.rate), vol_mult)
        result = aggregate_numpy(self.structure, groups, series, pnl)
        if cg_min_floor is not None:
            result = _apply_min_floor(self.structure, result, cg_min_floor)
        return result, groups


def _apply_min_floor(st: Any, result: Result, cg_min_floor: np.ndarray) -> Result:
    """Raise each class group's minimum to a floor (house overrides) and re-sum."""
    cg_min = np.maximum(result.cg_minimum, cg_min_floor[st.row_cg])
    pg_min = np.asarray(st.G @ cg_min)
    pg_req = np.maximum(result.pg_worst, pg_min)
    acct_req = np.bincount(st.pgrow_account, weights=pg_req, minlength=st.n_accounts)
    acct_min = np.bincount(st.pgrow_account, weights=pg_min, minlength=st.n_accounts)
    return Result(acct_req, acct_min, result.driver_pgrow, result.driver_point, result.cg_pnl,
                  cg_min, result.pg_pnl, result.pg_worst, pg_min, pg_req)


def _floats(a: np.ndarray) -> list[float]:
    return np.asarray(a, dtype=np.float64).tolist()


def calculate_block(portfolio: Portfolio, params: ParameterSet,
                    valuation: Valuation) -> dict[str, Any] | None:
    """The ``portfolio_margin`` block (CALCULATOR.md), or None when no position takes part."""
    if not portfolio.positions:
        return None
    run = PMRun(portfolio, params, valuation)
    result, groups = run.run()
    st = run.structure
    regulatory = float(result.account_requirement[0])

    from .house import house_components

    components = house_components(run, result) if portfolio.house else {}
    house_requirement = max(components.values(), default=0.0)

    class_groups = []
    for r in range(st.n_rows):
        cg = int(st.row_cg[r])
        valid = groups.valid[cg]
        pnl = result.cg_pnl[r][valid]
        class_groups.append({
            "class_group": groups.names[cg],
            "product_group": groups.pg_names[int(groups.product_group[cg])],
            "points": _floats(groups.points[cg][valid]),
            "pnl": _floats(pnl),
            "worst_loss": float(max(0.0, -pnl.min())) if pnl.size else 0.0,
            "minimum_charge": float(result.cg_minimum[r]),
        })
    product_groups = []
    for k in range(st.pgrow_pg.shape[0]):
        pg = int(st.pgrow_pg[k])
        rows = range(int(st.pg_ptr[k]), int(st.pg_ptr[k + 1]))
        pnl = result.pg_pnl[k]
        product_groups.append({
            "product_group": groups.pg_names[pg],
            "offset": float(groups.pg_offset[pg]),
            "class_groups": [groups.names[int(st.row_cg[r])] for r in rows],
            "pnl": _floats(pnl[~np.isnan(pnl)]),
            "worst_loss": float(result.pg_worst[k]),
            "minimum_charge": float(result.pg_minimum[k]),
            "requirement": float(result.pg_requirement[k]),
        })
    k = int(result.driver_pgrow[0])
    pg = int(st.pgrow_pg[k])
    first_cg = int(st.row_cg[int(st.pg_ptr[k])])
    driver = {"product_group": groups.pg_names[pg],
              "point": float(groups.points[first_cg][int(result.driver_point[0])])}
    return {
        "requirement": max(regulatory, house_requirement),
        "regulatory_requirement": regulatory,
        "house_requirement": float(house_requirement),
        "house_components": components,
        "minimum_charge": float(result.account_minimum[0]),
        "product_groups": product_groups,
        "class_groups": class_groups,
        "driver": driver,
    }
