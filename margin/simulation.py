"""The firm-wide price-move simulator: which accounts a move would put into deficit, and by how
much, computed by the engine without writing anything (DESIGN.md "The paths data takes", 5).

The firm's books are read as arrays (``load_books``): every position in one query
(``valuing.load_holding_arrays``), each contract held and what it rests on once with its newest
price and vol, cash in one query (``cash_balances``, the sweep's); they are split as the sweep
splits them: portfolio-margin books the batch path covers go into one firm-wide chunk, its
universe built once by the sweep's builder (``valuing.build_universe``) and the holdings laid
on it as arrays (``valuing.arrays_on``), prepared once by ``batch.prepare_chunk``, that
``margin.engine.shock`` revalues at the shocked market by shifting its series table; every
other book (Reg T and cash accounts, crypto collateral, LP positions) is read by the sweep's
loader and valued by the calculator alone, at the shocked market (``shock.shock_portfolio``),
as ``valuing.value_alone`` values it at the current one. Accounts the sweep would flag (a
rejected oracle round, a missing price, a book the engine refuses) are listed as not
simulated, with the reason. The sweep's per-chunk reading (``load_books_by_chunk``) gives the
same books (tests/desk/test_risk.py) and is kept as their reference.

"Now" is the same loaded book valued at the current market by the same path, so the difference
is the move's alone (the current margin can lag by a sweep). Nothing is written: no snapshot,
no current margin, no audit event.

Reading and preparing 100,000 books still takes seconds (15 s at a load average of 4, most of
it the engine valuing their 52,000 contracts and building the chunk), so each process keeps
the firm's loaded books (``_RESIDENT``) keyed by the firm's margin version: the newest
``dirty_version`` and ``marked_at`` of its current-margin rows (every price, vol, rate, oracle
round, position, ledger entry and parameter change that reaches an account raises them,
``margin.dirty``), the number of accounts and the exchange date. A moved key reloads from the
database; each answer says which it used (``books``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
from django.conf import settings
from django.db.models import Count, Max
from django.utils import timezone

from accounts.models import Account, Instrument
from accounts.services import cash_balances
from brokerage.errors import InvalidInput
from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.engine.batch import prepare_chunk
from margin.engine.errors import EngineInputError
from margin.engine.parameters import ParameterSet
from margin.engine.portfolio import Portfolio, Underlying
from margin.engine.shock import (
    PriceShock,
    ShockableBook,
    futures_variation,
    named_shock,
    shock_portfolio,
    symbol_shock,
)
from margin.engine.valuation import value_positions
from margin.engine.var import named_scenarios

from .book import (
    MissingMarketData,
    build_portfolio,
    current_rate_row,
    instruments_with_related,
    load_positions,
    rate_value,
    valued_on,
    vol_values,
)
from .figures import active_parameter_row, money, parameters_of, snapshot_figures
from .market_data import (
    exchange_date,
    newest_price_rows,
    newest_vol_rows,
    outstanding_rejections,
)
from .models import AccountMargin
from .valuing import (
    ChunkInputs,
    HoldingArrays,
    _refused_of,
    arrays_on,
    batch_covers,
    build_universe,
    chunk_book_of,
    load_holding_arrays,
    requirement_methods,
)

#: accounts read per call of the sweep's chunk loader: a chunk reads every contract its accounts
#: hold with its market data, so the firm's 100,000 books in chunks of the sweep's size read
#: most contracts fifty times over (measured: 290 s of a 355 s load); larger chunks read them
#: a few times
LOAD_CHUNK = 25_000
#: accounts listed in an answer (the deficits, largest first); the totals count every one
LISTED = 200
BATCH, DATABASE = "resident cache", "database"


class SimulationRefused(InvalidInput):
    """A move or scenario the simulator cannot run (unknown symbol, a move out of range)."""


@dataclass
class _Alone:
    """A book the calculator values alone (the batch does not cover it)."""

    index: int
    portfolio: Portfolio
    vols: np.ndarray
    margin_type: str
    cash: Decimal


@dataclass
class FirmBooks:
    """The firm's books as loaded, and their figures at the current market (arrays by account,
    in ``account_ids`` order; NaN where not valued)."""

    firm_id: int
    key: tuple
    today: date
    params: ParameterSet
    account_ids: np.ndarray
    numbers: list[str]
    cash: np.ndarray
    batch_index: np.ndarray  # the accounts the batch values, in its order
    batch: ShockableBook | None
    alone: list[_Alone]
    underlyings: dict[str, Underlying]
    not_simulated: dict[int, str]  # account index -> why
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    requirement: np.ndarray = field(default_factory=lambda: np.zeros(0))
    load_seconds: float = 0.0

    @property
    def accounts(self) -> int:
        return int(self.account_ids.shape[0])


@dataclass(frozen=True)
class AccountMove:
    """One account before and after the move, in dollars to the cent."""

    number: str
    equity_now: Decimal
    equity_after: Decimal
    requirement_now: Decimal
    requirement_after: Decimal
    excess_now: Decimal
    excess_after: Decimal

    @property
    def newly_in_deficit(self) -> bool:
        return self.excess_now >= 0 > self.excess_after


@dataclass(frozen=True)
class Totals:
    equity: Decimal
    requirement: Decimal
    excess: Decimal
    deficit: Decimal  # the sum of the accounts' deficits (negative excess), as a positive sum
    in_deficit: int


@dataclass(frozen=True)
class Simulation:
    """The answer: the move, every account in deficit after it (the first ``LISTED``, largest
    deficit first), totals now and after, and what it took."""

    shock: PriceShock
    accounts: int
    simulated: int
    deficits: list[AccountMove]
    in_deficit_after: int
    newly_in_deficit: int
    now: Totals
    after: Totals
    not_simulated: list[tuple[str, str]]
    books: str
    load_seconds: float
    compute_seconds: float

    @property
    def seconds(self) -> float:
        return self.load_seconds + self.compute_seconds


def scenario_choices() -> list[tuple[str, str]]:
    """The named stress scenarios the engine ships (METHODOLOGY.md section 5)."""
    return [(name, spec["title"]) for name, spec in named_scenarios().items()]


# --------------------------------------------------------------------------- loading


_RESIDENT: dict[int, FirmBooks] = {}
_LOCK = threading.Lock()


def forget_books() -> None:
    """Drop every firm's resident books (the next answer reads the database)."""
    with _LOCK:
        _RESIDENT.clear()


