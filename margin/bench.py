"""``make bench`` (``python -m margin.bench``): engine performance figures as JSON lines.

Each bench is a function ``(BenchContext) -> Iterable[dict]``; ``BENCHES`` runs them in order
and every dict is printed as one JSON line. Other parts of the engine add their own benches by
appending to ``BENCHES`` (``BENCHES.append(my_bench)``) or passing names on the command line
(``python -m margin.bench pm_full_recompute pm_one_account``).

Portfolio margin: a synthetic book from a fixed seed (100,000 accounts, 2,000,000 positions
over 50,000 option series and 2,000 underlyings, half of the series American), valued and
aggregated with the batch code of ``margin.engine.series``; no database.
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
from datetime import date
from typing import Any

import numpy as np

from margin.engine import pricing
from margin.engine.parameters import load_parameter_set, offset_for
from margin.engine.portfolio import Portfolio, Position, Underlying
from margin.engine.scenarios import GridTable, points_for
from margin.engine.series import (
    LINEAR,
    OPTION,
    Book,
    ClassGroupTable,
    SeriesTable,
    aggregate,
    aggregate_numba,
    aggregate_numpy,
    build_structure,
    minimum_per_unit,
    series_pnl,
)

SEED = 20261124
N_ACCOUNTS = 100_000
N_POSITIONS = 2_000_000
N_SERIES = 50_000
N_UNDERLYINGS = 2_000
N_INDEX = 100  # underlyings that are broad high-cap indices / their ETFs (10 class groups)
N_SAMPLE = 1_000  # accounts of the naive per-account baseline
ONE_ACCOUNT_POSITIONS = 50
RATE = 0.04


def _timeit(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs (the first warms caches and JIT) and the last result."""
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# --------------------------------------------------------------------------- synthetic book


@dataclass
class SyntheticBook:
    params: dict
    spot: np.ndarray  # per underlying
    div_yield: np.ndarray
    und_class: list[str]
    und_cg: np.ndarray  # class group per underlying
    groups: ClassGroupTable
    series: SeriesTable
    series_und: np.ndarray
    book: Book


