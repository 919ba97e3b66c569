"""Synthetic books for liquidation plans (the bench line ``liquidation_plan`` and the tests).

``random_book(n, seed)`` is a portfolio-margin book of ``n`` positions over a few stocks and an
index family: long and short stock, listed options on both sides (strikes around the money,
three expiries), an SPX/SPY class group with a broad-index product group and offsets between
two index class groups. ``deficit_target`` sets the equity below the requirement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from margin.engine.liquidation import Costs, Target
from margin.engine.parameters import ParameterSet, load_parameter_set
from margin.engine.portfolio import Portfolio, Position, Underlying
from margin.engine.portfolio_margin import calculate_block
from margin.engine.valuation import Valuation, value_positions

VALUATION_DATE = date(2026, 1, 2)
#: half spreads per product class (price units) and the fixed penalty the bench uses
COSTS = Costs(half_spread={"equity": 0.02, "narrow_index": 0.05, "broad_index_high_cap": 0.25,
                           "broad_index": 0.10, "future": 0.125, "crypto": 1.0,
                           "stablecoin": 0.0005},
              fixed_penalty=25.0)

STOCKS = {"AAA": 50.0, "BBB": 120.0, "CCC": 310.0, "DDD": 18.0, "EEE": 75.0, "FFF": 240.0,
          "GGG": 95.0, "HHH": 33.0}
INDEX = {"SPX": (5000.0, "index"), "SPY": (500.0, "etf")}  # one class group: SPX
NDX = (17000.0, "index")  # broad_index_high_cap, own class group, same product group


@dataclass
class Book:
    portfolio: Portfolio
    params: ParameterSet
    valuation: Valuation


def _underlyings() -> dict[str, Underlying]:
    unds = {s: Underlying(s, p, "equity", "stock", s, s) for s, p in STOCKS.items()}
    for sym, (price, typ) in INDEX.items():
        unds[sym] = Underlying(sym, price, "broad_index_high_cap", typ, "SPX", "BROAD",
                               dividend_yield=0.013)
    unds["NDX"] = Underlying("NDX", NDX[0], "broad_index_high_cap", NDX[1], "NDX", "BROAD",
                             dividend_yield=0.008)
    return unds


def random_book(n: int, seed: int = 0, *, house: dict | None = None) -> Book:
    """``n`` positions on distinct contracts, valued (marks from their implied vols)."""
    rng = np.random.default_rng(seed)
    unds = _underlyings()
    symbols = list(unds)
    positions: list[Position] = []
    seen: set[tuple] = set()
    while len(positions) < n:
        sym = symbols[int(rng.integers(len(symbols)))]
        und = unds[sym]
        if und.type in ("stock", "etf") and rng.random() < 0.25:
            key = (sym,)
            qty = float(rng.choice([-1, 1]) * rng.integers(1, 20) * 10)
            position = dict(kind="stock", symbol=sym)
        else:
            right = "call" if rng.random() < 0.5 else "put"
            step = 5.0 if und.price >= 100 else 1.0
            strike = round(und.price * (1 + rng.choice([-0.1, -0.05, 0.0, 0.05, 0.1]))
                           / step) * step
            days = int(rng.choice([30, 60, 120]))
            key = (sym, right, strike, days)
            qty = float(rng.choice([-1, 1]) * rng.integers(1, 10))
            position = dict(kind="option", underlying=sym, right=right, strike=strike,
                            time_to_expiry=days / 365.0, multiplier=100.0,
                            implied_vol=float(rng.uniform(0.18, 0.45)),
                            exercise="european" if und.type == "index" else "american")
        if key in seen:
            continue
        seen.add(key)
        k = len(positions)
        positions.append(Position(index=k, id="-".join(map(str, key)), quantity=qty,
                                  **position))
    portfolio = Portfolio(VALUATION_DATE, unds, tuple(positions), rate=0.04, house=house)
    params = load_parameter_set()
    return Book(portfolio, params, value_positions(portfolio, params, True))


def requirement_of(book: Book) -> float:
    return float(calculate_block(book.portfolio, book.params, book.valuation)["requirement"])


def deficit_target(book: Book, *, equity_fraction: float = 0.8, cushion: float = 0.05
                   ) -> Target:
    """Equity at a fraction of today's requirement: a deficit to cure."""
    return Target(equity=equity_fraction * requirement_of(book), cushion=cushion)


#: the house components the bench books carry (a firm that switches every one on)
BENCH_HOUSE = {"vol_shift": 0.25, "concentration": True, "stress_range": 0.25,
               "overrides": True}


def plan_line(n: int, seed: int | None = None) -> dict:
    """One ``liquidation_plan`` line: a random house-layered book of ``n`` positions with
    equity at 60 % of its requirement, the programme's plan beside the greedy one."""
    import time

    from margin.engine import liquidation

    book = random_book(n, seed=n if seed is None else seed, house=BENCH_HOUSE)
    target = deficit_target(book, equity_fraction=0.6)
    started = time.perf_counter()
    model = liquidation.build_model(book.portfolio, book.params, book.valuation, COSTS)
    verify = liquidation.engine_requirement(book.portfolio, book.params, book.valuation,
                                            liquidation.PM_BASIS, model)
    plan = liquidation.solve(model, target, verify)
    seconds = time.perf_counter() - started
    alternative = liquidation.greedy(model, target, verify)
    return {"bench": "liquidation_plan", "positions": n, "seconds": round(seconds, 3),
            "cost": round(plan.cost, 2), "greedy_cost": round(alternative.cost, 2),
            "positions_touched": plan.positions_touched,
            "greedy_positions_touched": alternative.positions_touched,
            "status": plan.status, "greedy_status": alternative.status,
            "greedy_seconds": round(alternative.seconds, 3),
            "requirement_before": round(plan.requirement_before, 2),
            "requirement_after": None if plan.requirement_after is None
            else round(plan.requirement_after, 2),
            "equity": round(target.equity, 2), "rounds": plan.rounds}