def margin_version(firm: Firm) -> tuple:
    """The key the resident books are valid for (module docstring), in one query."""
    with firm_scope(firm):
        found = AccountMargin.objects.aggregate(version=Max("dirty_version"),
                                                marked=Max("marked_at"), rows=Count("pk"))
        accounts = Account.objects.exclude(status=Account.Status.CLOSED).count()
    return (found["version"], found["marked"], found["rows"], accounts, exchange_date())


def firm_books(firm: Firm, *, use_cache: bool = True) -> tuple[FirmBooks, str]:
    """The firm's books and where they came from: the process's resident copy while the
    firm's margin version has not moved, else read from the database (and kept)."""
    key = margin_version(firm)
    if use_cache:
        with _LOCK:
            resident = _RESIDENT.get(firm.pk)
        if resident is not None and resident.key == key:
            return resident, BATCH
    started = time.perf_counter()
    books = load_books(firm, key)
    books.load_seconds = time.perf_counter() - started
    if use_cache:
        with _LOCK:
            _RESIDENT.clear()  # one firm's books per process: a desk works in one firm
            _RESIDENT[firm.pk] = books
    return books, DATABASE


class AccountRow(NamedTuple):
    """What the load reads of an account: the loaders (``pk``), ``requirement_methods`` and
    a snapshot's figures (``margin_type``) and the answer (``number``) read nothing else, and
    a model instance each (with its firm) cost seconds at 100,000 accounts."""

    pk: int
    number: str
    margin_type: str


def _open_accounts() -> list[AccountRow]:
    """The current firm's open accounts by primary key (one query)."""
    return [AccountRow(*row) for row in Account.objects.exclude(status=Account.Status.CLOSED)
            .order_by("pk").values_list("pk", "number", "margin_type")]


