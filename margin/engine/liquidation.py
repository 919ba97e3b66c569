"""Liquidation plans: the cheapest set of closing trades that cures a margin deficit.

A plan closes whole contracts (shares, futures, option contracts) of existing positions, each
toward zero and never beyond, so that after the trades

    (1 + cushion) x requirement_after + spread_cost <= equity + allowed_deficit

where ``equity - spread_cost`` is the equity after the trades (closing at the bid or the ask
instead of the mark loses half the spread; the mark is the mid), ``cushion`` is the call
policy's fraction of the requirement and ``allowed_deficit`` what may remain (0, except a
Reg T call, which is liquidated "to meet the call or to clear the deficiency existing on
liquidation day, whichever is less", MARGIN_CALLS.md section 1). The cost of a plan is
``sum(half_spread[class] x quantity x multiplier) + fixed_penalty x positions touched``.

The mixed-integer programme (``solve``, scipy.optimize.milp with HiGHS)
--------------------------------------------------------------------------
Variables: ``x_i`` (integer, 0..|q_i|) contracts of position ``i`` closed; ``z_i`` (binary)
position ``i`` touched, ``x_i <= |q_i| z_i``. Objective: ``sum(c_i x_i) + penalty sum(z_i)``
with ``c_i = half_spread x multiplier``.

The requirement is portfolio margin's, exactly as the engine aggregates it
(``series.aggregate_numpy``): a position's P&L per contract at each valuation point is fixed
by the market (``series_pnl`` x multiplier), so the class-group P&L after the trades is linear,
``P_cj(x) = P0_cj - sum_{i in c} s_i m_i pnl_ij x_i`` (``s_i`` the position's sign). Per
product group ``k`` and point ``j`` the net is ``sum_c min(P_cj, 0) + off_k sum_c max(P_cj, 0)``
(losses in full, gains offset at ``off_k``) and the group's requirement is
``max(0, worst loss, minimum charges)``. Linearised:

- the worst-loss max by an epigraph variable ``t_k >= 0`` per product group: ``t_k >= loss_kj``
  for every valid point ``j`` and ``t_k >= M_k(x)``; the requirement is ``sum_k t_k``, and it is
  constrained from above, so the solver can make ``t_k`` no smaller than the true maximum and
  has no reason to make it larger;
- the gains offset by ``v_cj >= max(-P_cj, 0)`` (``v >= -P``, ``v >= 0``): since
  ``min(P, 0) + off max(P, 0) = off P - (1 - off) max(-P, 0)``, the loss at point ``j`` is
  ``sum_c [(1 - off) v_cj - off P_cj]``, increasing in every ``v`` (``off <= 1``), so the
  minimal ``v`` is the one any feasible solution can use: the relaxation is exact. A product
  group of one class group needs no ``v``: ``t_k >= -P_cj``;
- the minimum charges are linear in what is left: ``M_c(x) = M0_c - sum_{i in c} mu_i x_i``
  (``mu_i`` the per-contract minimum, a long option's capped at its mark), since no trade
  crosses zero; a house floor ``F_c`` (naked-short minimum, held at today's value) enters as
  ``m_c >= M_c(x)``, ``m_c >= F_c``;
- each house component the firm asks for (``house``) is its own requirement on other grids
  (volatility shift: the three vol states' points side by side; concentration, with today's
  riskiest class groups; extended stress; per-symbol overrides) with its own ``t``, ``v``;
  the account's requirement is the largest, so every one of them must pass.

Risk-reducing only: ``x_i <= |q_i|`` (never beyond the position, so never opening) and, on the
regulatory risk arrays, no loss grows at any point: ``P_cj(x) >= min(P0_cj, 0)`` for every class
group, and the product group's net ``off sum P - (1 - off) sum v >= min(net0_kj, 0)``.

For a Reg T basis the requirement is strategy-based (pairing, ``regt``), not a scenario loss:
the programme uses its slopes, ``R(x) ~ R0 + sum g_i x_i`` with ``g_i`` the engine's change
from closing position ``i`` whole, per contract, beside the same risk-reducing constraints.

Verification and tightening: the plan is recomputed by the full engine (``calculate_block``
with the house layer for portfolio margin, ``regt.calculate_block`` for Reg T). When the
engine's requirement does not pass (the concentration group changed, a naked short's floor,
Reg T pairing), the requirement constraint is tightened, ``(1 + cushion)(1 + delta) R``, with
``delta`` growing through ``TIGHTENING``, and the programme solved again.

The greedy baseline (``greedy``) works under the same model and constraints: among the
risk-reducing trades (close one position, or a whole class group), take the one that lowers the
requirement most per dollar of cost, the last one only as far as needed, until cured; verified
and tightened the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from . import regt, scenarios
from .house import _enabled, _setting
from .parameters import ParameterSet
from .portfolio import Portfolio
from .portfolio_margin import PMRun, calculate_block
from .series import minimum_per_unit, series_pnl
from .valuation import Valuation

PM_BASIS = "portfolio_margin"
REGT_INITIAL = "reg_t_initial"
REGT_MAINTENANCE = "reg_t_maintenance"
BASES = (PM_BASIS, REGT_INITIAL, REGT_MAINTENANCE)

#: the scenario cushion added round by round when the engine does not confirm a plan
TIGHTENING = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25)
SAFETY = 0.01  # dollars kept off the right-hand side against solver tolerances
PASS_TOL = 0.005  # dollars: the engine's check passes within half a cent
RISK_TOL = 1e-6  # dollars: a scenario loss this much larger is not an increase (rounding)

#: statuses of a plan
NOT_NEEDED = "not_needed"  # nothing to close: already cured
CURED = "cured"  # the engine confirms the plan cures the deficit
INFEASIBLE = "infeasible"  # not even closing every position cures it
NOT_CURED = "not_cured"  # the method stopped without a plan the engine confirms


@dataclass(frozen=True)
class Costs:
    """What closing costs: half spread per product class (price units), fixed per position."""

    half_spread: dict[str, float]
    fixed_penalty: float

    def half_spread_of(self, product_class: str) -> float:
        if product_class not in self.half_spread:
            raise KeyError(f"no half spread for product class {product_class!r}")
        return float(self.half_spread[product_class])


@dataclass(frozen=True)
class Target:
    """What the plan must reach: ``(1 + cushion) R_after + spread <= equity + allowed``."""

    equity: float
    cushion: float = 0.0
    allowed_deficit: float = 0.0


@dataclass
class Trade:
    position_id: str
    index: int  # the position's index in the portfolio
    product_class: str
    quantity_before: float
    close: int  # contracts closed (positive)
    multiplier: float
    half_spread: float
    spread_cost: float

    @property
    def quantity_after(self) -> float:
        sign = 1.0 if self.quantity_before > 0 else -1.0
        return self.quantity_before - sign * self.close

    @property
    def side(self) -> str:
        return "sell" if self.quantity_before > 0 else "buy"

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position_id, "product_class": self.product_class,
                "side": self.side, "quantity": self.close,
                "quantity_before": self.quantity_before, "quantity_after": self.quantity_after,
                "multiplier": self.multiplier, "half_spread": self.half_spread,
                "spread_cost": self.spread_cost}


@dataclass
class Plan:
    method: str  # "milp" or "greedy"
    status: str
    trades: list[Trade]
    spread_cost: float
    penalty_cost: float
    requirement_before: float
    requirement_after: float | None  # the full engine's, after the trades
    model_requirement_after: float | None
    equity_before: float
    equity_after: float | None
    tightening: float
    rounds: int
    seconds: float
    solver_status: str
    message: str = ""

    @property
    def cost(self) -> float:
        return self.spread_cost + self.penalty_cost

    @property
    def positions_touched(self) -> int:
        return len(self.trades)

    @property
    def cured(self) -> bool:
        return self.status in (CURED, NOT_NEEDED)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "status": self.status,
                "trades": [t.as_dict() for t in self.trades], "cost": self.cost,
                "spread_cost": self.spread_cost, "penalty_cost": self.penalty_cost,
                "positions_touched": self.positions_touched,
                "requirement_before": self.requirement_before,
                "requirement_after": self.requirement_after,
                "model_requirement_after": self.model_requirement_after,
                "equity_before": self.equity_before, "equity_after": self.equity_after,
                "tightening": self.tightening, "rounds": self.rounds, "seconds": self.seconds,
                "solver_status": self.solver_status, "message": self.message}


# --------------------------------------------------------------------------- the model


@dataclass
class Naked:
    """One side of one underlying's uncovered shorts (house overrides): the floor it adds to
    its class group is ``coef x max(a0 + b x, 0)`` (units short less units covering)."""

    cg: int
    coef: float  # fraction x the underlying's price
    a0: float
    b: np.ndarray  # (n_lines,)


@dataclass
class ScenarioSet:
    """One requirement's linear model: P&L rows on one set of points, their class groups,
    product groups, offsets and minimums (``name``: "regulatory" or a house component).

    A class group usually has one row; the concentration component gives a class group that
    may be among the riskiest two rows (its top and its other grid), and counts the worse of
    the two at each point, which bounds the requirement whichever group ends on top."""

    name: str
    row_cg: np.ndarray  # (n_rows,) class group of each row
    P0: np.ndarray  # (n_rows, width) P&L today (every position, tradeable or not)
    A: sp.csr_matrix  # (n_rows * width, n_lines): dP per contract closed
    valid: np.ndarray  # (n_rows, width) bool
    cg_pg: np.ndarray  # (n_cg,) product group of each class group (contiguous)
    pg_offset: np.ndarray  # (n_pg,)
    M0: np.ndarray  # (n_cg,) minimum charges today
    naked: list[Naked] = field(default_factory=list)

    @property
    def n_cg(self) -> int:
        return int(self.cg_pg.shape[0])

    @property
    def width(self) -> int:
        return int(self.P0.shape[1])

    def rows_of(self, cg: int) -> np.ndarray:
        return np.flatnonzero(self.row_cg == cg)

    def row_pnl(self, x: np.ndarray) -> np.ndarray:
        return self.P0 + (self.A @ x).reshape(self.P0.shape)

    def cg_pnl(self, x: np.ndarray) -> np.ndarray:
        """Per class group and point, the worst of its rows."""
        P = np.full((self.n_cg, self.width), np.inf)
        np.minimum.at(P, self.row_cg, self.row_pnl(x))
        P[~self.cg_valid()] = 0.0
        return P

    def cg_valid(self) -> np.ndarray:
        first = np.searchsorted(self.row_cg, np.arange(self.n_cg))
        return self.valid[first]

    def floor(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_cg)
        for k in self.naked:
            out[k.cg] += k.coef * max(k.a0 + float(k.b @ x), 0.0)
        return out


@dataclass
class Model:
    """The positions a plan may trade and the requirement's linear model."""

    basis: str
    position_ids: list[str]
    index: np.ndarray  # (n,) index of each tradeable line in the portfolio
    quantity: np.ndarray  # (n,) signed quantity
    cap: np.ndarray  # (n,) int: contracts that may be closed
    multiplier: np.ndarray
    product_class: list[str]
    line_cg: np.ndarray  # (n,) regulatory class group of each line
    min_per_contract: np.ndarray  # (n,) mu_i
    unit_cost: np.ndarray  # (n,) half spread x multiplier
    penalty: float
    sets: list[ScenarioSet]  # [regulatory, house components...]
    regt_base: float = 0.0  # Reg T basis: R0
    regt_slope: np.ndarray | None = None  # Reg T basis: g_i per contract
    #: the concentration component's class groups counted on both grids, and how to rebuild
    concentration_union: set[int] = field(default_factory=set)
    rebuild_concentration: Callable[[set[int]], ScenarioSet] | None = None
    top_count: int = 2

    @property
    def n(self) -> int:
        return int(self.cap.shape[0])

    @property
    def regulatory(self) -> ScenarioSet:
        return self.sets[0]

    @property
    def requirement_sets(self) -> list[ScenarioSet]:
        """The sets whose requirement the programme bounds (portfolio margin's, all)."""
        return self.sets if self.basis == PM_BASIS else []

    def spread_cost(self, x: np.ndarray) -> float:
        return float(self.unit_cost @ x)

    def cost(self, x: np.ndarray) -> float:
        return self.spread_cost(x) + self.penalty * int(np.count_nonzero(x))

    def minimum(self, x: np.ndarray) -> np.ndarray:
        """Per class group, the minimum charges left after closing ``x``."""
        closed = np.bincount(self.line_cg, weights=self.min_per_contract * x,
                             minlength=self.regulatory.n_cg)
        return self.regulatory.M0 - closed

    def requirement(self, x: np.ndarray) -> float:
        """The modelled requirement after closing ``x``."""
        if self.basis != PM_BASIS:
            return float(self.regt_base + self.regt_slope @ x)
        M = self.minimum(x)
        return max(set_requirement(s, x, M) for s in self.sets)

    def risk_reducing(self, x: np.ndarray) -> bool:
        """No class-group or product-group loss grows at any regulatory point."""
        s = self.regulatory
        P = s.cg_pnl(x)
        if np.any(s.valid & (P < np.minimum(s.P0, 0.0) - RISK_TOL)):
            return False
        net, net0 = pg_net(s, P), pg_net(s, s.P0)
        valid = pg_valid(s)
        return not np.any(valid & (net < np.minimum(net0, 0.0) - RISK_TOL))

    def top_class_groups(self, x: np.ndarray, count: int) -> set[int]:
        """The riskiest class groups after ``x`` by regulatory worst loss (ties: first)."""
        s = self.regulatory
        P = s.cg_pnl(x)
        worst = np.maximum(-np.where(s.cg_valid(), P, np.inf).min(axis=1), 0.0)
        return set(np.argsort(-worst, kind="stable")[:count].tolist())

    def refine(self, x: np.ndarray) -> bool:
        """After the engine refused ``x``: count on both grids any class group that ends
        among the riskiest (concentration). True when the model changed."""
        if self.rebuild_concentration is None:
            return False
        k = next(i for i, s in enumerate(self.sets) if s.name == "concentration")
        top = self.top_class_groups(x, self.top_count)
        if top <= self.concentration_union:
            return False
        self.concentration_union |= top
        self.sets[k] = self.rebuild_concentration(self.concentration_union)
        return True


