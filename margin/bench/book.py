"""The one synthetic book of the benches (and of the tests that check the batch path on it).

A reproducible book from a fixed seed: ``n_underlyings`` underlyings (the first ``N_INDEX``
broad high-cap indices and their ETFs in ten class groups, the rest equities each its own class
group, in industry product groups of ten), ``n_series`` option series (25 per underlying, half
American), one stock line per underlying, and accounts holding 2-6 underlyings, about 20
positions each, 10 % of them stock. The same draws give the portfolio-margin book
(`make_book`) and the historical-VaR book (`make_var_book`, which also draws fat-tailed daily
returns between the market and the positions, so each book is what its bench always measured).
Synthetic: never a client's number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import scipy.sparse as sp

from margin.engine import pricing
from margin.engine.parameters import ParameterSet, load_parameter_set
from margin.engine.portfolio import Portfolio, Position, Underlying
from margin.engine.scenarios import GridTable, points_for
from margin.engine.series import (
    LINEAR,
    OPTION,
    Book,
    ClassGroupTable,
    SeriesTable,
    aggregate_numpy,
    build_structure,
    series_pnl,
)
from margin.engine.var import VarSeries, option_base_values

SEED = 20261124
N_ACCOUNTS = 100_000
N_POSITIONS = 2_000_000
N_SERIES = 50_000
N_UNDERLYINGS = 2_000
N_INDEX = 100  # underlyings that are broad high-cap indices / their ETFs (10 class groups)
N_SCENARIOS = 500  # daily returns of the VaR book
ONE_ACCOUNT_POSITIONS = 50
RATE = 0.04
EXPIRY_DAYS = (7, 14, 30, 60, 91, 182, 365, 730)


@dataclass(frozen=True)
class SyntheticMarket:
    """Underlyings and option series (contract terms, vols, models) of the synthetic book."""

    spot: np.ndarray  # per underlying
    div_yield: np.ndarray
    n_index: int
    opt_und: np.ndarray  # underlying of each option series
    t: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    model: np.ndarray
    vol: np.ndarray

    @property
    def per_underlying(self) -> int:
        return int(math.ceil(self.opt_und.shape[0] / self.spot.shape[0]))


def synthetic_market(rng: np.random.Generator, n_series: int,
                     n_underlyings: int) -> SyntheticMarket:
    n_index = min(N_INDEX, n_underlyings // 2)
    spot = np.exp(rng.uniform(np.log(10.0), np.log(600.0), n_underlyings))
    div_yield = np.where(np.arange(n_underlyings) < n_index, 0.015, 0.0)
    per_und = int(np.ceil(n_series / n_underlyings))
    opt_und = np.repeat(np.arange(n_underlyings), per_und)[:n_series]
    t = rng.choice(EXPIRY_DAYS, n_series) / 365.0
    strike = np.round(spot[opt_und] * np.exp(rng.normal(0.0, 0.12, n_series)), 1)
    is_call = rng.random(n_series) < 0.5
    model = np.where(np.arange(n_series) % 2 == 0, pricing.AMERICAN, pricing.EUROPEAN)
    vol = rng.uniform(0.15, 0.6, n_series)
    return SyntheticMarket(spot, div_yield, n_index, opt_und, t, strike, is_call, model, vol)


def synthetic_returns(rng: np.random.Generator, n_scenarios: int,
                      n_underlyings: int) -> np.ndarray:
    """Fat-tailed correlated daily returns: one market factor + idiosyncratic, Student-t(4)."""
    dof = 4.0
    scale = math.sqrt((dof - 2) / dof)
    mkt = rng.standard_t(dof, n_scenarios) * scale
    beta = rng.uniform(0.5, 1.2, n_underlyings)
    daily = rng.uniform(0.01, 0.03, n_underlyings)
    idio = rng.standard_t(dof, (n_scenarios, n_underlyings)) * scale
    return (daily * (0.6 * beta * mkt[:, None] + 0.8 * idio)).astype(np.float32)


def synthetic_positions(rng: np.random.Generator, market: SyntheticMarket, n_accounts: int,
                        n_positions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(account, series, units) per position, sorted by account; series past the options are
    the stock lines (one per underlying)."""
    n_series, n_underlyings = market.opt_und.shape[0], market.spot.shape[0]
    per_account = rng.multinomial(n_positions - n_accounts,
                                  np.full(n_accounts, 1 / n_accounts)) + 1
    account = np.repeat(np.arange(n_accounts, dtype=np.int64), per_account)
    n_pos = account.shape[0]
    n_held = rng.integers(2, 7, n_accounts)
    held = rng.integers(0, n_underlyings, (n_accounts, 6))
    und = held[account, (rng.random(n_pos) * n_held[account]).astype(np.int64)]
    is_stock = rng.random(n_pos) < 0.1
    per_und = market.per_underlying
    opt = np.minimum(und * per_und + rng.integers(0, per_und, n_pos), n_series - 1)
    ser = np.where(is_stock, n_series + und, opt).astype(np.int64)
    qty = rng.integers(1, 21, n_pos) * np.where(rng.random(n_pos) < 0.5, -1, 1)
    return account, ser, (qty * 100.0).astype(np.float64)


# --------------------------------------------------------------------------- the PM book


@dataclass
class SyntheticBook:
    params: ParameterSet
    spot: np.ndarray  # per underlying
    div_yield: np.ndarray
    und_class: list[str]
    und_cg: np.ndarray  # class group per underlying
    groups: ClassGroupTable
    series: SeriesTable
    series_und: np.ndarray
    book: Book