def make_book(seed: int = SEED, n_accounts: int = N_ACCOUNTS, n_positions: int = N_POSITIONS,
              n_series: int = N_SERIES, n_underlyings: int = N_UNDERLYINGS) -> SyntheticBook:
    """A reproducible book: accounts hold a few underlyings each, options and stock on them."""
    rng = np.random.default_rng(seed)
    params = load_parameter_set()
    n_index = min(N_INDEX, n_underlyings // 2)
    und_class = ["broad_index_high_cap"] * n_index + ["equity"] * (n_underlyings - n_index)
    spot = np.exp(rng.uniform(np.log(10.0), np.log(600.0), n_underlyings))
    div_yield = np.where(np.arange(n_underlyings) < n_index, 0.015, 0.0)
    # class groups: indices in 10 groups (index + ETFs), each equity its own; product groups:
    # the index groups together, equities in industry groups of 10
    n_index_cg = max(n_index // 10, 1)
    und_cg = np.empty(n_underlyings, np.int64)
    und_cg[:n_index] = np.arange(n_index) % n_index_cg
    und_cg[n_index:] = n_index_cg + np.arange(n_underlyings - n_index)
    n_cg = n_index_cg + n_underlyings - n_index
    cg_class = ["broad_index_high_cap"] * n_index_cg + ["equity"] * (n_cg - n_index_cg)
    cg_pg = np.empty(n_cg, np.int64)
    cg_pg[:n_index_cg] = 0
    cg_pg[n_index_cg:] = 1 + np.arange(n_cg - n_index_cg) // 10
    pg_names = [f"PG{k}" for k in range(int(cg_pg.max()) + 1)]
    pg_class = ["broad_index_high_cap"] + ["equity"] * (len(pg_names) - 1)
    offsets = {name: 0.5 for name in pg_names[1:]}  # industry groups offset like narrow
    pg_offset = np.array([offset_for(params, n, c, offsets)
                          for n, c in zip(pg_names, pg_class, strict=True)])
    table = GridTable.build([points_for(params, c) for c in cg_class])
    groups = ClassGroupTable([f"CG{k}" for k in range(n_cg)], cg_class, cg_pg, table.points,
                             table.valid, pg_names, pg_offset)

    # series: n_series options (25 per underlying) + one stock line per underlying
    opt_und = np.repeat(np.arange(n_underlyings), int(np.ceil(n_series / n_underlyings)))
    opt_und = opt_und[:n_series]
    t = rng.choice([7, 14, 30, 60, 91, 182, 365, 730], n_series) / 365.0
    moneyness = np.exp(rng.normal(0.0, 0.12, n_series))
    strike = np.round(spot[opt_und] * moneyness, 1)
    is_call = rng.random(n_series) < 0.5
    model = np.where(np.arange(n_series) % 2 == 0, pricing.AMERICAN, pricing.EUROPEAN)
    vol = rng.uniform(0.15, 0.6, n_series)
    q = div_yield[opt_und]
    mark = np.asarray(pricing.option_value(model, spot[opt_und], strike, t, RATE, q, vol, is_call))
    n_all = n_series + n_underlyings
    series_und = np.r_[opt_und, np.arange(n_underlyings)]
    min_contract = float(params["portfolio_margin"]["minimum_per_contract"])
    series = SeriesTable(
        kind=np.r_[np.full(n_series, OPTION), np.full(n_underlyings, LINEAR)].astype(np.int8),
        model=np.r_[model, np.full(n_underlyings, -1)].astype(np.int8),
        class_group=und_cg[series_und],
        spot=spot[series_und],
        strike=np.r_[strike, np.zeros(n_underlyings)],
        t=np.r_[t, np.zeros(n_underlyings)],
        div_yield=np.r_[q, np.zeros(n_underlyings)],
        vol=np.r_[vol, np.full(n_underlyings, np.nan)],
        is_call=np.r_[is_call, np.zeros(n_underlyings, bool)],
        mark=np.r_[mark, spot],
        min_unit=np.r_[np.full(n_series, min_contract), np.zeros(n_underlyings)],
        cap_long=np.r_[np.ones(n_series, bool), np.zeros(n_underlyings, bool)],
    )
    assert len(series) == n_all

    # positions: each account trades 2-6 underlyings, ~20 positions, sorted by account
    per_account = rng.multinomial(n_positions - n_accounts, np.full(n_accounts, 1 / n_accounts))
    per_account = per_account + 1
    account = np.repeat(np.arange(n_accounts, dtype=np.int64), per_account)
    n_pos = account.shape[0]
    n_held = rng.integers(2, 7, n_accounts)
    held = rng.integers(0, n_underlyings, (n_accounts, 6))
    pick = (rng.random(n_pos) * n_held[account]).astype(np.int64)
    und = held[account, pick]
    is_stock = rng.random(n_pos) < 0.1
    per_und = int(np.ceil(n_series / n_underlyings))
    opt = np.minimum(und * per_und + rng.integers(0, per_und, n_pos), n_series - 1)
    ser = np.where(is_stock, n_series + und, opt)
    qty = rng.integers(1, 21, n_pos) * np.where(rng.random(n_pos) < 0.5, -1, 1)
    units = np.where(is_stock, qty * 100.0, qty * 100.0)
    book = Book(n_accounts, account, ser.astype(np.int64), units.astype(np.float64))
    return SyntheticBook(params, spot, div_yield, und_class, und_cg, groups, series,
                         series_und, book)


# --------------------------------------------------------------------------- context


@dataclass
class BenchContext:
    """Shared, lazily built fixtures of the benches."""

    cache: dict[str, Any] = field(default_factory=dict)

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


def _one_account(sb: SyntheticBook, n: int = ONE_ACCOUNT_POSITIONS,
                 seed: int = SEED + 1) -> tuple[np.ndarray, np.ndarray]:
    """A 50-position account: options on five equities and some of their stock."""
    rng = np.random.default_rng(seed)
    n_und = int(sb.spot.shape[0])
    n_opt = int(np.count_nonzero(sb.series.kind == OPTION))
    per_und = int(np.ceil(n_opt / n_und))
    unds = rng.choice(np.arange(min(N_INDEX, n_und // 2), n_und), 5, replace=False)
    pick = unds[rng.integers(0, 5, n)]
    ser = np.minimum(pick * per_und + rng.integers(0, per_und, n), n_opt - 1)
    ser[:5] = n_opt + unds  # stock lines
    units = rng.integers(1, 21, n) * np.where(rng.random(n) < 0.5, -100.0, 100.0)
    return ser.astype(np.int64), units


def _subset_series(s: SeriesTable, idx: np.ndarray) -> SeriesTable:
    return SeriesTable(**{k: (getattr(s, k)[idx] if k not in ("custom_index", "custom_pnl")
                              else getattr(s, k)) for k in s.__dataclass_fields__})


def one_account_batch(sb: SyntheticBook, ser: np.ndarray, units: np.ndarray) -> float:
    """A book of one account through the batch path: its series, structure, aggregation."""
    uniq, inv = np.unique(ser, return_inverse=True)
    sub = _subset_series(sb.series, uniq)
    book = Book(1, np.zeros(ser.shape[0], np.int64), inv.astype(np.int64), units)
    st = build_structure(book, sub.class_group, sb.groups.product_group)
    pnl = series_pnl(sub, sb.groups, RATE)
    return float(aggregate_numpy(st, sb.groups, sub, pnl).account_requirement[0])


def account_portfolio(sb: SyntheticBook, ser: np.ndarray, units: np.ndarray) -> Portfolio:
    """The same holdings as a request-style ``Portfolio`` (for ``calculate_block``): options
    carry their series' mark as ``price`` and its vol as ``implied_vol``; class and product
    groups and offsets are the synthetic book's."""
    unds: dict[str, Underlying] = {}
    offsets: dict[str, float] = {}
    positions = []
    s = sb.series
    for i, (k, u) in enumerate(zip(ser.tolist(), units.tolist(), strict=True)):
        j = int(sb.series_und[k])
        sym = f"U{j}"
        if sym not in unds:
            cg = int(sb.und_cg[j])
            pg = sb.groups.pg_names[int(sb.groups.product_group[cg])]
            cls = sb.und_class[j]
            unds[sym] = Underlying(sym, float(sb.spot[j]), cls,
                                   "stock" if cls == "equity" else "index", f"CG{cg}", pg,
                                   float(sb.div_yield[j]))
            offsets[pg] = float(sb.groups.pg_offset[int(sb.groups.product_group[cg])])
        if s.kind[k] == LINEAR:
            positions.append(Position(index=i, id=f"p{i}", kind="stock", quantity=float(u),
                                      symbol=sym))
            continue
        american = s.model[k] == pricing.AMERICAN
        positions.append(Position(
            index=i, id=f"p{i}", kind="option", quantity=float(u) / 100.0, underlying=sym,
            right="call" if s.is_call[k] else "put", strike=float(s.strike[k]),
            time_to_expiry=float(s.t[k]), multiplier=100.0,
            exercise="american" if american else "european", price=float(s.mark[k]),
            implied_vol=float(s.vol[k])))
    return Portfolio(date(2026, 11, 24), unds, tuple(positions), rate=RATE, offsets=offsets)


def account_holdings(sb: SyntheticBook, account: int) -> tuple[np.ndarray, np.ndarray]:
    """Series and units of one account of the synthetic book."""
    lo, hi = np.searchsorted(sb.book.account, [account, account + 1])
    return sb.book.series[lo:hi], sb.book.units[lo:hi]


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
    ser, units = _one_account(sb)
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
    from margin.engine.var import bench_var

    yield bench_var(echo=False)


def bench_lp_valuations(ctx: BenchContext) -> Iterable[dict]:
    """Uniswap v3 LP valuations per second, each at its own exact oracle-derived sqrt price."""
    from margin.engine.defi.uniswap_v3 import bench_lp_valuations as lp_rate

    lp_rate(1_000)  # warm
    yield {"bench": "lp_valuations", "per_second": round(lp_rate(20_000))}


def bench_regt_one_account(ctx: BenchContext) -> Iterable[dict]:
    """Reg T strategy pairing (exact least requirement) for one 50-position account."""
    sb = ctx.synthetic
    ser, units = _one_account(sb)
    portfolio = account_portfolio(sb, ser, units)
    from margin.engine import regt, valuation
    from margin.engine.parameters import load_parameter_set

    params = load_parameter_set()
    valued = valuation.value_positions(portfolio, params, False)
    stats, _ = _latency_ms(lambda: regt.calculate_block(portfolio, params, valued), 50)
    yield {"bench": "regt_one_account", "positions": len(portfolio.positions), **stats}


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
]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = set(argv)
    ctx = BenchContext()
    for bench in BENCHES:
        name = bench.__name__.removeprefix("bench_")
        if wanted and name not in wanted and bench.__name__ not in wanted:
            continue
        t0 = time.perf_counter()
        for line in bench(ctx):
            print(json.dumps(line), flush=True)
        ctx.cache.setdefault("elapsed", {})[name] = time.perf_counter() - t0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
