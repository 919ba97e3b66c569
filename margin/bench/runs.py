"""``make bench`` (``python -m margin.bench``): engine performance figures as JSON lines.

Each bench is a function ``(BenchContext) -> Iterable[dict]``; ``BENCHES`` runs them in order
and every dict is printed as one JSON line. Other parts of the engine add their own benches by
appending to ``BENCHES`` (``BENCHES.append(my_bench)``) or passing names on the command line
(``python -m margin.bench pm_full_recompute pm_one_account``).

Portfolio margin and historical VaR run on the synthetic book of ``margin.bench.book`` (100,000
accounts, 2,000,000 positions over 50,000 option series and 2,000 underlyings, half of the
series American), valued and aggregated with the batch code of the engine; no database.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from margin.engine import pricing
from margin.engine.defi import uniswap_v3
from margin.engine.portfolio import LPPosition
from margin.engine.series import (
    OPTION,
    aggregate,
    aggregate_numba,
    aggregate_numpy,
    build_structure,
    minimum_per_unit,
    series_pnl,
)
from margin.engine.var import available_cpus, historical_var_batch

from .book import (
    RATE,
    SyntheticBook,
    account_portfolio,
    make_book,
    make_var_book,
    one_account,
    one_account_batch,
)

N_SAMPLE = 1_000  # accounts of the naive per-account baseline
VAR_GRID_NODES = 64  # spot nodes per series of the VaR bench's American-grid variant


def _timeit(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs (the first warms caches and JIT) and the last result."""
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# --------------------------------------------------------------------------- context


@dataclass
class BenchContext:
    """Shared, lazily built fixtures of the benches."""

    cache: dict[str, Any] = field(default_factory=dict)
    #: what the benches leave running (a database, a worker), undone by ``close``, last first
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    @property
    def synthetic(self) -> SyntheticBook:
        if "synthetic" not in self.cache:
            self.cache["synthetic"] = make_book()
        return self.cache["synthetic"]


def full_recompute(sb: SyntheticBook, structure: Any | None = None) -> tuple[Any, dict]:
    """Market state -> series P&L -> (structure) -> aggregation -> account requirements."""
    times = {}
    t0 = time.perf_counter()
    if structure is None:
        structure = build_structure(sb.book, sb.series.class_group, sb.groups.product_group)
    t1 = time.perf_counter()
    pnl = series_pnl(sb.series, sb.groups, RATE)
    t2 = time.perf_counter()
    result = aggregate(structure, sb.groups, sb.series, pnl)
    t3 = time.perf_counter()
    times.update(structure_s=t1 - t0, series_pnl_s=t2 - t1, aggregate_s=t3 - t2)
    return result, times


# --------------------------------------------------------------------------- PM benches


def bench_pm_full_recompute(ctx: BenchContext) -> Iterable[dict]:
    sb = ctx.synthetic
    full_recompute(sb)  # warm (numba JIT / cache load)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        result, parts = full_recompute(sb)
        runs.append((time.perf_counter() - t0, parts))
    seconds, parts = min(runs, key=lambda r: r[0])
    ctx.cache["result"] = result
    n_opt = int(np.count_nonzero(sb.series.kind == OPTION))
    yield {
        "bench": "pm_full_recompute", "accounts": sb.book.n_accounts,
        "positions": int(sb.book.account.shape[0]), "option_series": n_opt,
        "linear_series": len(sb.series) - n_opt, "underlyings": int(sb.spot.shape[0]),
        "american_share": float(np.mean(sb.series.model[sb.series.kind == OPTION]
                                        == pricing.AMERICAN)),
        "seconds": round(seconds, 4),
        "structure_build_s": round(parts["structure_s"], 4),
        "series_pnl_s": round(parts["series_pnl_s"], 4),
        "aggregate_s": round(parts["aggregate_s"], 4),
        "target_s": 1.0,
        "total_requirement": round(float(result.account_requirement.sum()), 2),
    }
    width = sb.groups.width
    contracts_points = len(sb.series) * width
    series_s, _ = _timeit(lambda: series_pnl(sb.series, sb.groups, RATE))
    yield {
        "bench": "pm_series_valuation", "series": len(sb.series), "points": width,
        "seconds": round(series_s, 4),
        "contract_scenarios_per_s": round(contracts_points / series_s),
        "option_valuations_per_s": round(n_opt * width / series_s),
    }


