"""Liquidation plans (margin.engine.liquidation): the programme against brute force, the
risk-reducing property, verification and tightening, the infeasible and not-needed cases."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from margin.bench.liquidation import COSTS, Book, deficit_target, random_book, requirement_of
from margin.engine import liquidation as L
from margin.engine.portfolio_margin import calculate_block
from margin.engine.valuation import value_positions

HOUSE = {"vol_shift": 0.25, "concentration": True, "stress_range": 0.25, "overrides": True}


def small_book(seed: int, n: int = 4, cap: int = 3, house=None) -> Book:
    """A random book with every position cut to at most ``cap`` contracts (brute-forceable)."""
    big = random_book(n, seed, house=house)
    positions = tuple(replace(p, quantity=float(np.sign(p.quantity) * min(abs(p.quantity), cap)))
                      for p in big.portfolio.positions)
    portfolio = replace(big.portfolio, positions=positions)
    return Book(portfolio, big.params, value_positions(portfolio, big.params, True))


def scenario_pnl(book: Book, portfolio) -> dict[tuple[str, str], np.ndarray]:
    """Every class group's and product group's P&L at the regulatory points, by name."""
    block = calculate_block(portfolio, book.params,
                            value_positions(portfolio, book.params, True)) \
        if portfolio.positions else {"class_groups": [], "product_groups": []}
    out = {("cg", g["class_group"]): np.array(g["pnl"]) for g in block["class_groups"]}
    out.update({("pg", g["product_group"]): np.array(g["pnl"])
                for g in block["product_groups"]})
    return out


def no_loss_grows(book: Book, x: np.ndarray, model: L.Model) -> bool:
    before = scenario_pnl(book, book.portfolio)
    after_portfolio, _ = L.book_after(book.portfolio, book.valuation, model, x)
    after = scenario_pnl(book, after_portfolio)
    for key, pnl in before.items():
        left = after.get(key, np.zeros_like(pnl))
        if np.any(left < np.minimum(pnl, 0.0) - 1e-6):
            return False
    return True


def plan_vector(model: L.Model, plan: L.Plan) -> np.ndarray:
    x = np.zeros(model.n, np.int64)
    for t in plan.trades:
        x[model.position_ids.index(t.position_id)] = t.close
    return x


def brute_force(book: Book, model: L.Model, target: L.Target) -> float | None:
    """The least cost over every risk-reducing whole-contract plan the engine confirms."""
    verify = L.engine_requirement(book.portfolio, book.params, book.valuation, L.PM_BASIS,
                                  model)
    best = None
    for combo in itertools.product(*(range(int(c) + 1) for c in model.cap)):
        x = np.array(combo, dtype=np.int64)
        cost = model.cost(x)
        if best is not None and cost >= best:
            continue
        if not L._passes(verify(x), model.spread_cost(x), target):
            continue
        if no_loss_grows(book, x, model):
            best = cost
    return best


@pytest.mark.parametrize("seed,house", [(1, None), (2, None), (3, None), (4, HOUSE),
                                        (5, HOUSE)])
def test_the_programme_finds_the_brute_force_optimum(seed, house):
    book = small_book(seed, house=house)
    target = deficit_target(book, equity_fraction=0.6)
    model = L.build_model(book.portfolio, book.params, book.valuation, COSTS)
    verify = L.engine_requirement(book.portfolio, book.params, book.valuation, L.PM_BASIS,
                                  model)
    plan = L.solve(model, target, verify)
    best = brute_force(book, model, target)
    assert best is not None, "the brute force found a cure"
    assert plan.status == L.CURED
    assert plan.cost == pytest.approx(best, abs=1e-6)
    assert plan.requirement_after == pytest.approx(verify(plan_vector(model, plan)))
    assert (1 + target.cushion) * plan.requirement_after + plan.spread_cost \
        <= target.equity + 0.005


@pytest.mark.parametrize("seed", range(8))
def test_no_plan_increases_a_scenario_loss_or_opens_a_position(seed):
    rng = np.random.default_rng(seed)
    house = HOUSE if seed % 2 else None
    book = random_book(int(rng.integers(6, 25)), seed=100 + seed, house=house)
    target = deficit_target(book, equity_fraction=float(rng.uniform(0.3, 0.9)))
    proposal = L.propose(book.portfolio, book.params, book.valuation, COSTS, target)
    model = L.build_model(book.portfolio, book.params, book.valuation, COSTS)
    for plan in (proposal.plan, proposal.greedy):
        for trade in plan.trades:
            assert 0 < trade.close <= abs(trade.quantity_before)
            assert abs(trade.quantity_after) < abs(trade.quantity_before)
            assert trade.quantity_after == 0 or \
                np.sign(trade.quantity_after) == np.sign(trade.quantity_before)
        assert no_loss_grows(book, plan_vector(model, plan), model)
        if plan.status == L.CURED:
            assert (1 + target.cushion) * plan.requirement_after + plan.spread_cost \
                <= target.equity + 0.005
    assert proposal.plan.status == L.CURED
    if proposal.greedy.status == L.CURED:
        assert proposal.plan.cost <= proposal.greedy.cost + 1e-6


def test_the_model_is_the_engine_on_random_books():
    for seed, house in ((7, None), (8, HOUSE)):
        book = random_book(30, seed, house=house)
        model = L.build_model(book.portfolio, book.params, book.valuation, COSTS)
        verify = L.engine_requirement(book.portfolio, book.params, book.valuation,
                                      L.PM_BASIS, model)
        rng = np.random.default_rng(seed)
        for _ in range(5):
            x = (rng.random(model.n) * (model.cap + 1)).astype(np.int64)
            engine = verify(x)
            if house is None:
                assert model.requirement(x) == pytest.approx(engine, rel=1e-9)
            else:  # two grids for the concentration class groups: never below the engine
                assert model.requirement(x) >= engine * (1 - 1e-9)


def test_verification_catches_a_loosened_formulation():
    book = random_book(20, seed=11)
    target = deficit_target(book, equity_fraction=0.5)
    model = L.build_model(book.portfolio, book.params, book.valuation, COSTS)
    verify = L.engine_requirement(book.portfolio, book.params, book.valuation, L.PM_BASIS,
                                  model)
    # Loosen: the model sees every loss and minimum at 60 % of its size.
    s = model.regulatory
    model.sets[0] = replace(s, P0=s.P0 * 0.6, A=s.A * 0.6, M0=s.M0 * 0.6)
    model.min_per_contract = model.min_per_contract * 0.6
    first, _ = L._solve_once(model, L._programme(model), target, 0.0, 30.0)
    assert first is not None
    assert not L._passes(verify(first), model.spread_cost(first), target), \
        "the loosened programme's first plan does not cure in the engine"
    plan = L.solve(model, target, verify)
    assert plan.rounds > 1 and plan.tightening > 0
    if plan.status == L.CURED:
        x = plan_vector(model, plan)
        assert L._passes(verify(x), model.spread_cost(x), target)
    else:
        assert plan.status == L.NOT_CURED and "did not confirm" in plan.message


def test_a_book_that_cannot_be_cured_says_so():
    book = random_book(10, seed=12)
    target = L.Target(equity=-5_000.0, cushion=0.05)  # under water: no trade gives it back
    proposal = L.propose(book.portfolio, book.params, book.valuation, COSTS, target)
    for plan in (proposal.plan, proposal.greedy):
        assert plan.status == L.INFEASIBLE and plan.trades == []
        assert "cannot be cured even closing every position" in plan.message
        assert "a deposit is needed" in plan.message


def test_nothing_to_close_when_covered():
    book = random_book(10, seed=13)
    target = L.Target(equity=2 * requirement_of(book), cushion=0.05)
    proposal = L.propose(book.portfolio, book.params, book.valuation, COSTS, target)
    assert proposal.plan.status == L.NOT_NEEDED and proposal.plan.trades == []
    assert proposal.plan.cost == 0.0


def test_a_reg_t_basis_is_verified_by_the_reg_t_engine():
    from margin.engine import regt

    book = random_book(12, seed=14)
    initial = regt.calculate_block(book.portfolio, book.params, book.valuation)["initial"]
    target = L.Target(equity=0.7 * initial, cushion=0.0)
    proposal = L.propose(book.portfolio, book.params, book.valuation, COSTS, target,
                         basis=L.REGT_INITIAL)
    plan = proposal.plan
    assert plan.status == L.CURED and plan.requirement_before == pytest.approx(initial)
    model = L.build_model(book.portfolio, book.params, book.valuation, COSTS, L.REGT_INITIAL)
    left, valued = L.book_after(book.portfolio, book.valuation, model,
                                plan_vector(model, plan))
    assert regt.calculate_block(left, book.params, valued)["initial"] == \
        pytest.approx(plan.requirement_after)
    assert plan.requirement_after + plan.spread_cost <= target.equity + 0.005
