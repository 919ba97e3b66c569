"""The synthetic book of ``margin.bench.book`` written into the database, as the product's
sweep reads it: one firm, shared instruments (the underlyings as ETFs and stocks with the
synthetic book's class and product groups, then the option series), one client and one
portfolio-margin account per synthetic account with a cash deposit and its current-margin row,
the positions, and the market (a price per instrument, an implied vol per option series, the
rate, and daily closes for historical VaR).

Rows go in with PostgreSQL COPY (psycopg 3 ``cursor.copy``), accounts in batches so memory
stays bounded at 100,000 accounts and 2,000,000 positions; ids are assigned here (past the
tables' current maximum) and the sequences moved past them. Bench data, not a client's book:
nothing of it goes through the services (no audit events for the load) and the daily closes
are stored as ``synthetic`` (snapshots whose VaR rests on them say so).

What differs from the engine-only book, and why:
- an account's repeated holdings of one series are netted (a position is one row per account
  and instrument), so the database holds slightly fewer positions than the engine's book;
- the equity product groups carry no firm offset (the engine bench passes 0.5 for each; the
  product takes offsets from the parameter set), so requirements are not the same numbers;
- option marks below a cent are stored at a cent (the smallest listed price), and every
  mark is rounded up to the stored 8 places (never below its intrinsic value).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

import numpy as np
from django.db import connection, models
from django.utils import timezone

from accounts.models import Account, Client, Instrument, LedgerEntry, Position
from brokerage.models import Firm
from margin.engine import pricing
from margin.engine.series import OPTION
from margin.market_data import exchange_date
from margin.models import (
    AccountMargin,
    DailyClose,
    ImpliedVolatility,
    PriceObservation,
    RiskFreeRate,
)

from .book import RATE, SEED, SyntheticBook, synthetic_returns

#: accounts written per COPY batch (their clients, accounts, rows, deposits and positions)
BATCH_ACCOUNTS = 10_000
#: cash deposited beyond the gross notional of the account's underlying exposure, so every
#: account stands above its requirement and the portfolio-margin minimum equity
CASH_CUSHION = 200_000.0
MIN_MARK = 0.01


@dataclass(frozen=True)
class LoadedBook:
    firm: Firm
    accounts: int
    positions: int
    instruments: int
    account_ids: np.ndarray  # database id of each synthetic account, in book order
    underlying_ids: np.ndarray  # database id of each synthetic underlying
    symbols: list[str]  # symbol of each underlying
    holders: np.ndarray  # accounts holding each underlying (anything on it)


# --------------------------------------------------------------------------- COPY


def _text(value: Any) -> str:
    """One value in COPY's text format (our values hold no tabs, newlines or backslashes)."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _columns(model: type[models.Model], varying: Sequence[str], now: datetime,
             **fixed: Any) -> tuple[list[str], str]:
    """The COPY column list (``varying`` first, as each row gives them) and the text of every
    other column, the same for all rows: ``fixed`` values, else the field's default (what
    ``Model()`` would hold; ``auto_now`` fields ``now``)."""
    names = list(varying)
    tail = []
    for f in model._meta.concrete_fields:
        if f.attname in varying:
            continue
        if f.attname in fixed:
            value = fixed[f.attname]
        elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            value = now
        elif f.has_default() or f.null or f.empty_strings_allowed:
            value = None if f.null and not f.has_default() else f.get_default()
        else:
            raise ValueError(f"{model.__name__}.{f.attname} needs a value")
        names.append(f.attname)
        tail.append(_text(value))
    return [model._meta.get_field(n).column for n in names], "\t".join(tail)


def _copy(model: type[models.Model], varying: Sequence[str], rows: Iterable[Sequence[Any]],
          now: datetime, **fixed: Any) -> int:
    """COPY ``rows`` (each the ``varying`` values in order) into the model's table."""
    columns, tail = _columns(model, varying, now, **fixed)
    sql = (f"COPY {connection.ops.quote_name(model._meta.db_table)} "
           f"({', '.join(connection.ops.quote_name(c) for c in columns)}) FROM STDIN")
    suffix = f"\t{tail}\n" if tail else "\n"
    count = 0
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        block: list[str] = []
        for row in rows:
            block.append("\t".join(_text(v) for v in row) + suffix)
            if len(block) == 20_000:
                copy.write("".join(block))
                count += len(block)
                block = []
        copy.write("".join(block))
        count += len(block)
    return count