def _class_groups(params: ParameterSet, n_index: int, n_underlyings: int
                  ) -> tuple[list[str], np.ndarray, ClassGroupTable]:
    """Indices in 10 class groups (index + ETFs), each equity its own; product groups: the
    index groups together, equities in industry groups of 10 (offset like narrow indices)."""
    und_class = ["broad_index_high_cap"] * n_index + ["equity"] * (n_underlyings - n_index)
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
    offsets = {name: 0.5 for name in pg_names[1:]}
    pg_offset = np.array([params.portfolio_margin.offset_for(n, c, offsets)
                          for n, c in zip(pg_names, pg_class, strict=True)])
    table = GridTable.build([points_for(params, c) for c in cg_class])
    groups = ClassGroupTable([f"CG{k}" for k in range(n_cg)], cg_class, cg_pg, table.points,
                             table.valid, pg_names, pg_offset)
    return und_class, und_cg, groups


def make_book(seed: int = SEED, n_accounts: int = N_ACCOUNTS, n_positions: int = N_POSITIONS,
              n_series: int = N_SERIES, n_underlyings: int = N_UNDERLYINGS) -> SyntheticBook:
    """The portfolio-margin book: series (options, then one stock line per underlying) and
    positions as the batch code of ``margin.engine.series`` takes them."""
    rng = np.random.default_rng(seed)
    params = load_parameter_set()
    m = synthetic_market(rng, n_series, n_underlyings)
    und_class, und_cg, groups = _class_groups(params, m.n_index, n_underlyings)
    q = m.div_yield[m.opt_und]
    mark = np.asarray(pricing.option_value(m.model, m.spot[m.opt_und], m.strike, m.t, RATE, q,
                                           m.vol, m.is_call))
    series_und = np.r_[m.opt_und, np.arange(n_underlyings)]
    min_contract = params.portfolio_margin.minimum_per_contract
    series = SeriesTable(
        kind=np.r_[np.full(n_series, OPTION), np.full(n_underlyings, LINEAR)].astype(np.int8),
        model=np.r_[m.model, np.full(n_underlyings, -1)].astype(np.int8),
        class_group=und_cg[series_und],
        spot=m.spot[series_und],
        strike=np.r_[m.strike, np.zeros(n_underlyings)],
        t=np.r_[m.t, np.zeros(n_underlyings)],
        div_yield=np.r_[q, np.zeros(n_underlyings)],
        vol=np.r_[m.vol, np.full(n_underlyings, np.nan)],
        is_call=np.r_[m.is_call, np.zeros(n_underlyings, bool)],
        mark=np.r_[mark, m.spot],
        min_unit=np.r_[np.full(n_series, min_contract), np.zeros(n_underlyings)],
        cap_long=np.r_[np.ones(n_series, bool), np.zeros(n_underlyings, bool)],
    )
    account, ser, units = synthetic_positions(rng, m, n_accounts, n_positions)
    book = Book(n_accounts, account, ser, units)
    return SyntheticBook(params, m.spot, m.div_yield, und_class, und_cg, groups, series,
                         series_und, book)


def make_var_book(seed: int = SEED, n_accounts: int = N_ACCOUNTS,
                  n_positions: int = N_POSITIONS, n_series: int = N_SERIES,
                  n_underlyings: int = N_UNDERLYINGS, n_scenarios: int = N_SCENARIOS,
                  rate: float = RATE) -> tuple[VarSeries, sp.csr_matrix, np.ndarray]:
    """The historical-VaR book: series (one risk factor per underlying), an accounts x series
    matrix of units (duplicates summed: netted) and ``n_scenarios`` daily returns."""
    rng = np.random.default_rng(seed)
    m = synthetic_market(rng, n_series, n_underlyings)
    series_und = np.r_[m.opt_und, np.arange(n_underlyings)]
    series = VarSeries(
        kind=np.r_[np.full(n_series, OPTION), np.full(n_underlyings, LINEAR)].astype(np.int8),
        model=np.r_[m.model, np.full(n_underlyings, -1)].astype(np.int8),
        factor=series_und.astype(np.int64),
        spot=m.spot[series_und],
        strike=np.r_[m.strike, np.zeros(n_underlyings)],
        t=np.r_[m.t, np.zeros(n_underlyings)],
        div_yield=m.div_yield[series_und],
        vol=np.r_[m.vol, np.full(n_underlyings, np.nan)],
        is_call=np.r_[m.is_call, np.zeros(n_underlyings, bool)],
    )
    returns = synthetic_returns(rng, n_scenarios, n_underlyings)
    account, ser, units = synthetic_positions(rng, m, n_accounts, n_positions)
    positions = sp.csr_matrix((units, (account, ser)), shape=(n_accounts, len(series)))
    series.base = option_base_values(series, rate)
    return series, positions, returns


# --------------------------------------------------------------------------- one account


def one_account(sb: SyntheticBook, n: int = ONE_ACCOUNT_POSITIONS,
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


def account_holdings(sb: SyntheticBook, account: int) -> tuple[np.ndarray, np.ndarray]:
    """Series and units of one account of the synthetic book."""
    lo, hi = np.searchsorted(sb.book.account, [account, account + 1])
    return sb.book.series[lo:hi], sb.book.units[lo:hi]


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