def pg_net(s: ScenarioSet, P: np.ndarray) -> np.ndarray:
    """Product-group net P&L per point (``P`` per class group): losses in full, gains at the
    offset."""
    n_pg = s.pg_offset.shape[0]
    loss = np.zeros((n_pg, s.width))
    gain = np.zeros((n_pg, s.width))
    np.add.at(loss, s.cg_pg, np.minimum(P, 0.0))
    np.add.at(gain, s.cg_pg, np.maximum(P, 0.0))
    return loss + s.pg_offset[:, None] * gain


def pg_valid(s: ScenarioSet) -> np.ndarray:
    first = np.searchsorted(s.cg_pg, np.arange(s.pg_offset.shape[0]))
    return s.cg_valid()[first]


def set_requirement(s: ScenarioSet, x: np.ndarray, M: np.ndarray) -> float:
    """Sum over product groups of max(worst loss, minimum charges) after closing ``x``."""
    net = pg_net(s, s.cg_pnl(x))
    worst = np.maximum(-np.where(pg_valid(s), net, np.inf).min(axis=1), 0.0)
    cg_min = np.maximum(M, s.floor(x))
    pg_min = np.zeros(s.pg_offset.shape[0])
    np.add.at(pg_min, s.cg_pg, cg_min)
    return float(np.maximum(worst, pg_min).sum())