def _next_id(model: type[models.Model]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM "
                       f"{connection.ops.quote_name(model._meta.db_table)}")
        return int(cursor.fetchone()[0])


def _move_sequence(model: type[models.Model]) -> None:
    """The id sequence past the ids COPY assigned (later inserts take the next ones)."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                       f"(SELECT COALESCE(MAX(id), 1) FROM {connection.ops.quote_name(table)}))",
                       [table])


# --------------------------------------------------------------------------- the book


def netted_positions(sb: SyntheticBook) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(account, series, units) with an account's repeated series summed, zeros dropped."""
    n_series = len(sb.series)
    key = sb.book.account.astype(np.int64) * n_series + sb.book.series
    keys, inverse = np.unique(key, return_inverse=True)
    units = np.bincount(inverse, weights=sb.book.units)
    held = units != 0
    return keys[held] // n_series, keys[held] % n_series, units[held]


def _underlying_rows(sb: SyntheticBook, first_id: int) -> Iterator[tuple]:
    pg = sb.groups.product_group
    for j in range(sb.spot.shape[0]):
        cg = int(sb.und_cg[j])
        index = sb.und_class[j] == "broad_index_high_cap"
        yield (first_id + j, f"U{j:04d}", "etf" if index else "stock", sb.und_class[j],
               f"CG{cg}", sb.groups.pg_names[int(pg[cg])], f"{sb.div_yield[j]:.6f}")


def _option_rows(sb: SyntheticBook, first_id: int, und_ids: np.ndarray,
                 today: date) -> Iterator[tuple]:
    s = sb.series
    pg = sb.groups.product_group
    for k in np.flatnonzero(s.kind == OPTION).tolist():
        j = int(sb.series_und[k])
        cg = int(sb.und_cg[j])
        index = sb.und_class[j] == "broad_index_high_cap"
        yield (first_id + k, f"U{j:04d}-O{k:05d}", "index_option" if index else "equity_option",
               int(und_ids[j]), sb.und_class[j], f"CG{cg}", sb.groups.pg_names[int(pg[cg])],
               "100", f"{s.strike[k]:.1f}", "call" if s.is_call[k] else "put",
               today + timedelta(days=round(float(s.t[k]) * 365)),
               "american" if s.model[k] == pricing.AMERICAN else "european",
               f"{s.div_yield[k]:.6f}")


def _instruments(sb: SyntheticBook, now: datetime, today: date) -> tuple[np.ndarray, np.ndarray]:
    """Underlyings then option series; returns the database id of each underlying and of each
    series (options: their own row; stock lines: their underlying's)."""
    base = _next_id(Instrument)
    n_und = sb.spot.shape[0]
    und_ids = np.arange(base, base + n_und, dtype=np.int64)
    _copy(Instrument, ["id", "symbol", "kind", "product_class", "class_group", "product_group",
                       "dividend_yield"], _underlying_rows(sb, base), now)
    option_base = base + n_und
    _copy(Instrument, ["id", "symbol", "kind", "underlying_id", "product_class", "class_group",
                       "product_group", "multiplier", "strike", "right", "expiry",
                       "exercise_style", "dividend_yield"],
          _option_rows(sb, option_base, und_ids, today), now)
    _move_sequence(Instrument)
    is_option = sb.series.kind == OPTION
    series_ids = np.where(is_option, option_base + np.arange(len(sb.series)),
                          und_ids[sb.series_und])
    return und_ids, series_ids


