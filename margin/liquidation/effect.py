"""What a stored liquidation plan does to the account, for the desk to judge before approving:
the profit and loss at each valuation point of each class group before the trades, after the
plan's and after the greedy alternative's, with the requirement before and after each.

Read-only: it rebuilds the book and market the plan rests on (its snapshot's recorded inputs,
``margin.reproduce``, as ``propose_plan`` did) and writes nothing. The alternative is the one
stored with the plan; a plan stored without one (``greedy`` empty) has it computed here from the
same inputs (snapshot, policy costs, target), shown and never saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from margin.engine import liquidation as engine
from margin.engine.portfolio_margin import PMRun

from ..figures import money
from .models import LiquidationPlan


@dataclass(frozen=True)
class PointEffect:
    """One valuation point of one class group: P&L today, after the plan, after the greedy."""

    point: float  # relative move of the underlying (-0.15: down 15 %)
    before: float
    plan: float
    greedy: float


@dataclass(frozen=True)
class GroupEffect:
    class_group: str
    points: list[PointEffect]

    @property
    def worst_before(self) -> float:
        return min((p.before for p in self.points), default=0.0)

    @property
    def worst_plan(self) -> float:
        return min((p.plan for p in self.points), default=0.0)

    @property
    def worst_greedy(self) -> float:
        return min((p.greedy for p in self.points), default=0.0)


@dataclass(frozen=True)
class PlanEffect:
    groups: list[GroupEffect]
    requirement_before: Decimal
    requirement_plan: Decimal | None
    requirement_greedy: Decimal | None
    #: the greedy alternative in the stored plan's terms (``engine.Plan.as_dict`` in money)
    greedy: dict[str, Any] = field(default_factory=dict)
    #: False when the plan had none stored and it was computed for this page (not saved)
    greedy_stored: bool = True


def _closes(model: engine.Model, trades: list[dict]) -> np.ndarray:
    """The plan's trades as the engine's vector of contracts closed per tradeable line."""
    closes = {t["position"]: int(t["quantity"]) for t in trades}
    return np.array([closes.get(p, 0) for p in model.position_ids], dtype=np.int64)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else money(Decimal(str(value)))


def plan_effect(plan: LiquidationPlan) -> PlanEffect:
    """The scenario effect of ``plan`` and of its greedy alternative (module docstring)."""
    from .services import _book, _money_plan

    portfolio, params, valuation = _book(plan.snapshot, plan.basis)
    costs = engine.Costs(dict(plan.costs["half_spread"]), float(plan.costs["fixed_penalty"]))
    model = engine.build_model(portfolio, params, valuation, costs, plan.basis)
    greedy, stored = plan.greedy or {}, bool(plan.greedy)
    if not stored:
        # Same inputs as the proposal: its snapshot, its policy's costs, its target.
        target = engine.Target(equity=float(plan.equity_before), cushion=float(plan.cushion),
                               allowed_deficit=float(plan.allowed_deficit))
        verify = engine.engine_requirement(portfolio, params, valuation, plan.basis, model)
        greedy = _money_plan(engine.greedy(model, target, verify))
    groups = PMRun(portfolio, params, valuation).groups
    regulatory = model.regulatory
    zero = np.zeros(model.n, np.int64)
    pnl = {name: regulatory.cg_pnl(x) for name, x in (
        ("before", zero), ("plan", _closes(model, plan.trades)),
        ("greedy", _closes(model, greedy.get("trades", []))))}
    valid = regulatory.cg_valid()
    effects = []
    for c, name in enumerate(groups.names):
        points = [PointEffect(point=float(groups.points[c, j]), before=float(pnl["before"][c, j]),
                              plan=float(pnl["plan"][c, j]), greedy=float(pnl["greedy"][c, j]))
                  for j in range(regulatory.width) if valid[c, j]]
        effects.append(GroupEffect(class_group=name, points=points))
    return PlanEffect(groups=effects, requirement_before=money(plan.requirement_before),
                      requirement_plan=plan.requirement_after,
                      requirement_greedy=_decimal(greedy.get("requirement_after")),
                      greedy=greedy, greedy_stored=stored)