def build_model(portfolio: Portfolio, params: ParameterSet, valuation: Valuation,
                costs: Costs, basis: str = PM_BASIS) -> Model:
    """The tradeable lines and the requirement's linear model of ``portfolio``."""
    if basis not in BASES:
        raise ValueError(f"unknown basis {basis!r}; one of {', '.join(BASES)}")
    run = PMRun(portfolio, params, valuation)
    positions = portfolio.positions
    pos_series = run.pos_series
    units = run.book.units
    seen: set[int] = set()
    lines: list[int] = []
    for i, p in enumerate(positions):
        if int(pos_series[i]) in seen:
            raise ValueError(f"two positions on one contract ({p.id}): net them first")
        seen.add(int(pos_series[i]))
        if p.kind != "uniswap_v3_lp" and int(abs(p.quantity)) >= 1:
            lines.append(i)
    idx = np.array(lines, dtype=np.int64)
    q = np.array([float(positions[i].quantity) for i in lines])
    mult = np.array([float(positions[i].multiplier) for i in lines])
    classes = [run.cg_class[int(run.series.class_group[pos_series[i]])] for i in lines]
    pos_min = minimum_per_unit(run.series, units, pos_series)
    model = Model(
        basis=basis, position_ids=[positions[i].id for i in lines], index=idx, quantity=q,
        cap=np.floor(np.abs(q)).astype(np.int64), multiplier=mult, product_class=classes,
        line_cg=run.series.class_group[pos_series[idx]] if lines else np.zeros(0, np.int64),
        min_per_contract=(pos_min[idx] / np.abs(q)) if lines else np.zeros(0),
        unit_cost=np.array([costs.half_spread_of(c) for c in classes]) * mult,
        penalty=float(costs.fixed_penalty), sets=[])
    model.sets = _scenario_sets(run, model, pos_min, basis)
    if basis != PM_BASIS:
        model.regt_base, model.regt_slope = _regt_slopes(portfolio, params, valuation, model)
    return model


def _scenario_sets(run: PMRun, model: Model, pos_min: np.ndarray, basis: str
                   ) -> list[ScenarioSet]:
    rate = float(run.portfolio.rate)
    sets = [_set("regulatory", run, model, [series_pnl(run.series, run.groups, rate)],
                 run.groups.valid, pos_min)]
    model.sets = sets  # the regulatory set first: the concentration component reads it
    if basis != PM_BASIS or not run.portfolio.house:
        return sets
    request, defaults = run.portfolio.house, run.params.house
    value = _setting(request, "vol_shift")
    if _enabled(value):
        shift = defaults.vol_shift if value is True else float(value)
        pnls = [series_pnl(run.series, run.groups, rate, m)
                for m in (1.0, *scenarios.vol_multipliers(shift))]
        sets.append(_set("vol_shift", run, model, [np.hstack(pnls)],
                         np.hstack([run.groups.valid] * 3), pos_min))
    value = _setting(request, "concentration")
    if _enabled(value):
        settings = defaults.concentration
        if isinstance(value, dict):
            settings = replace(settings, **value)
        _concentration(run, model, pos_min, settings, sets)
    value = _setting(request, "stress_range", "extended_stress")
    if _enabled(value):
        stress = defaults.stress_range if value is True else float(value)
        grids = [scenarios.extended_grid(g, stress, c)
                 for g, c in zip(run.reg_grids, run.cg_class, strict=True)]
        sets.append(_grid_set("extended_stress", run, model, pos_min, grids))
    value = _setting(request, "overrides")
    if _enabled(value):
        sets.append(_overrides_set(run, model, pos_min, defaults.overrides, value))
    return sets