def load_books(firm: Firm, key: tuple = ()) -> FirmBooks:
    """Read and prepare the firm's books (module docstring) as arrays: every position in one
    query (``valuing.load_holding_arrays``), each contract held, its underlying and their
    newest prices and vols once, cash in one query (``cash_balances``, the sweep's); the batch
    accounts' universe built once (``valuing.build_universe``) with their holdings on it as
    arrays. The accounts it leaves out are read and prepared as ``load_books_by_chunk``
    prepares them. The same books as the sweep's chunk loader reads (tests/desk/test_risk.py):
    that loader made a ``Holding`` per position and read each contract once per chunk."""
    with firm_scope(firm):
        accounts = _open_accounts()
        if not accounts:
            return _empty_books(firm, key)
        ids = np.array([a.pk for a in accounts], np.int64)
        held = load_holding_arrays(ids)
        instruments = instruments_with_related(np.unique(held.instrument).tolist())
        rests_on = {pk: valued_on(i) for pk, i in instruments.items()}
        wanted = {i for ids_ in rests_on.values() for i in ids_}
        prices, vol_rows = newest_price_rows(wanted), newest_vol_rows(wanted)
        parameter_row = active_parameter_row(firm)
        params, label = parameters_of(parameter_row)
        today = exchange_date()
        rate_row = current_rate_row(today)
        inputs = ChunkInputs(
            params=params, parameter_label=label, parameter_row=parameter_row, positions={},
            prices=prices, vol_rows=vol_rows, vols=vol_values(vol_rows),
            rejected=outstanding_rejections(prices.keys() | wanted), now=timezone.now(),
            today=today, rate_row=rate_row, rate=rate_value(rate_row),
            cash=cash_balances(accounts))
        n = len(accounts)
        contract_ids = np.unique(held.instrument)
        of_row = np.searchsorted(contract_ids, held.instrument)  # each holding's contract

        def per_account(per_contract: list[bool]) -> np.ndarray:
            """Accounts holding at least one contract the flag is set for."""
            rows = np.asarray(per_contract, dtype=bool)[of_row] if held.account.size \
                else np.zeros(0, dtype=bool)
            return np.bincount(held.account[rows], minlength=n) > 0

        contracts = [instruments[pk] for pk in contract_ids.tolist()]
        # ChunkInputs.blocked and .batchable, per contract once, then per account
        blocked = per_account([any(i in inputs.rejected for i in rests_on[c.pk])
                               for c in contracts])
        refused = per_account([not batch_covers(c, prices) for c in contracts])
        holds = np.bincount(held.account, minlength=n) > 0
        pm = np.array([a.margin_type == Account.MarginType.PORTFOLIO_MARGIN for a in accounts])
        not_simulated: dict[int, str] = {}
        for k in np.flatnonzero(blocked).tolist():
            mine = held.instrument[held.account == k].tolist()
            names = sorted({f"{r.instrument.symbol} ({r.failed_check})" for pk in mine
                            for r in (inputs.rejected.get(i) for i in rests_on[pk]) if r})
            not_simulated[k] = f"oracle round rejected: {', '.join(names)}"
        batch = np.flatnonzero(holds & pm & ~refused & ~blocked)
        alone = np.flatnonzero(~(holds & pm & ~refused) & ~blocked)
        batch_index, left, shockable = _prepare_batch_arrays(inputs, held, instruments, batch)
        calculator = [accounts[k] for k in np.union1d(left, alone).tolist()]
        inputs.positions = load_positions(calculator)
    return _assemble(firm, key, accounts, inputs, not_simulated, shockable, batch_index,
                     calculator)


def _prepare_batch_arrays(inputs: ChunkInputs, held: HoldingArrays,
                          instruments: dict[int, Instrument], batch: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, ShockableBook | None]:
    """``_prepare_batch`` on arrays: the batch accounts (indexes) the chunk covers, those left
    to the calculator, and the prepared chunk. The same steps: a contract the validator
    refuses sends its holders to the calculator and the universe is built again of the
    others' contracts."""
    left = np.zeros(0, np.int64)
    while batch.size:
        rows = np.isin(held.account, batch)
        contracts = {pk: instruments[pk] for pk in np.unique(held.instrument[rows]).tolist()}
        try:
            universe = build_universe(inputs, contracts)
            break
        except EngineInputError as exc:
            refused = _refused_of(contracts, exc)
            if refused is None:
                return np.zeros(0, np.int64), np.union1d(left, batch), None
            holders = np.unique(held.account[rows & np.isin(
                held.instrument, np.fromiter(refused, np.int64, len(refused)))])
            left, batch = np.union1d(left, holders), np.setdiff1d(batch, holders)
        except MissingMarketData:
            return np.zeros(0, np.int64), np.union1d(left, batch), None
    else:
        return np.zeros(0, np.int64), left, None
    book = arrays_on(universe, contracts, np.searchsorted(batch, held.account[rows]),
                     held.instrument[rows], held.quantity[rows], int(batch.size))
    prepared = prepare_chunk(book, inputs.params)
    return (batch[prepared.held], np.union1d(left, batch[~prepared.held]),
            ShockableBook(prepared, int(batch.size)))