def _mark_text(mark: float) -> str:
    """An option mark as stored (8 places), rounded up: a deep in-the-money option's model
    value sits on its intrinsic value, the engine's lower no-arbitrage bound, and rounding it
    down would put the stored mark outside the bound (the account flagged, not valued)."""
    stored = Decimal(repr(max(mark, MIN_MARK))).quantize(Decimal("1e-8"), rounding=ROUND_CEILING)
    return str(stored)


def _market(sb: SyntheticBook, series_ids: np.ndarray, und_ids: np.ndarray, now: datetime,
            today: date, history: bool) -> None:
    """A price per instrument (spot, option marks), a vol per option, the rate, the closes."""
    s = sb.series
    opt = np.flatnonzero(s.kind == OPTION)
    at = now - timedelta(minutes=1)
    prices = [(int(i), f"{p:.8f}") for i, p in zip(und_ids.tolist(), sb.spot.tolist(),
                                                     strict=True)]
    prices += [(int(series_ids[k]), _mark_text(float(s.mark[k]))) for k in opt.tolist()]
    first = _next_id(PriceObservation)
    _copy(PriceObservation, ["id", "instrument_id", "price"],
          ((first + n, i, p) for n, (i, p) in enumerate(prices)), now,
          source=PriceObservation.Source.VENDOR, observed_at=at)
    _move_sequence(PriceObservation)
    first = _next_id(ImpliedVolatility)
    _copy(ImpliedVolatility, ["id", "instrument_id", "volatility"],
          ((first + n, int(series_ids[k]), f"{s.vol[k]:.6f}") for n, k in enumerate(opt.tolist())),
          now, source=PriceObservation.Source.VENDOR, observed_at=at)
    _move_sequence(ImpliedVolatility)
    RiskFreeRate.objects.update_or_create(currency="USD", tenor_days=90, observed_on=today,
                                          defaults={"rate": Decimal(str(RATE))})
    if history:
        _closes(sb, und_ids, now, today)


def _closes(sb: SyntheticBook, und_ids: np.ndarray, now: datetime, today: date) -> None:
    """The VaR window of daily closes per underlying, on common business days ending the day
    before ``today``, walked back from today's spot through the synthetic daily returns."""
    from margin.engine.parameters import load_parameter_set

    var = load_parameter_set().var
    n_returns = max(var.window, var.min_history - 1)
    n_und = sb.spot.shape[0]
    returns = synthetic_returns(np.random.default_rng(SEED + 2), n_returns, n_und)
    # close[t] = close[t + 1] / exp(return[t + 1]): the newest close is the spot
    growth = np.exp(np.cumsum(returns[::-1].astype(np.float64), axis=0))
    closes = np.vstack([sb.spot[None, :], sb.spot[None, :] / growth])[::-1]
    days = np.busday_offset(np.datetime64(today), -np.arange(n_returns + 1, 0, -1),
                            roll="backward").astype(date)
    first = _next_id(DailyClose)

    def rows() -> Iterator[tuple]:
        n = first
        for j in range(n_und):
            for d, close in zip(days.tolist(), closes[:, j].tolist(), strict=True):
                yield n, int(und_ids[j]), d, f"{close:.8f}"
                n += 1

    _copy(DailyClose, ["id", "instrument_id", "date", "close"], rows(), now,
          source=DailyClose.Source.SYNTHETIC, loaded_at=now)
    _move_sequence(DailyClose)


def _cash(sb: SyntheticBook, account: np.ndarray, series: np.ndarray,
          units: np.ndarray, n_accounts: int) -> np.ndarray:
    """Per account: the gross notional of its underlying exposure plus the cushion."""
    spot = sb.spot[sb.series_und[series]]
    notional = np.bincount(account, weights=np.abs(units) * spot, minlength=n_accounts)
    return np.round(notional + CASH_CUSHION, 2)