def _set(name: str, run: PMRun, model: Model, pnls: list[np.ndarray], valid: np.ndarray,
         pos_min: np.ndarray, both: set[int] | None = None,
         naked: list[Naked] | None = None) -> ScenarioSet:
    """A scenario set from series P&L (n_series x width) on the run's class groups; with two
    P&L tables, the class groups in ``both`` get a row on each (the other ones the first)."""
    n_cg, width = valid.shape
    pos_cg = run.series.class_group[run.pos_series]
    row_cg = np.arange(n_cg)
    choice = np.zeros(n_cg, np.int64)
    if len(pnls) > 1:
        extra = np.array(sorted(both or ()), dtype=np.int64)
        row_cg = np.concatenate([row_cg, extra])
        choice = np.concatenate([choice, np.ones(extra.shape[0], np.int64)])
        order = np.argsort(row_cg, kind="stable")
        row_cg, choice = row_cg[order], choice[order]
    n_rows = row_cg.shape[0]
    P0 = np.zeros((n_rows, width))
    trip_r, trip_c, trip_v = [], [], []
    idx, sign = model.index, np.sign(model.quantity)
    line_of = {int(i): k for k, i in enumerate(idx.tolist())}
    for r in range(n_rows):
        c, pnl = int(row_cg[r]), pnls[int(choice[r])]
        members = np.flatnonzero(pos_cg == c)
        rows = pnl[run.pos_series[members]] * valid[c]
        P0[r] = run.book.units[members] @ rows
        for m, row in zip(members.tolist(), rows, strict=True):
            k = line_of.get(m)
            if k is None:
                continue
            # dP per contract closed: -sign x multiplier x P&L per unit
            trip_r.append(r * width + np.arange(width))
            trip_c.append(np.full(width, k))
            trip_v.append(-sign[k] * model.multiplier[k] * row)
    A = sp.csr_matrix((np.concatenate(trip_v) if trip_v else np.zeros(0),
                       (np.concatenate(trip_r) if trip_r else np.zeros(0, np.int64),
                        np.concatenate(trip_c) if trip_c else np.zeros(0, np.int64))),
                      shape=(n_rows * width, model.n))
    A.eliminate_zeros()
    M0 = np.zeros(n_cg)
    np.add.at(M0, pos_cg, pos_min)
    return ScenarioSet(name, row_cg, P0, A, valid[row_cg], run.groups.product_group.copy(),
                       run.groups.pg_offset.copy(), M0, naked or [])