def _empty_books(firm: Firm, key: tuple) -> FirmBooks:
    return FirmBooks(firm_id=firm.pk, key=key, today=exchange_date(), params=None,
                     account_ids=np.zeros(0, np.int64), numbers=[], cash=np.zeros(0),
                     batch_index=np.zeros(0, np.int64), batch=None, alone=[], underlyings={},
                     not_simulated={})


def _assemble(firm: Firm, key: tuple, accounts: Sequence[Account | AccountRow],
              inputs: ChunkInputs, not_simulated: dict[int, str],
              shockable: ShockableBook | None, batch_index: np.ndarray,
              calculator: Sequence[Account | AccountRow]) -> FirmBooks:
    """The books of both loaders: the batch's chunk as prepared, the calculator's accounts
    prepared one by one (``_prepare_alone``), every figure at the current market."""
    index = {a.pk: k for k, a in enumerate(accounts)}
    books = FirmBooks(
        firm_id=firm.pk, key=key, today=inputs.today, params=inputs.params,
        account_ids=np.array([a.pk for a in accounts], np.int64),
        numbers=[a.number for a in accounts],
        cash=np.array([float(inputs.cash[a.pk]) for a in accounts]),
        batch_index=np.asarray(batch_index, np.int64), batch=None, alone=[], underlyings={},
        not_simulated=not_simulated)
    if shockable is not None:
        # the chunk's accounts in its order; those it does not cover are valued alone
        books.batch = shockable
        books.underlyings.update(shockable.run.portfolio.underlyings
                                 if shockable.prepared.chunk is not None else {})
    for account in calculator:
        prepared = _prepare_alone(inputs, account, index[account.pk])
        if isinstance(prepared, str):
            not_simulated[index[account.pk]] = prepared
        else:
            books.alone.append(prepared)
            books.underlyings.update(prepared.portfolio.underlyings)
    books.equity, books.requirement = _figures(books, None)
    return books


def _merged(parts: Sequence[ChunkInputs]) -> ChunkInputs:
    """The chunks' inputs as one (the same market state, parameters and day)."""
    first = parts[0]
    union: dict[str, dict] = {name: {} for name in ("positions", "prices", "vol_rows", "vols",
                                                     "rejected", "cash")}
    for part in parts:
        for name, merged in union.items():
            merged.update(getattr(part, name))
    return replace(first, **union)


def load_books_by_chunk(firm: Firm, key: tuple = ()) -> FirmBooks:
    """The firm's books read by the sweep's own chunk loader (``ChunkInputs.load``,
    ``LOAD_CHUNK`` accounts at a time, merged) and prepared by its chunk builder
    (``_chunk_book``): what ``load_books`` replaced (152 s at 100,000 accounts), kept as the
    reference the array load is held to (tests/desk/test_risk.py)."""
    size = max(int(settings.MARGIN_SWEEP_CHUNK), LOAD_CHUNK)
    with firm_scope(firm):
        accounts = list(Account.objects.exclude(status=Account.Status.CLOSED)
                        .select_related("firm").order_by("pk"))
        if not accounts:
            return _empty_books(firm, key)
        parts = [ChunkInputs.load(accounts[k:k + size]) for k in range(0, len(accounts), size)]
    index = {a.pk: k for k, a in enumerate(accounts)}
    not_simulated: dict[int, str] = {}
    batch: list[Account] = []
    alone: list[Account] = []
    inputs = _merged(parts)
    for account in accounts:
        blocked = inputs.blocked(account)
        if blocked:
            not_simulated[index[account.pk]] = f"oracle round rejected: {', '.join(blocked)}"
        elif inputs.batchable(account):
            batch.append(account)
        else:
            alone.append(account)
    held, left, shockable = _prepare_batch(inputs, batch)
    return _assemble(firm, key, accounts, inputs, not_simulated, shockable,
                     np.array([index[a.pk] for a in held], np.int64), [*left, *alone])