def _accounts_batch(firm: Firm, lo: int, hi: int, ids: dict[str, int], cash: np.ndarray,
                    now: datetime) -> None:
    """Clients, accounts, their current-margin rows and deposits of accounts [lo, hi)."""
    numbers = range(lo, hi)
    client0, account0, entry0 = ids["client"] + lo, ids["account"] + lo, ids["entry"] + lo
    _copy(Client, ["id", "name", "email"],
          ((client0 + n - lo, f"Bench client {n:07d}", f"c{n:07d}@bench.example")
           for n in numbers), now, firm_id=firm.pk, born_or_incorporated_on=date(1970, 1, 1),
          investment_objective=Client.Objective.GROWTH, options_approval_level=4,
          years_trading_stocks=10, years_trading_options=5, annual_income="250000.00",
          net_worth="5000000.00", liquid_net_worth="2000000.00")
    _copy(Account, ["id", "number", "client_id"],
          ((account0 + n - lo, f"BN{n:07d}", client0 + n - lo) for n in numbers), now,
          firm_id=firm.pk, registration=Account.Registration.INDIVIDUAL,
          margin_type=Account.MarginType.PORTFOLIO_MARGIN, opened_on=date(2025, 1, 2))
    _copy(AccountMargin, ["account_id"], ((account0 + n - lo,) for n in numbers), now,
          firm_id=firm.pk)
    _copy(LedgerEntry, ["id", "account_id", "amount"],
          ((entry0 + n - lo, account0 + n - lo, f"{cash[n]:.2f}") for n in numbers), now,
          firm_id=firm.pk, kind=LedgerEntry.Kind.DEPOSIT, effective_at=now - timedelta(days=1),
          memo="bench deposit")


def _positions_batch(firm: Firm, rows: slice, first_id: int, account_ids: np.ndarray,
                     series_ids: np.ndarray, account: np.ndarray, series: np.ndarray,
                     quantity: np.ndarray, now: datetime) -> int:
    return _copy(Position, ["id", "account_id", "instrument_id", "quantity"],
                 zip(range(first_id, first_id + (rows.stop - rows.start)),
                     account_ids[account[rows]].tolist(), series_ids[series[rows]].tolist(),
                     quantity[rows].tolist(), strict=True), now, firm_id=firm.pk)


def load_book(sb: SyntheticBook, *, slug: str = "bench", history: bool = False,
              batch_accounts: int = BATCH_ACCOUNTS) -> LoadedBook:
    """Write the synthetic book into the database (see the module docstring)."""
    now, today = timezone.now(), exchange_date()
    firm = Firm.objects.create(name=f"Bench firm {slug}", slug=slug)
    und_ids, series_ids = _instruments(sb, now, today)
    _market(sb, series_ids, und_ids, now, today, history)
    account, series, units = netted_positions(sb)
    # an option position counts contracts (the book's units are shares: 100 per contract)
    quantity = np.where(sb.series.kind[series] == OPTION, units / 100.0, units).astype(np.int64)
    n = sb.book.n_accounts
    cash = _cash(sb, account, series, units, n)
    ids = {"client": _next_id(Client), "account": _next_id(Account),
           "entry": _next_id(LedgerEntry)}
    account_ids = np.arange(ids["account"], ids["account"] + n, dtype=np.int64)
    position0 = _next_id(Position)
    bounds = np.searchsorted(account, np.arange(0, n + batch_accounts, batch_accounts))
    for b, lo in enumerate(range(0, n, batch_accounts)):
        _accounts_batch(firm, lo, min(lo + batch_accounts, n), ids, cash, now)
        rows = slice(int(bounds[b]), int(bounds[b + 1]))
        _positions_batch(firm, rows, position0 + rows.start, account_ids, series_ids, account,
                         series, quantity, now)
    for model in (Client, Account, LedgerEntry, Position):
        _move_sequence(model)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh tables: plans from real row counts
    per_und = np.zeros(sb.spot.shape[0], np.int64)
    pairs = np.unique(account * sb.spot.shape[0] + sb.series_und[series])
    np.add.at(per_und, pairs % sb.spot.shape[0], 1)
    return LoadedBook(firm=firm, accounts=n, positions=int(account.shape[0]),
                      instruments=len(sb.series),
                      account_ids=account_ids, underlying_ids=und_ids,
                      symbols=[f"U{j:04d}" for j in range(sb.spot.shape[0])], holders=per_und)