def _grid_pnl(run: PMRun, grids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    table = scenarios.GridTable.build(grids)
    groups = run.groups.with_points(table.points, table.valid)
    series = run.series
    if run.lp_positions:
        series = series.with_custom_pnl(run.lp_pnl_for(grids, table.width))
    return series_pnl(series, groups, float(run.portfolio.rate)), table.valid


def _grid_set(name: str, run: PMRun, model: Model, pos_min: np.ndarray,
              grids: list[np.ndarray], naked: list[Naked] | None = None) -> ScenarioSet:
    pnl, valid = _grid_pnl(run, grids)
    return _set(name, run, model, [pnl], valid, pos_min, naked=naked)


def _concentration(run: PMRun, model: Model, pos_min: np.ndarray, settings,
                   sets: list[ScenarioSet]) -> None:
    """The house concentration component: every class group on the other grid, and the ones
    that are (or, after a refused plan, were found) among the riskiest on both."""
    top_grids = [scenarios.scaled_grid(g, float(settings.top_move)) for g in run.reg_grids]
    other_grids = [scenarios.scaled_grid(g, float(settings.other_move)) for g in run.reg_grids]
    top_pnl, valid = _grid_pnl(run, top_grids)
    other_pnl, _ = _grid_pnl(run, other_grids)

    def rebuild(union: set[int]) -> ScenarioSet:
        return _set("concentration", run, model, [other_pnl, top_pnl], valid, pos_min,
                    both=union)

    model.top_count = int(settings.top_class_groups)
    model.concentration_union = model.top_class_groups(np.zeros(model.n, np.int64),
                                                       model.top_count)
    model.rebuild_concentration = rebuild
    sets.append(rebuild(model.concentration_union))


def _overrides_set(run: PMRun, model: Model, pos_min: np.ndarray, overrides, value
                   ) -> ScenarioSet:
    from .house import EQUITY_TYPES, NO_OVERRIDE

    if isinstance(value, dict):
        overrides = overrides.overlaid(value)
    grids = []
    for cg, reg in enumerate(run.reg_grids):
        down = up = 0.0
        for sym in run.cg_members[cg]:
            und = run.portfolio.underlyings[sym]
            o = overrides.symbols.get(sym) or NO_OVERRIDE
            down = max(down, o.down if o.down is not None else (o.range or 0.0))
            up = max(up, o.up if o.up is not None else (o.range or 0.0))
            if (o.eligible is False or (overrides.min_price_for_pm is not None
                                        and und.type in EQUITY_TYPES
                                        and und.price < overrides.min_price_for_pm)):
                down = max(down, overrides.ineligible_range)
                up = max(up, overrides.ineligible_range)
        grids.append(scenarios.widened_grid(reg, down, up) if (down or up) else reg)
    return _grid_set("overrides", run, model, pos_min, grids,
                     naked=_naked_terms(run, model, overrides))


def _bucket(kind: str, is_call: bool, units: float) -> str | None:
    if kind in ("stock", "future"):
        return "ls" if units > 0 else "ss"
    if kind in ("option", "future_option"):
        if is_call:
            return "lc" if units > 0 else "sc"
        return "lp" if units > 0 else "spu"
    return None


def _naked_terms(run: PMRun, model: Model, settings) -> list[Naked]:
    """The naked-short floor (``house._naked_short_minimums``) as affine terms of ``x``:
    per underlying, units of short calls less long calls and long stock (and of short puts
    less long puts and short stock), each floored at zero."""
    from .house import NO_OVERRIDE

    portfolio = run.portfolio
    line_of = {int(i): k for k, i in enumerate(model.index.tolist())}
    sides: dict[str, list] = {}
    for i, p in enumerate(portfolio.positions):
        units = float(p.quantity) * float(p.multiplier)
        bucket = _bucket(p.kind, p.is_call, units)
        if bucket is None:
            continue
        call = {"sc": 1.0, "lc": -1.0, "ls": -1.0}.get(bucket, 0.0)
        put = {"spu": 1.0, "lp": -1.0, "ss": -1.0}.get(bucket, 0.0)
        entry = sides.setdefault(p.root, [0.0, np.zeros(model.n), 0.0, np.zeros(model.n)])
        entry[0] += call * abs(units)
        entry[2] += put * abs(units)
        k = line_of.get(i)
        if k is not None:  # closing a contract takes |multiplier| units out of its bucket
            entry[1][k] -= call * float(p.multiplier)
            entry[3][k] -= put * float(p.multiplier)
    terms = []
    for sym, (call0, call_b, put0, put_b) in sides.items():
        own = (settings.symbols.get(sym) or NO_OVERRIDE).naked_short_fraction
        fraction = settings.naked_short_fraction if own is None else own
        if not fraction:
            continue
        und = portfolio.underlyings[sym]
        cg = run.cg_index[und.class_group]
        coef = float(fraction) * float(und.price)
        terms += [Naked(cg, coef, call0, call_b), Naked(cg, coef, put0, put_b)]
    return terms


def _regt_slopes(portfolio: Portfolio, params: ParameterSet, valuation: Valuation,
                 model: Model) -> tuple[float, np.ndarray]:
    """R0 and, per line, the engine's change of the Reg T requirement per contract when the
    position is closed whole (the programme's linear stand-in for strategy pairing)."""
    base = engine_requirement(portfolio, params, valuation, model.basis, model)
    r0 = base(np.zeros(model.n, np.int64))
    slope = np.zeros(model.n)
    for k in range(model.n):
        x = np.zeros(model.n, np.int64)
        x[k] = model.cap[k]
        slope[k] = (base(x) - r0) / model.cap[k]
    return r0, slope


# --------------------------------------------------------------------------- the engine's check


def book_after(portfolio: Portfolio, valuation: Valuation, model: Model, x: np.ndarray
               ) -> tuple[Portfolio, Valuation]:
    """The portfolio left after closing ``x`` (positions closed whole dropped), with the
    valuation's per-position arrays cut to match (marks and vols do not depend on size)."""
    quantity = np.array([float(p.quantity) for p in portfolio.positions])
    sign = np.sign(model.quantity)
    quantity[model.index] = model.quantity - sign * x
    keep = [i for i in range(len(quantity)) if quantity[i] != 0.0]
    positions = tuple(replace(portfolio.positions[i], index=k, quantity=float(quantity[i]))
                      for k, i in enumerate(keep))
    cut = np.array(keep, dtype=np.int64)

    def part(a: np.ndarray) -> np.ndarray:
        return a[cut] if a.shape[0] == len(quantity) else a

    left = Valuation(rows=[valuation.rows[i] for i in keep], marks=part(valuation.marks),
                     vols=part(valuation.vols), warnings=list(valuation.warnings),
                     models=part(valuation.models), spots=part(valuation.spots),
                     market_values=part(valuation.market_values))
    return replace(portfolio, positions=positions), left


def engine_requirement(portfolio: Portfolio, params: ParameterSet, valuation: Valuation,
                       basis: str, model: Model | None = None
                       ) -> Callable[[np.ndarray], float]:
    """The full engine's requirement of the book after closing ``x``: portfolio margin with
    the house layer the portfolio asks for, or Reg T (initial or maintenance)."""
    if model is None:
        model = _lines_only(portfolio)

    def requirement(x: np.ndarray) -> float:
        left, valued = book_after(portfolio, valuation, model, np.asarray(x))
        if not left.positions:
            return 0.0
        if basis == PM_BASIS:
            return float(calculate_block(left, params, valued)["requirement"])
        block = regt.calculate_block(left, params, valued)
        return float(block["initial" if basis == REGT_INITIAL else "maintenance"])

    return requirement


def _lines_only(portfolio: Portfolio) -> Model:
    """Every position with a whole contract as a line (what ``book_after`` needs)."""
    lines = [i for i, p in enumerate(portfolio.positions)
             if p.kind != "uniswap_v3_lp" and int(abs(p.quantity)) >= 1]
    q = np.array([float(portfolio.positions[i].quantity) for i in lines])
    z = np.zeros(len(lines))
    return Model(basis=PM_BASIS, position_ids=[portfolio.positions[i].id for i in lines],
                 index=np.array(lines, np.int64), quantity=q,
                 cap=np.floor(np.abs(q)).astype(np.int64), multiplier=z, product_class=[],
                 line_cg=z.astype(np.int64), min_per_contract=z, unit_cost=z, penalty=0.0,
                 sets=[])


# --------------------------------------------------------------------------- the programme


@dataclass
class _Layout:
    """Column offsets of the programme's variables, per scenario set."""

    n: int
    t: list[np.ndarray] = field(default_factory=list)  # t_k columns
    v: list[dict[int, int]] = field(default_factory=list)  # cg -> first v column (width)
    w: list[dict[int, int]] = field(default_factory=list)  # cg -> first w column (width)
    m: list[dict[int, int]] = field(default_factory=list)  # cg -> m column
    nk: list[list[int]] = field(default_factory=list)  # naked term -> its column
    size: int = 0


class _Rows:
    """Sparse constraint rows ``a x <= hi`` gathered as triplets."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.hi: list[float] = []

    def add(self, cols, vals, hi: float) -> None:
        cols = np.asarray(cols, dtype=np.int64)
        self.r.append(np.full(cols.shape[0], len(self.hi), np.int64))
        self.c.append(cols)
        self.v.append(np.asarray(vals, dtype=np.float64))
        self.hi.append(hi)

    def extend(self, other: _Rows) -> None:
        offset = len(self.hi)
        self.r += [r + offset for r in other.r]
        self.c += other.c
        self.v += other.v
        self.hi += other.hi

    def constraint(self, size: int) -> LinearConstraint:
        A = sp.csr_matrix((np.concatenate(self.v), (np.concatenate(self.r),
                                                     np.concatenate(self.c))),
                          shape=(len(self.hi), size))
        return LinearConstraint(A, -np.inf, np.array(self.hi))


def _loss_sets(model: Model) -> list[ScenarioSet]:
    """The sets the programme writes loss rows for: every requirement set, or the regulatory
    one alone (its offsets' ``v`` serve the risk-reducing rows) on a Reg T basis."""
    return model.sets if model.basis == PM_BASIS else model.sets[:1]


def _layout(model: Model) -> _Layout:
    lay = _Layout(n=model.n)
    col = 2 * model.n

    def take(count: int) -> int:
        nonlocal col
        col += count
        return col - count

    for s in _loss_sets(model):
        n_pg = s.pg_offset.shape[0]
        lay.t.append(np.arange(take(n_pg), col))
        multi = np.bincount(s.cg_pg, minlength=n_pg) > 1
        rows = np.bincount(s.row_cg, minlength=s.n_cg)
        lay.v.append({c: take(s.width) for c in range(s.n_cg) if multi[s.cg_pg[c]]})
        lay.w.append({c: take(s.width) for c in range(s.n_cg)
                      if multi[s.cg_pg[c]] and rows[c] > 1 and s.pg_offset[s.cg_pg[c]] > 0})
        lay.m.append({c: take(1) for c in sorted({k.cg for k in s.naked})})
        lay.nk.append([take(1) for _ in s.naked])
    lay.size = col
    return lay


def _a_row(s: ScenarioSet, r: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    row = s.A[r * s.width + j]
    return row.indices.astype(np.int64), row.data


def _single_loss_rows(rows: _Rows, s: ScenarioSet, c: int, t_col: int) -> None:
    """t >= -P at every point, for each row of a product group's only class group."""
    for r in s.rows_of(c).tolist():
        for j in np.flatnonzero(s.valid[r]).tolist():
            cols, vals = _a_row(s, r, j)  # -A x - t <= P0
            rows.add(np.append(cols, t_col), np.append(-vals, -1.0), hi=float(s.P0[r, j]))


def _multi_loss_rows(rows: _Rows, s: ScenarioSet, k: int, lay_k: tuple, members) -> None:
    """v >= -P (and w >= -P for two-row class groups) per row, then t >= sum of the class
    groups' (1 - off) v + off w, a one-row class group's off w being -off P."""
    t_col, v_cols, w_cols = lay_k
    off = float(s.pg_offset[k])
    for j in np.flatnonzero(s.valid[s.rows_of(int(members[0]))[0]]).tolist():
        all_cols, all_vals, const = [[t_col]], [[-1.0]], 0.0
        for c in members.tolist():
            vc = v_cols[c] + j
            for r in s.rows_of(c).tolist():
                cols, vals = _a_row(s, r, j)
                rows.add(np.append(cols, vc), np.append(-vals, -1.0), hi=float(s.P0[r, j]))
                if c in w_cols:
                    rows.add(np.append(cols, w_cols[c] + j), np.append(-vals, -1.0),
                             hi=float(s.P0[r, j]))
            all_cols.append([vc])
            all_vals.append([1.0 - off])
            if c in w_cols:
                all_cols.append([w_cols[c] + j])
                all_vals.append([off])
            elif off > 0:
                r = int(s.rows_of(c)[0])
                cols, vals = _a_row(s, r, j)
                all_cols.append(cols)
                all_vals.append(-off * vals)
                const += off * float(s.P0[r, j])
        rows.add(np.concatenate(all_cols), np.concatenate(all_vals), hi=const)


def _loss_rows(rows: _Rows, s: ScenarioSet, k_set: int, lay: _Layout) -> None:
    """t_k >= each point's loss of product group k (module docstring)."""
    for k in range(s.pg_offset.shape[0]):
        members = np.flatnonzero(s.cg_pg == k)
        t_col = int(lay.t[k_set][k])
        if members.shape[0] == 1:
            _single_loss_rows(rows, s, int(members[0]), t_col)
        else:
            _multi_loss_rows(rows, s, k, (t_col, lay.v[k_set], lay.w[k_set]), members)


def _minimum_rows(rows: _Rows, model: Model, s: ScenarioSet, k_set: int, lay: _Layout
                  ) -> None:
    """t_k >= the product group's minimum charges; a class group with a naked-short floor
    through m_c >= M_c(x), m_c >= sum coef nk, nk >= a0 + b x."""
    m_cols = lay.m[k_set]
    for term, col in zip(s.naked, lay.nk[k_set], strict=True):
        nz = np.flatnonzero(term.b)  # b x - nk <= -a0
        rows.add(np.append(nz, col), np.append(term.b[nz], -1.0), hi=-term.a0)
    for c, col in m_cols.items():
        terms = [(t, k) for t, k in zip(s.naked, lay.nk[k_set], strict=True) if t.cg == c]
        rows.add([k for _, k in terms] + [col], [t.coef for t, _ in terms] + [-1.0], hi=0.0)
    for k in range(s.pg_offset.shape[0]):
        cols, vals, const = [int(lay.t[k_set][k])], [-1.0], 0.0
        for c in np.flatnonzero(s.cg_pg == k).tolist():
            lines = np.flatnonzero(model.line_cg == c)
            mu = model.min_per_contract[lines]
            if c in m_cols:  # -mu x - m_c <= -M0_c
                rows.add(np.append(lines, m_cols[c]), np.append(-mu, -1.0),
                         hi=-float(s.M0[c]))
                cols.append(m_cols[c])
                vals.append(1.0)
            else:
                cols += lines.tolist()
                vals += (-mu).tolist()
                const += float(s.M0[c])
        rows.add(cols, vals, hi=-const)


def _risk_rows(rows: _Rows, s: ScenarioSet, lay: _Layout) -> None:
    """Risk-reducing on the regulatory arrays: no class-group or product-group loss grows."""
    P0 = s.P0
    for c in range(s.n_cg):
        for j in np.flatnonzero(s.valid[c]).tolist():
            cols, vals = _a_row(s, c, j)
            if cols.size:  # -A x <= P0 - min(P0, 0)
                rows.add(cols, -vals, hi=float(max(P0[c, j], 0.0)))
    net0 = pg_net(s, P0)
    for k in range(s.pg_offset.shape[0]):
        members = np.flatnonzero(s.cg_pg == k)
        if members.shape[0] == 1:
            continue  # the class-group rows say it
        off = float(s.pg_offset[k])
        for j in np.flatnonzero(s.valid[members[0]]).tolist():
            all_cols, all_vals = [], []
            for c in members.tolist():
                cols, vals = _a_row(s, c, j)
                all_cols += [cols, [lay.v[0][c] + j]]
                all_vals += [-off * vals, [1.0 - off]]
            # off sum P - (1-off) sum v >= min(net0, 0)
            rows.add(np.concatenate(all_cols), np.concatenate(all_vals),
                     hi=off * float(P0[members, j].sum()) - min(float(net0[k, j]), 0.0))


@dataclass
class _Programme:
    lay: _Layout
    base: _Rows  # everything but the requirement rows, which change with the tightening
    bounds: Bounds
    integrality: np.ndarray
    objective: np.ndarray


def _programme(model: Model) -> _Programme:
    lay = _layout(model)
    n = model.n
    rows = _Rows()
    for i in range(n):  # x_i <= cap_i z_i
        rows.add([i, n + i], [1.0, -float(model.cap[i])], hi=0.0)
    for k_set, s in enumerate(_loss_sets(model)):
        _loss_rows(rows, s, k_set, lay)
        if model.basis == PM_BASIS:
            _minimum_rows(rows, model, s, k_set, lay)
    _risk_rows(rows, model.regulatory, lay)
    ub = np.full(lay.size, np.inf)
    ub[:n] = model.cap
    ub[n:2 * n] = 1.0
    integrality = np.zeros(lay.size)
    integrality[: 2 * n] = 1
    objective = np.zeros(lay.size)
    objective[:n] = model.unit_cost
    objective[n:2 * n] = model.penalty
    return _Programme(lay, rows, Bounds(np.zeros(lay.size), ub), integrality, objective)


def _requirement_rows(model: Model, prog: _Programme, target: Target, delta: float) -> _Rows:
    """(1 + cushion)(1 + delta) R + spread <= equity + allowed, per requirement."""
    rows = _Rows()
    scale = (1.0 + target.cushion) * (1.0 + delta)
    limit = target.equity + target.allowed_deficit - SAFETY
    lines = np.arange(model.n)
    if model.basis != PM_BASIS:
        rows.add(lines, scale * model.regt_slope + model.unit_cost,
                 hi=limit - scale * model.regt_base)
        return rows
    for t_cols in prog.lay.t:
        rows.add(np.concatenate([lines, t_cols]),
                 np.concatenate([model.unit_cost, np.full(t_cols.shape[0], scale)]), hi=limit)
    return rows


def _solve_once(model: Model, prog: _Programme, target: Target, delta: float,
                time_limit: float) -> tuple[np.ndarray | None, str]:
    rows = _Rows()
    rows.extend(prog.base)
    rows.extend(_requirement_rows(model, prog, target, delta))
    res = milp(prog.objective, constraints=rows.constraint(prog.lay.size),
               integrality=prog.integrality, bounds=prog.bounds,
               options={"time_limit": time_limit, "mip_rel_gap": 1e-9, "presolve": True})
    if res.x is None:
        return None, _status_name(res)
    x = np.rint(res.x[: model.n]).astype(np.int64)
    return np.clip(x, 0, model.cap), _status_name(res)


def _status_name(res) -> str:
    return {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded",
            4: "other"}.get(res.status, str(res.status)) + (f": {res.message}" if res.status
                                                          else "")


# --------------------------------------------------------------------------- plans


Verifier = Callable[[np.ndarray], float]


def _passes(requirement: float, spread: float, target: Target) -> bool:
    return ((1.0 + target.cushion) * requirement + spread
            <= target.equity + target.allowed_deficit + PASS_TOL)


def _trades(model: Model, x: np.ndarray) -> list[Trade]:
    return [Trade(model.position_ids[i], int(model.index[i]), model.product_class[i],
                  float(model.quantity[i]), int(x[i]), float(model.multiplier[i]),
                  float(model.unit_cost[i] / model.multiplier[i]),
                  float(model.unit_cost[i] * x[i]))
            for i in np.flatnonzero(x).tolist()]


def _plan(method: str, status: str, model: Model, x: np.ndarray, *, target: Target,
          before: float, after: float | None, delta: float, rounds: int, started: float,
          solver: str, message: str = "") -> Plan:
    spread = model.spread_cost(x)
    return Plan(method=method, status=status, trades=_trades(model, x), spread_cost=spread,
                penalty_cost=model.penalty * int(np.count_nonzero(x)),
                requirement_before=before, requirement_after=after,
                model_requirement_after=model.requirement(x), equity_before=target.equity,
                equity_after=target.equity - spread, tightening=delta, rounds=rounds,
                seconds=time.perf_counter() - started, solver_status=solver, message=message)


def _trivial(method: str, model: Model, target: Target, verify: Verifier, started: float
             ) -> Plan | None:
    """Not needed (already cured), or infeasible (closing everything does not cure)."""
    zero = np.zeros(model.n, np.int64)
    before = verify(zero)
    if _passes(before, 0.0, target):
        return _plan(method, NOT_NEEDED, model, zero, target=target, before=before,
                     after=before, delta=0.0, rounds=0, started=started, solver="not run",
                     message="the requirement is already covered: nothing to close")
    everything = model.cap.copy()
    left = verify(everything)
    if not _passes(left, model.spread_cost(everything), target):
        return _plan(method, INFEASIBLE, model, zero, target=target, before=before, after=None,
                     delta=0.0, rounds=0, started=started, solver="not run",
                     message=_infeasible_message(model, target, everything, left))
    return None


def _infeasible_message(model: Model, target: Target, everything: np.ndarray,
                        left: float) -> str:
    equity_after = target.equity - model.spread_cost(everything)
    untraded = "" if model.n else " (no position can be traded)"
    return (f"cannot be cured even closing every position{untraded}: equity after closing "
            f"all would be {equity_after:,.2f} against a requirement of {left:,.2f} left "
            f"(with the {target.cushion:.2%} cushion "
            f"{(1 + target.cushion) * left:,.2f}); a deposit is needed")


MAX_ROUNDS = 12  # programmes solved (or greedy passes) at most, tightenings and refinements


def _schedule(model: Model):
    """The rounds: the tightening, and before each step up, any refinement of the model the
    last refused plan calls for (``Model.refine``); yields (round, delta), receives x."""
    rounds, step = 0, 0
    while rounds < MAX_ROUNDS and step < len(TIGHTENING):
        rounds += 1
        x = yield rounds, TIGHTENING[step]
        if x is not None and not model.refine(x):
            step += 1


def solve(model: Model, target: Target, verify: Verifier, *, time_limit: float = 30.0
          ) -> Plan:
    """The least-cost plan the engine confirms (module docstring), tightened as needed."""
    started = time.perf_counter()
    trivial = _trivial("milp", model, target, verify, started)
    if trivial is not None:
        return trivial
    before = verify(np.zeros(model.n, np.int64))
    solver, after, x, delta, rounds = "", None, np.zeros(model.n, np.int64), 0.0, 0
    schedule = _schedule(model)
    step = next(schedule, None)
    while step is not None:
        rounds, delta = step
        prog = _programme(model)
        found, solver = _solve_once(model, prog, target, delta, time_limit)
        if found is None:
            return _plan("milp", NOT_CURED, model, x, target=target, before=before,
                         after=after, delta=delta, rounds=rounds, started=started,
                         solver=solver, message=f"the programme found no plan at a "
                         f"{delta:.1%} tightening")
        x = found
        after = verify(x)
        if _passes(after, model.spread_cost(x), target):
            return _plan("milp", CURED, model, x, target=target, before=before, after=after,
                         delta=delta, rounds=rounds, started=started, solver=solver)
        step = _send(schedule, x)
    return _plan("milp", NOT_CURED, model, x, target=target, before=before, after=after,
                 delta=delta, rounds=rounds, started=started, solver=solver,
                 message="the engine did not confirm a plan after every tightening")


def _send(schedule, x: np.ndarray):
    try:
        return schedule.send(x)
    except StopIteration:
        return None


# --------------------------------------------------------------------------- greedy


def _candidates(model: Model, x: np.ndarray) -> list[np.ndarray]:
    """Trades from ``x``: close one position's remainder, or a whole class group's."""
    rest = model.cap - x
    out = []
    for i in np.flatnonzero(rest > 0).tolist():
        step = np.zeros(model.n, np.int64)
        step[i] = rest[i]
        out.append(step)
    for c in np.unique(model.line_cg[rest > 0]).tolist():
        members = (model.line_cg == c) & (rest > 0)
        if members.sum() > 1:
            out.append(np.where(members, rest, 0))
    return out


def _excess_need(model: Model, x: np.ndarray, target: Target, scale: float) -> float:
    """How far ``x`` is from cured under the model (<= 0: cured)."""
    return (scale * model.requirement(x) + model.spread_cost(x)
            - target.equity - target.allowed_deficit + SAFETY)


def _shrink(model: Model, x: np.ndarray, step: np.ndarray, target: Target, scale: float
            ) -> np.ndarray:
    """The least part of a one-position step that still cures (the need is convex along it)."""
    i = int(np.flatnonzero(step)[0])
    lo, hi = 0, int(step[i])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = x.copy()
        trial[i] += mid
        if _excess_need(model, trial, target, scale) <= 0:
            hi = mid
        else:
            lo = mid
    out = np.zeros_like(step)
    out[i] = hi
    return out


def _best_step(model: Model, x: np.ndarray, r_now: float) -> np.ndarray | None:
    best, best_ratio = None, 0.0
    touched = x > 0
    for step in _candidates(model, x):
        trial = x + step
        if not model.risk_reducing(trial):
            continue
        cost = model.spread_cost(step) + model.penalty * int(np.count_nonzero(
            (step > 0) & ~touched))
        gain = r_now - model.requirement(trial)
        if gain <= 0:
            continue
        ratio = gain / cost if cost > 0 else np.inf
        if best is None or ratio > best_ratio:
            best, best_ratio = step, ratio
    return best


def greedy(model: Model, target: Target, verify: Verifier) -> Plan:
    """The greedy baseline under the same model and constraints (module docstring)."""
    started = time.perf_counter()
    trivial = _trivial("greedy", model, target, verify, started)
    if trivial is not None:
        return trivial
    before = verify(np.zeros(model.n, np.int64))
    x, after, delta, rounds = np.zeros(model.n, np.int64), None, 0.0, 0
    schedule = _schedule(model)
    step = next(schedule, None)
    while step is not None:
        rounds, delta = step
        x, stuck = _greedy_pass(model, x, target, (1.0 + target.cushion) * (1.0 + delta))
        after = verify(x)
        if stuck:
            return _plan("greedy", NOT_CURED, model, x, target=target, before=before,
                         after=after, delta=delta, rounds=rounds, started=started,
                         solver="greedy", message="no risk-reducing trade lowers the "
                         "requirement further")
        if _passes(after, model.spread_cost(x), target):
            return _plan("greedy", CURED, model, x, target=target, before=before, after=after,
                         delta=delta, rounds=rounds, started=started, solver="greedy")
        step = _send(schedule, x)
    return _plan("greedy", NOT_CURED, model, x, target=target, before=before, after=after,
                 delta=delta, rounds=rounds, started=started, solver="greedy",
                 message="the engine did not confirm a plan after every tightening")


def _greedy_pass(model: Model, x: np.ndarray, target: Target, scale: float
                 ) -> tuple[np.ndarray, bool]:
    """Best trades per dollar from ``x`` until the model says cured; (x, stuck)."""
    while _excess_need(model, x, target, scale) > 0:
        step = _best_step(model, x, model.requirement(x))
        if step is None:
            return x, True
        if np.count_nonzero(step) == 1 and _excess_need(model, x + step, target, scale) <= 0:
            step = _shrink(model, x, step, target, scale)
        x = x + step
    return x, False


# --------------------------------------------------------------------------- together


@dataclass
class Proposal:
    plan: Plan
    greedy: Plan
    basis: str


def propose(portfolio: Portfolio, params: ParameterSet, valuation: Valuation, costs: Costs,
            target: Target, basis: str = PM_BASIS, *, time_limit: float = 30.0) -> Proposal:
    """The optimal plan and the greedy alternative for one book, both engine-verified."""
    model = build_model(portfolio, params, valuation, costs, basis)
    verify = engine_requirement(portfolio, params, valuation, basis, model)
    return Proposal(plan=solve(model, target, verify, time_limit=time_limit),
                    greedy=greedy(model, target, verify), basis=basis)