def _prepare_batch(inputs: ChunkInputs, accounts: list[Account]
                   ) -> tuple[list[Account], list[Account], ShockableBook | None]:
    """The batch accounts' firm-wide chunk, prepared (the sweep's ``value_in_batch`` steps:
    a contract the validator refuses sends its holders to the calculator), and the accounts
    left to the calculator."""
    book, accounts, left = chunk_book_of(inputs, accounts)
    if book is None:
        return [], left, None
    prepared = prepare_chunk(book, inputs.params)
    held = [a for k, a in enumerate(accounts) if prepared.held[k]]
    left += [a for k, a in enumerate(accounts) if not prepared.held[k]]
    return held, left, ShockableBook(prepared, len(accounts))


def _prepare_alone(inputs: ChunkInputs, account: Account, index: int) -> _Alone | str:
    """A book the calculator values, built as ``valuing.value_alone`` builds it (or why not)."""
    positions = inputs.held(account)
    try:
        portfolio = build_portfolio(positions, valuation_date=inputs.today,
                                    prices=inputs.prices, vols=inputs.vols, rate=inputs.rate,
                                    params=inputs.params, valuation_time=inputs.now,
                                    methods=requirement_methods(account, positions))
        vols = value_positions(portfolio, inputs.params, need_model=False, greeks=False).vols \
            if portfolio.positions else np.zeros(0)
    except MissingMarketData as exc:
        return f"missing price: {exc}"
    except EngineInputError as exc:
        return f"{exc.code}: {exc.message}"
    return _Alone(index, portfolio, vols, account.margin_type, inputs.cash[account.pk])


# --------------------------------------------------------------------------- valuing


def _figures(books: FirmBooks, shock: PriceShock | None) -> tuple[np.ndarray, np.ndarray]:
    """Equity and requirement of every account at the shocked market (the current one without
    a shock); NaN for the accounts not valued."""
    n = books.accounts
    equity, requirement = np.full(n, np.nan), np.full(n, np.nan)
    if books.batch is not None:
        found = books.batch.figures(shock)
        covered = books.batch.valued
        found = replace(found, **{name: getattr(found, name)[covered] for name in
                                  ("net_liquidation_value", "variation", "requirement")})
        k = books.batch_index
        # cash plus the positions' value to the cent, as a snapshot rounds it (figures.money)
        equity[k] = books.cash[k] + _cents(found.net_liquidation_value + found.variation)
        requirement[k] = _cents(found.requirement)
    for book in books.alone:
        figures = _alone_figures(books, book, shock)
        if isinstance(figures, str):
            continue
        equity[book.index], requirement[book.index] = figures
    return equity, requirement


def _cents(values: np.ndarray) -> np.ndarray:
    """Rounded half away from zero to the cent, as ``figures.money`` rounds one amount."""
    return np.sign(values) * np.floor(np.abs(values) * 100.0 + 0.5) / 100.0


def _alone_figures(books: FirmBooks, book: _Alone, shock: PriceShock | None
                   ) -> tuple[float, float] | str:
    from margin.calculator.compute import calculate
    from margin.calculator.parse import CalculatorError

    from .figures import empty_result

    portfolio, variation = book.portfolio, 0.0
    if shock is not None:
        portfolio = shock_portfolio(portfolio, shock, books.params, book.vols)
        variation = futures_variation(book.portfolio, shock)
    try:
        result = calculate(portfolio, books.params) if portfolio.positions \
            else empty_result(books.today)
    except CalculatorError as exc:
        return f"{exc.errors[0]['code']}: {exc}"
    result = {**result, "net_liquidation_value": result["net_liquidation_value"] + variation}
    figures = snapshot_figures(margin_type=book.margin_type, cash=book.cash, result=result)
    return float(figures["equity"]), float(figures["requirement"])