def bench_pm_implied_vols(ctx: BenchContext) -> Iterable[dict]:
    """A market state that carries marks, not vols: every series' vol implied once."""
    sb = ctx.synthetic
    s = sb.series
    opt = np.flatnonzero(s.kind == OPTION)

    def solve() -> np.ndarray:
        return pricing.implied_vol(s.model[opt], s.mark[opt], s.spot[opt], s.strike[opt],
                                   s.t[opt], RATE, s.div_yield[opt], s.is_call[opt])

    seconds, iv = _timeit(solve, repeat=2)
    repriced = pricing.option_value(s.model[opt], s.spot[opt], s.strike[opt], s.t[opt], RATE,
                                    s.div_yield[opt], iv, s.is_call[opt])
    yield {"bench": "pm_implied_vols", "option_series": int(opt.size),
           "seconds": round(seconds, 4), "unsolved": int(np.count_nonzero(~np.isfinite(iv))),
           "max_abs_reprice_error": float(np.nanmax(np.abs(repriced - s.mark[opt]))),
           "note": "not part of pm_full_recompute, whose market state gives implied vols"}


def bench_pm_aggregation_paths(ctx: BenchContext) -> Iterable[dict]:
    sb = ctx.synthetic
    st = build_structure(sb.book, sb.series.class_group, sb.groups.product_group)
    pnl = series_pnl(sb.series, sb.groups, RATE)
    numba_s, r1 = _timeit(lambda: aggregate_numba(st, sb.groups, sb.series, pnl))
    numpy_s, r2 = _timeit(lambda: aggregate_numpy(st, sb.groups, sb.series, pnl), repeat=2)
    diff = float(np.max(np.abs(r1.account_requirement - r2.account_requirement)))
    yield {"bench": "pm_aggregation", "rows": st.n_rows, "numba_s": round(numba_s, 4),
           "numpy_scipy_s": round(numpy_s, 4), "max_abs_diff": diff}


def _latency_ms(fn: Callable[[], Any], n: int) -> tuple[dict[str, float], Any]:
    """Per-call wall times of ``n`` warm calls: median and best, in ms."""
    out = fn()  # warm
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        out = fn()
        times[i] = time.perf_counter() - t0
    return {"ms": round(float(np.median(times)) * 1e3, 4),
            "best_ms": round(float(times.min()) * 1e3, 4)}, out