def account_figures(firm: Firm, shock: PriceShock | None, *, use_cache: bool = True
                    ) -> dict[str, tuple[float, float]]:
    """Every simulated account's (equity, requirement) at the shocked market, by number (the
    tests hold them to the calculator's)."""
    books, _ = firm_books(firm, use_cache=use_cache)
    equity, requirement = _figures(books, shock)
    return {books.numbers[k]: (float(equity[k]), float(requirement[k]))
            for k in range(books.accounts) if not np.isnan(equity[k])}


# --------------------------------------------------------------------------- the answer


def resolve_shock(books: FirmBooks, *, symbol: str | None = None, move: Any = None,
                  scenario: str | None = None) -> PriceShock:
    """The shock asked for, or ``SimulationRefused`` naming the field and the problem."""
    try:
        if scenario:
            return named_shock(scenario, books.underlyings)
        if not symbol:
            raise SimulationRefused("name an underlying to move, or a named scenario",
                                    field="symbol", code="required")
        return symbol_shock(symbol, move, books.underlyings)
    except EngineInputError as exc:
        raise SimulationRefused(exc.message, field=exc.field, code=exc.code) from None


def simulate(firm: Firm, *, symbol: str | None = None, move: Any = None,
             scenario: str | None = None, use_cache: bool = True) -> Simulation:
    """The firm's books at the move (module docstring): a percentage ``move`` of ``symbol``
    (-0.10 for down 10 %) or the named ``scenario``. Writes nothing."""
    books, source = firm_books(firm, use_cache=use_cache)
    load_seconds = books.load_seconds if source == DATABASE else 0.0
    started = time.perf_counter()
    shock = resolve_shock(books, symbol=symbol, move=move, scenario=scenario)
    if books.batch is not None and not books.batch.separable(shock):
        # Contracts of two underlyings with the same terms and price share one series of the
        # batch's table (two stocks of a class group at one price): moved apart, they would
        # need two. Rare; refused in words rather than valued wrong.
        raise SimulationRefused("two underlyings this move separates share a contract series "
                                "in the firm's books; move their class group instead",
                                field="symbol", code="not_separable")
    equity, requirement = _figures(books, shock)
    answer = _answer(books, shock, equity, requirement)
    compute_seconds = time.perf_counter() - started
    return replace(answer, books=source, load_seconds=load_seconds,
                   compute_seconds=compute_seconds)


def _answer(books: FirmBooks, shock: PriceShock, equity: np.ndarray,
            requirement: np.ndarray) -> Simulation:
    valued = ~np.isnan(equity) & ~np.isnan(books.equity)
    excess_now = books.equity - books.requirement
    excess = equity - requirement
    deficit = valued & (excess < 0)
    order = np.flatnonzero(deficit)
    order = order[np.argsort(excess[order], kind="stable")][:LISTED]
    listed = [AccountMove(
        number=books.numbers[k], equity_now=money(books.equity[k]), equity_after=money(equity[k]),
        requirement_now=money(books.requirement[k]), requirement_after=money(requirement[k]),
        excess_now=money(excess_now[k]), excess_after=money(excess[k]))
        for k in order.tolist()]
    failed = {k: "the calculator refused the book at the moved market"
              for k in np.flatnonzero(~np.isnan(books.equity) & np.isnan(equity)).tolist()}
    not_simulated = {**books.not_simulated, **failed}
    return Simulation(
        shock=shock, accounts=books.accounts, simulated=int(valued.sum()), deficits=listed,
        in_deficit_after=int(deficit.sum()),
        newly_in_deficit=int((deficit & (excess_now >= 0)).sum()),
        now=_totals(books.equity[valued], books.requirement[valued]),
        after=_totals(equity[valued], requirement[valued]),
        not_simulated=sorted((books.numbers[k], why) for k, why in not_simulated.items()),
        books="", load_seconds=0.0, compute_seconds=0.0)


def _totals(equity: np.ndarray, requirement: np.ndarray) -> Totals:
    excess = equity - requirement
    return Totals(equity=money(round(float(equity.sum()), 2)),
                  requirement=money(round(float(requirement.sum()), 2)),
                  excess=money(round(float(excess.sum()), 2)),
                  deficit=money(round(float(-excess[excess < 0].sum()), 2)),
                  in_deficit=int((excess < 0).sum()))