def bench_pm_one_account(ctx: BenchContext) -> Iterable[dict]:
    from margin.engine.portfolio_margin import calculate_block
    from margin.engine.valuation import value_positions

    sb = ctx.synthetic
    ser, units = one_account(sb)
    n = 300
    lat, req = _latency_ms(lambda: one_account_batch(sb, ser, units), n)
    yield {"bench": "pm_one_account_batch", "positions": int(ser.shape[0]), **lat,
           "target_ms": 1.0, "requirement": round(req, 2),
           "note": "median of warm in-process calls: series risk arrays, structure, aggregation"}
    portfolio = account_portfolio(sb, ser, units)
    params = sb.params
    valuation = value_positions(portfolio, params, True)
    lat, block = _latency_ms(lambda: calculate_block(portfolio, params, valuation), n)
    lat_v, _ = _latency_ms(lambda: value_positions(portfolio, params, True), n // 3)
    yield {"bench": "pm_one_account_calculate_block", "positions": int(ser.shape[0]), **lat,
           "value_positions_ms": lat_v["ms"], "requirement":
           round(block["regulatory_requirement"], 2),
           "note": "calculate_block on a valued portfolio (implied vols given); value_positions "
                   "separately (Greeks and bounds of 45 options)"}


def bench_pm_memory(ctx: BenchContext) -> Iterable[dict]:
    sb = ctx.synthetic
    gc.collect()
    tracemalloc.start()
    full_recompute(sb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield {"bench": "pm_peak_memory", "full_recompute_traced_peak_mb": round(peak / 2**20, 1),
           "process_peak_rss_mb": round(rss_kb / 1024, 1), "target_mb": 1024}


def naive_account_requirement(sb: SyntheticBook, positions: np.ndarray) -> float:
    """The obvious per-account loop: each position priced on its own, dicts of groups."""
    groups = sb.groups
    s = sb.series
    cg_pnl: dict[int, np.ndarray] = {}
    net_units: dict[int, float] = {}
    for p in positions:
        k = int(sb.book.series[p])
        u = float(sb.book.units[p])
        cg = int(s.class_group[k])
        pts = groups.points[cg][groups.valid[cg]]
        if s.kind[k] == OPTION:
            value = pricing.option_value(int(s.model[k]), s.spot[k] * (1 + pts), s.strike[k],
                                         s.t[k], RATE, s.div_yield[k], s.vol[k], bool(s.is_call[k]))
            pnl = (np.asarray(value) - s.mark[k]) * u
        else:
            pnl = s.spot[k] * pts * u
        cg_pnl[cg] = cg_pnl.get(cg, 0.0) + pnl
        net_units[k] = net_units.get(k, 0.0) + u
    cg_min: dict[int, float] = {}
    for k, u in net_units.items():
        cg = int(s.class_group[k])
        m = float(minimum_per_unit(s, np.array([u]), np.array([k]))[0])
        cg_min[cg] = cg_min.get(cg, 0.0) + m
    by_pg: dict[int, list[int]] = {}
    for cg in cg_pnl:
        by_pg.setdefault(int(groups.product_group[cg]), []).append(cg)
    total = 0.0
    for pg, cgs in by_pg.items():
        loss = sum(np.minimum(cg_pnl[c], 0.0) for c in cgs)
        gain = sum(np.maximum(cg_pnl[c], 0.0) for c in cgs)
        net = loss + groups.pg_offset[pg] * gain
        total += max(max(-float(np.min(net)), 0.0), sum(cg_min.get(c, 0.0) for c in cgs))
    return total


def bench_pm_naive_baseline(ctx: BenchContext) -> Iterable[dict]:
    sb = ctx.synthetic
    n = min(N_SAMPLE, sb.book.n_accounts)
    ptr = np.searchsorted(sb.book.account, np.arange(n + 1))
    t0 = time.perf_counter()
    reqs = [naive_account_requirement(sb, np.arange(ptr[a], ptr[a + 1])) for a in range(n)]
    seconds = time.perf_counter() - t0
    batch = ctx.cache.get("result")
    agree = None
    if batch is not None:
        agree = float(np.max(np.abs(np.array(reqs) - batch.account_requirement[:n])))
    yield {"bench": "pm_naive_baseline", "accounts_sampled": n,
           "positions_sampled": int(ptr[n]), "seconds_sampled": round(seconds, 3),
           "extrapolated_seconds": round(seconds * sb.book.n_accounts / n, 1),
           "extrapolated_to_accounts": sb.book.n_accounts,
           "note": f"per-account Python loop over positions on a {n}-account subsample, "
                   f"extrapolated linearly to {sb.book.n_accounts} accounts",
           "max_abs_diff_vs_batch": agree}


def bench_var_historical(ctx: BenchContext) -> Iterable[dict]:
    """Historical VaR with full revaluation: 100,000 accounts x 500 scenarios (target < 5 s)."""
    yield var_historical_line()


def bench_lp_valuations(ctx: BenchContext) -> Iterable[dict]:
    """Uniswap v3 LP valuations per second, each at its own exact oracle-derived sqrt price."""
    lp_valuations_per_second(1_000)  # warm
    yield {"bench": "lp_valuations", "per_second": round(lp_valuations_per_second(20_000))}


def _best_run(fn: Any, repeat: int) -> tuple[float, Any]:
    best: tuple[float, Any] | None = None
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        res = fn()
        wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, res)
    assert best is not None
    return best


def var_historical_line(repeat: int = 2, grid_nodes: int = VAR_GRID_NODES) -> dict[str, Any]:
    """The JSON line of the historical VaR bench (full revaluation).

    The book is ``make_var_book()`` (the scale of the portfolio-margin book:
    100,000 accounts, 2,000,000 positions, 50,000 option series of which half American, 2,000
    underlyings) over 500 scenarios, 1-day horizon, float32 P&L. ``seconds`` is the best wall
    time of the exact path (every option priced in every scenario); ``american_grid`` reports
    the opt-in acceleration (early-exercise American options interpolated from ``grid_nodes``
    exact values per series) and how far its VaRs are from the exact ones.
    """
    rate = RATE
    t0 = time.perf_counter()
    series, positions, returns = make_var_book(rate=rate)
    build_s = time.perf_counter() - t0
    historical_var_batch(series, positions, returns[:8], rate)  # warm the JIT / caches
    historical_var_batch(series, positions, returns[:8], rate, american_grid=grid_nodes)
    wall, res = _best_run(lambda: historical_var_batch(series, positions, returns, rate), repeat)
    g_wall, g_res = _best_run(lambda: historical_var_batch(
        series, positions, returns, rate, american_grid=grid_nodes), repeat)
    rel = np.abs(g_res.var - res.var) / np.maximum(np.abs(res.var), 1.0)
    n_opt = int(np.count_nonzero(series.kind == OPTION))
    line = {
        "bench": "var_historical_full_revaluation",
        "accounts": int(positions.shape[0]),
        "positions_netted": int(positions.nnz),
        "series": len(series),
        "option_series": n_opt,
        "american_series": int(np.count_nonzero((series.kind == OPTION) & (series.model == 1))),
        "scenarios": int(returns.shape[0]),
        "option_valuations": n_opt * int(returns.shape[0]),
        "horizon_days": 1,
        "confidence": 0.99,
        "seconds": round(wall, 3),
        "pricing_s": round(res.seconds["pricing_s"], 3),
        "aggregate_s": round(res.seconds["aggregate_s"], 3),
        "american_grid": {
            "nodes": grid_nodes,
            "seconds": round(g_wall, 3),
            "pricing_s": round(g_res.seconds["pricing_s"], 3),
            "aggregate_s": round(g_res.seconds["aggregate_s"], 3),
            "var_max_rel_diff": float(f"{rel.max():.3g}"),
            "var_p99_rel_diff": float(f"{np.percentile(rel, 99):.3g}"),
        },
        "cpus": available_cpus(),
        "target_s": 5.0,
        "book_build_s": round(build_s, 3),
        "median_var": round(float(np.median(res.var)), 2),
    }
    return line


def lp_valuations_per_second(points: int = 10_000) -> float:
    """LP valuations per second: a concentrated ETH/USDC position with fee-growth state,
    each point at its own exact oracle-derived sqrt price."""
    u = uniswap_v3
    sqrt_price = u.sqrt_price_x96_from_prices(3000.0, 1.0, 18, 6)
    tick = u.get_tick_at_sqrt_ratio(sqrt_price)
    lower, upper = (tick - 4000) // 60 * 60, (tick + 4000) // 60 * 60
    liquidity = u.get_liquidity_for_amounts(sqrt_price, u.get_sqrt_ratio_at_tick(lower),
                                          u.get_sqrt_ratio_at_tick(upper), 10 ** 18, 3 * 10 ** 9)
    lp = LPPosition("ETH", "USDC", 18, 6, liquidity, lower, upper, tokens_owed0=10 ** 15,
                    fee_growth_inside_last0=0, fee_growth_inside_last1=0,
                    fee_growth_global0=u.Q128, fee_growth_global1=u.Q128, tick_current=tick)
    prices = 3000.0 * (1.0 + np.linspace(-0.66, 1.0, points))
    start = time.perf_counter()
    u.lp_values(lp, prices, 1.0, base_prices=(3000.0, 1.0))
    return points / (time.perf_counter() - start)


def bench_regt_one_account(ctx: BenchContext) -> Iterable[dict]:
    """Reg T strategy pairing (exact least requirement) for one 50-position account."""
    sb = ctx.synthetic
    ser, units = one_account(sb)
    portfolio = account_portfolio(sb, ser, units)
    from margin.engine import regt, valuation

    params = sb.params
    valued = valuation.value_positions(portfolio, params, False)
    stats, _ = _latency_ms(lambda: regt.calculate_block(portfolio, params, valued), 50)
    yield {"bench": "regt_one_account", "positions": len(portfolio.positions), **stats}


def bench_liquidation_plan(ctx: BenchContext) -> Iterable[dict]:
    """The cheapest cure of a deficit (margin.engine.liquidation) on books of 20, 50 and 200
    positions with the house layer: the programme's plan (seconds: model, solve and the
    engine's check) beside the greedy baseline's."""
    from .liquidation import plan_line

    for n in (20, 50, 200):
        yield plan_line(n)


BENCHES: list[Callable[[BenchContext], Iterable[dict]]] = [
    bench_pm_full_recompute,
    bench_pm_implied_vols,
    bench_pm_aggregation_paths,
    bench_pm_one_account,
    bench_pm_memory,
    bench_pm_naive_baseline,
    bench_regt_one_account,
    bench_var_historical,
    bench_lp_valuations,
    bench_liquidation_plan,
]


def main(argv: list[str] | None = None) -> int:
    """Run the benches named (``name`` or ``bench_name``; comma-separated lists too, as
    ``make bench ONLY=a,b`` passes them), or all of them."""
    argv = sys.argv[1:] if argv is None else argv
    wanted = {name for arg in argv for name in arg.split(",") if name}
    known = {b.__name__ for b in BENCHES} | {b.__name__.removeprefix("bench_") for b in BENCHES}
    if wanted - known:
        print(f"unknown bench {', '.join(sorted(wanted - known))}; known: "
              f"{', '.join(b.__name__.removeprefix('bench_') for b in BENCHES)}", file=sys.stderr)
        return 2
    ctx = BenchContext()
    try:
        for bench in BENCHES:
            name = bench.__name__.removeprefix("bench_")
            if wanted and name not in wanted and bench.__name__ not in wanted:
                continue
            t0 = time.perf_counter()
            for line in bench(ctx):
                print(json.dumps(line), flush=True)
            ctx.cache.setdefault("elapsed", {})[name] = time.perf_counter() - t0
    finally:
        ctx.close()  # the database benches' worker stopped and database dropped, even on ^C
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
