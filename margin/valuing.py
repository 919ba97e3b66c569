"""Valuing a chunk of accounts: the engine's batch path for what it covers, the calculator for
the rest, each account's figures as an unsaved history snapshot.

The chunk's inputs are read once (``ChunkInputs``: positions, latest prices and vols, the
rate, cash, the firm's parameters, rejected oracle rounds). A sweep computes what the
requirement rests on (``requirement_methods``): the portfolio-margin block with the firm's house
components for every account, Reg T where it is the account's requirement, collateral where
tokens are held. The explanation (Reg T beside PM, VaR, SPAN, stress) is rendered on demand from
the recorded inputs (``margin.explain``), never stored whole (DESIGN.md "Scale").

Portfolio-margin accounts whose every contract the batch covers are valued together by
``margin.engine.batch.value_chunk`` (one series table for the chunk); every other account, and
any the batch leaves out, goes through the calculator alone, as a request would. Both give the
same numbers (tests/margin/test_batch_sweep.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import Account, Instrument, Position
from accounts.services import cash_balances
from margin.engine import ENGINE_VERSION
from margin.engine.batch import (
    ChunkBook,
    ChunkFigures,
    UniverseRun,
    reprice_universe,
    value_chunk,
    value_universe,
)
from margin.engine.errors import POSITION_FIELD, EngineInputError
from margin.engine.parameters import ParameterSet
from margin.engine.portfolio import Portfolio

from .book import (
    Holding,
    MissingMarketData,
    build_portfolio,
    current_rate_row,
    load_positions,
    rate_value,
    valued_on,
    vol_values,
)
from .figures import (
    END_OF_DAY,
    active_parameter_row,
    empty_result,
    inputs_hash,
    instrument_ids,
    money,
    new_market_state,
    new_snapshot,
    parameters_of,
    recorded_inputs,
    snapshot_figures,
)
from .market_cache import MARKET, MarketCache
from .market_data import (
    PriceRow,
    VolRow,
    exchange_date,
    newest_price_rows,
    newest_vol_rows,
    outstanding_rejections,
)
from .models import (
    MarginSnapshot,
    MarketState,
    OracleRejection,
    RiskFreeRate,
    RiskParameterSet,
)
from .risk_arrays import pack, pack_result

PM_ONLY = ("portfolio_margin",)
#: instrument kinds the batch path values (``margin.engine.batch.BATCH_KINDS`` as listed)
BATCH_INSTRUMENT_KINDS = frozenset({Instrument.Kind.STOCK, Instrument.Kind.ETF,
                                    Instrument.Kind.EQUITY_OPTION, Instrument.Kind.INDEX_OPTION,
                                    Instrument.Kind.FUTURE})
BATCH_OPTION_KINDS = frozenset({Instrument.Kind.EQUITY_OPTION, Instrument.Kind.INDEX_OPTION})
#: tokens, perpetuals and LP positions are collateral: their effective value is the block's
COLLATERAL_KINDS = frozenset({Instrument.Kind.CRYPTO, Instrument.Kind.PERPETUAL,
                              Instrument.Kind.UNISWAP_V3_LP})


def requirement_methods(account: Account, positions: Sequence[Holding]) -> tuple[str, ...]:
    """The calculator methods the account's requirement rests on: portfolio margin always (a
    Reg T account's PM figure is what an upgrade would need), Reg T where it is the requirement
    (a Reg T or cash account), collateral where tokens are held."""
    methods = list(PM_ONLY)
    if account.margin_type != Account.MarginType.PORTFOLIO_MARGIN:
        methods.append("reg_t")
    if any(p.instrument.kind in COLLATERAL_KINDS for p in positions):
        methods.append("collateral")
    return tuple(methods)


@dataclass(frozen=True)
class Flagged:
    """An account not valued, and why (its last good valuation stands)."""

    account_id: int
    flag: str


@dataclass
class ChunkInputs:
    """Everything a chunk's valuation reads, in a few queries for the whole chunk."""

    params: ParameterSet
    parameter_label: str
    parameter_row: RiskParameterSet | None
    positions: dict[int, list[Holding]]
    prices: dict[int, PriceRow]
    vol_rows: dict[int, VolRow]
    vols: dict[int, float]
    rejected: dict[int, OracleRejection]
    now: datetime
    today: date
    rate_row: RiskFreeRate | None
    rate: float
    cash: dict[int, Decimal]
    #: accounts whose valuation is the day's record (hashed as such from the start: the
    #: end-of-day run would otherwise hash every valuation twice)
    end_of_day: frozenset[int] = frozenset()
    #: the worker's kept market data the chunk was read from (``load``), if any
    market: MarketCache | None = None

    @classmethod
    def load(cls, accounts: Sequence[Account], end_of_day: frozenset[int] = frozenset(),
             market: MarketCache | None = None) -> ChunkInputs:
        """The chunk's inputs; ``market``: a sweep worker's kept market data, synced by the
        caller (``margin.market_cache``), else everything is read now."""
        parameter_row = active_parameter_row(accounts[0].firm)
        params, label = parameters_of(parameter_row)
        positions = load_positions(
            accounts, None if market is None else market.instruments_with_related)
        # ``load_positions`` gives each holding what it rests on (``valued_on``)
        held = {i for rows in positions.values() for p in rows for i in p.valued_on}
        prices, vol_rows = (newest_price_rows(held), newest_vol_rows(held)) if market is None \
            else (market.price_rows(held), market.vol_rows(held))
        today = exchange_date()
        rate_row = current_rate_row(today)
        inputs = cls(params=params, parameter_label=label, parameter_row=parameter_row,
                     positions=positions, prices=prices, vol_rows=vol_rows,
                     vols=vol_values(vol_rows),
                     rejected=outstanding_rejections(prices.keys() | held), now=timezone.now(),
                     today=today, rate_row=rate_row, rate=rate_value(rate_row),
                     cash=cash_balances(accounts), end_of_day=end_of_day, market=market)
        inputs.__dict__["held_instruments"] = held  # ``held_instruments``, found already
        return inputs

    @cached_property
    def held_instruments(self) -> set[int]:
        """Every instrument the chunk's positions rest on (``valued_on``)."""
        return {i for rows in self.positions.values() for p in rows for i in p.valued_on}

    def held(self, account: Account) -> list[Holding]:
        return self.positions.get(account.pk, [])

    def blocked(self, account: Account) -> list[str]:
        """Instruments of the account whose latest oracle round was rejected."""
        if not self.rejected:
            return []
        return sorted({f"{r.instrument.symbol} ({r.failed_check})" for p in self.held(account)
                       for r in (self.rejected.get(i) for i in instrument_ids(p)) if r})

    def batchable(self, account: Account) -> bool:
        """A portfolio-margin book the batch path values: contracts of the kinds it covers,
        every underlying priced."""
        return account.margin_type == Account.MarginType.PORTFOLIO_MARGIN \
            and bool(self.held(account)) and account.pk not in self._uncovered

    @cached_property
    def contracts(self) -> dict[int, Instrument]:
        """Every contract the chunk's accounts hold, by id."""
        # ``load_positions``' holdings: what each rests on starts with its own instrument
        return {p.valued_on[0]: p.instrument for rows in self.positions.values() for p in rows}

    @cached_property
    def _uncovered(self) -> frozenset[int]:
        """The accounts holding a contract the batch does not cover (``batch_covers``): each
        contract judged once for the chunk, then its holders found only if it is one."""
        prices = self.prices
        market = self.market
        # judged once per worker while its kept market data stands (the same instances, the
        # same prices: ``MarketCache.derived``); else once for the chunk
        covers = market.derived("batch_covers") if market is not None and market.synced \
            else {}
        left_out = set()
        for pk, instrument in self.contracts.items():
            covered = covers.get(pk)
            if covered is None:
                covered = covers[pk] = batch_covers(instrument, prices)
            if not covered:
                left_out.add(pk)
        if not left_out:
            return frozenset()
        return frozenset(account for account, rows in self.positions.items()
                         if any(p.instrument_id in left_out for p in rows))

    def snapshot(self, account: Account, *, methods: tuple[str, ...], result: dict,
                 risk_arrays: dict[str, str]) -> MarginSnapshot:
        """The unsaved history snapshot of one valuation (the sweep decides whether to keep it).
        What it valued (positions, market rows by id) and its inputs hash are recorded when
        it is kept (``record_inputs``): an intraday sweep keeps a few of the hundreds it
        values, and recording each was a tenth of a tick's chunk."""
        cash = self.cash[account.pk]
        figures = snapshot_figures(margin_type=account.margin_type, cash=cash, result=result)
        flags = list(result.get("warnings", []))
        snapshot = new_snapshot({
            **self._unchanging, "account": account, "firm": account.firm,
            "margin_type": account.margin_type, "cash": money(cash), "methods": list(methods),
            **figures, "flags": flags, "risk_arrays": risk_arrays},
            # JSON serialized once for both hashes and the insert (``new_snapshot``): the
            # methods' (text by construction); the calculator's warnings, add-on names and
            # class groups where they are text
            plain_json=("methods", *(
                name for name, value in (("flags", flags), ("add_ons", figures["add_ons"]),
                                         ("risk_arrays", risk_arrays)) if _text_only(value))))
        if account.pk in self.end_of_day:
            snapshot.reason = END_OF_DAY
        snapshot._unrecorded = (self, account)
        # Not a stored field (the snapshot's health factor is; recompute_snapshot reproduces
        # both): the debt the health factor is measured against, which a collateral call's
        # amount needs (margin.calls.deficits.collateral_owed).
        snapshot.collateral_debt = collateral_debt(result)
        return snapshot

    def record(self, snapshot: MarginSnapshot, account: Account,
               market_state: MarketState | None = None) -> None:
        """``record_inputs`` of a snapshot of this chunk's: its market rows by the chunk's
        ``market_state`` (``market_state_for``), or its own."""
        recorded = recorded_inputs(positions=self.held(account), valuation_date=self.today,
                                   prices=self.prices, vols=self.vol_rows, rate=self.rate_row,
                                   parameter_row=self.parameter_row, history=None,
                                   returns_needed=None, market_state=market_state)
        for name, value in recorded.items():
            setattr(snapshot, name, value)
        # the recorded positions and ids are integers and text only (``new_snapshot``)
        snapshot._json_texts.update((name, (recorded[name], None)) for name in RECORDED_JSON)

    def market_state_for(self, accounts: Sequence[Account]) -> MarketState:
        """The market state of the rows ``accounts``' positions rest on (``new_market_state``).

        Where every account of the chunk is kept (an end-of-day chunk) and the chunk read the
        worker's kept market data, one state serves every such chunk of the worker at that
        data's generation: the rows of every instrument the kept universe rests on, recorded
        once (``MarketCache.derived``; stored by the first chunk, found by digest after). A
        state per chunk cost what the snapshots' own maps did (some 20,000 rows each)."""
        if not self.positions.keys() <= {a.pk for a in accounts}:
            held = {i for a in accounts for p in self.held(a) for i in p.valued_on}
            return new_market_state(held, self.prices, self.vol_rows)
        held = self.held_instruments
        if self.market is not MARKET or not MARKET.synced:
            return new_market_state(held, self.prices, self.vol_rows)
        kept = MARKET.derived("market_state")
        if kept.get("state") is None or not held <= kept["instruments"]:
            instruments = held | UNIVERSES.rested_on()
            state = new_market_state(instruments, MARKET.price_rows(instruments),
                                     MARKET.vol_rows(instruments))
            kept["state"], kept["instruments"] = state, frozenset(instruments)
        return kept["state"]

    @cached_property
    def _unchanging(self) -> dict:
        """A chunk's snapshot fields that are the same for every account of it."""
        return {"computed_at": self.now, "engine_version": ENGINE_VERSION,
                "parameter_set": self.parameter_label, "result": None}


#: the JSON fields ``ChunkInputs.record`` writes of ids and text only (``recorded_inputs``)
RECORDED_JSON = ("positions", "price_ids", "vol_ids")


def record_inputs(snapshot: MarginSnapshot) -> MarginSnapshot:
    """Record what a valuation valued (``ChunkInputs.snapshot`` leaves it until the snapshot
    is kept) and hash it, as the day's record or not (``reason``): the inputs hash a stored
    snapshot is found by, so a redelivered chunk writes nothing twice. Once; a snapshot
    recorded already is only hashed again (its reason may have changed since). Its market
    rows are its own (``record_chunk`` records a chunk's once)."""
    return record_chunk([snapshot], by_state=False)[0]


def record_chunk(snapshots: list[MarginSnapshot], *, by_state: bool = True
                 ) -> list[MarginSnapshot]:
    """``record_inputs`` of a chunk's kept snapshots, their market rows recorded once for them
    all (``MarketState``, ``by_state``): two maps of ids per snapshot were a ninth of an
    end-of-day chunk's CPU and a sixth of the database's."""
    pending: dict[int, tuple[ChunkInputs, list[tuple[MarginSnapshot, Account]]]] = {}
    for snapshot in snapshots:
        unrecorded = snapshot.__dict__.pop("_unrecorded", None)
        if unrecorded is not None:
            inputs, account = unrecorded
            pending.setdefault(id(inputs), (inputs, []))[1].append((snapshot, account))
    for inputs, kept in pending.values():
        state = inputs.market_state_for([a for _, a in kept]) if by_state else None
        for snapshot, account in kept:
            inputs.record(snapshot, account, state)
    for snapshot in snapshots:
        snapshot.inputs_hash = inputs_hash(snapshot)
    return snapshots


def _text_only(value: list | dict) -> bool:
    """A list of text, or a dict of text to text."""
    if isinstance(value, dict):
        return all(type(k) is str and type(v) is str for k, v in value.items())
    return all(type(v) is str for v in value)


def collateral_debt(result: dict) -> Decimal | None:
    """The debt of the collateral block's health factor (METHODOLOGY.md 6; the engine's
    ``defi.collateral.health_factor``): short tokens and perpetual losses, the positions
    whose market value is negative; None without debt."""
    block = result.get("collateral") or {}
    debt = sum((-row["market_value"] for row in block.get("positions", ())
                if row["market_value"] < 0), 0.0)
    return money(debt) if debt > 0 else None


def batch_covers(instrument: Instrument, prices: dict) -> bool:
    """A contract the batch path values: of a kind it covers, what it rests on priced (an
    option's underlying, else the contract itself: ``declared_by`` for these kinds)."""
    kind = instrument.kind
    if kind not in BATCH_INSTRUMENT_KINDS:
        return False
    return (instrument.underlying_id if kind in BATCH_OPTION_KINDS else instrument.pk) in prices


def declared_by(instrument: Instrument) -> list[Instrument]:
    """The instruments ``build_portfolio`` needs a price for (the underlyings it declares)."""
    if instrument.is_option or instrument.kind == Instrument.Kind.PERPETUAL:
        return [instrument.underlying]
    if instrument.kind == Instrument.Kind.UNISWAP_V3_LP:
        return [instrument.token0, instrument.token1]
    return [instrument]


def value_accounts(accounts: Sequence[Account], *, end_of_day: frozenset[int] = frozenset()
                   ) -> tuple[list[Flagged], list[MarginSnapshot]]:
    """Value a chunk's accounts (one firm): the flagged ones, and the valued ones as unsaved
    snapshots (module docstring); those in ``end_of_day`` are the day's record."""
    MARKET.sync()
    inputs = ChunkInputs.load(accounts, end_of_day, market=MARKET)
    flagged: list[Flagged] = []
    batch: list[Account] = []
    alone: list[Account] = []
    for account in accounts:
        blocked = inputs.blocked(account)
        if blocked:
            # Never valued at a rejected price: the last good snapshot stands, flagged.
            flagged.append(Flagged(account.pk, f"oracle_rejected: {', '.join(blocked)}"))
        elif inputs.batchable(account):
            batch.append(account)
        else:
            alone.append(account)
    valuations, left = value_in_batch(inputs, batch)
    for account in [*left, *alone]:
        outcome = value_alone(inputs, account)
        (flagged if isinstance(outcome, Flagged) else valuations).append(outcome)
    return flagged, valuations


def value_alone(inputs: ChunkInputs, account: Account) -> Flagged | MarginSnapshot:
    """One account through the calculator, as a request with its book would be valued."""
    from margin.calculator.compute import calculate
    from margin.calculator.parse import CalculatorError

    positions = inputs.held(account)
    methods = requirement_methods(account, positions)
    try:
        portfolio = build_portfolio(positions, valuation_date=inputs.today,
                                    prices=inputs.prices, vols=inputs.vols, rate=inputs.rate,
                                    params=inputs.params, valuation_time=inputs.now,
                                    methods=methods)
        result = calculate(portfolio, inputs.params) if portfolio.positions \
            else empty_result(inputs.today)
    except MissingMarketData as exc:
        return Flagged(account.pk, f"missing_price: {exc}")
    except EngineInputError as exc:
        return Flagged(account.pk, f"{exc.code}: {exc.message}")
    except CalculatorError as exc:
        # The engine refused the book as priced (e.g. an option mark outside its no-arbitrage
        # bounds after its underlying moved): flagged, the chunk goes on.
        return Flagged(account.pk, f"{exc.errors[0]['code']}: {exc}")
    return inputs.snapshot(account, methods=methods, result=result,
                           risk_arrays=pack_result(result))


def value_in_batch(inputs: ChunkInputs, accounts: list[Account]
                    ) -> tuple[list[MarginSnapshot], list[Account]]:
    """The accounts the batch values, as snapshots, and the ones it leaves to the calculator."""
    if accounts:
        held = [inputs.held(a) for a in accounts]
        # every account holding anything is the batch's (an end-of-day chunk, mostly): the
        # chunk's contracts are the batch's
        contracts = inputs.contracts if len(accounts) == len(inputs.positions) \
            else {p.valued_on[0]: p.instrument for rows in held for p in rows}
        # A small chunk (a tick's) is valued on the kept universe when it is current or
        # brought up to date in part, but builds no new one: after a move of more than that,
        # its own contracts cost it less than the firm's.
        whole = UNIVERSES.whole_for(accounts[0].firm_id, inputs, contracts, build=len(
            accounts) >= int(settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS))
        if whole is not None:
            book = _holdings_on(whole.universe, held, contracts)
            return _snapshots(inputs, accounts, value_chunk(book, whole.params, whole), [])
    book, accounts, left = chunk_book_of(inputs, accounts)
    if book is None:
        return [], left
    figures = value_chunk(book, inputs.params)
    return _snapshots(inputs, accounts, figures, left)


def chunk_book_of(inputs: ChunkInputs, accounts: list[Account]
                  ) -> tuple[ChunkBook | None, list[Account], list[Account]]:
    """The chunk's own book (``_chunk_book``) of the accounts the batch keeps: the book (None
    when none is left), those accounts, and the ones left to the calculator. A contract the
    validator refuses (an option past its expiry, say) sends its holders to the calculator,
    which says so in their own terms, and the book is built again of the others; a universe
    that does not value (a price missing) leaves every account to the calculator."""
    left: list[Account] = []
    while accounts:
        try:
            return _chunk_book(inputs, accounts), accounts, left
        except EngineInputError as exc:
            refused = _refused_contract(inputs, accounts, exc)
            if refused is None:
                return None, [], left + accounts
            holders = {a for a in accounts
                       if any(p.instrument_id == refused for p in inputs.held(a))}
            left += [a for a in accounts if a in holders]
            accounts = [a for a in accounts if a not in holders]
        except MissingMarketData:
            return None, [], left + accounts
    return None, [], left


def _snapshots(inputs: ChunkInputs, accounts: list[Account], figures: ChunkFigures,
               left: list[Account]) -> tuple[list[MarginSnapshot], list[Account]]:
    snapshots = [inputs.snapshot(account, methods=PM_ONLY,
                                 result=_pm_result(figures, k, inputs.today),
                                 risk_arrays={name: pack(pnl) for name, pnl
                                              in figures.risk_arrays[k].items()})
                 for k, account in enumerate(accounts) if figures.valued[k]]
    return snapshots, left + [a for k, a in enumerate(accounts) if not figures.valued[k]]


@dataclass
class _Kept:
    """The universe a worker process keeps (``UniverseCache``) and what it was built from."""

    key: tuple
    params: ParameterSet
    #: its contracts (ids only: the instances, some 1.5 kB each, are not kept)
    contracts: frozenset[int]
    #: each contract and instrument it rests on: (its stored fields, its price's id)
    states: dict[int, tuple]
    vol_ids: dict[int, int]  # contract -> the id of the implied vol it was valued at
    whole: UniverseRun
    #: the kept market data's generation it was built at (None: built from reads of the
    #: chunk's own, compared by ``states`` and ``vol_ids``)
    generation: int | None = None
    #: (instrument rested on, contract) pairs sorted by the first, made when first asked
    #: (``resting_on``): two arrays, not a dict of 50,000 lists
    _rests: tuple[np.ndarray, np.ndarray] | None = None

    def resting_on(self, changed: frozenset[int]) -> np.ndarray:
        """The contracts of the universe whose value rests on one of ``changed`` (itself, its
        underlying, an LP's tokens: ``valued_on``), as sorted ids."""
        if not changed:
            return np.zeros(0, np.int64)
        rests, contracts = self.rests()
        hit = np.isin(rests, np.fromiter(changed, np.int64, len(changed)))
        return np.unique(contracts[hit])

    def rests(self) -> tuple[np.ndarray, np.ndarray]:
        """Each (instrument rested on, contract) pair, as two arrays sorted by the first."""
        if self._rests is None:
            instruments = MARKET.instruments_with_related(self.contracts)
            pairs = np.array([(r, pk) for pk, i in instruments.items() for r in valued_on(i)],
                             np.int64).reshape(-1, 2)
            order = np.argsort(pairs[:, 0], kind="stable")
            self._rests = (pairs[order, 0], pairs[order, 1])
        return self._rests


class UniverseCache:
    """One universe per worker process, valued whole (``margin.engine.batch.value_universe``)
    and kept across chunks: the chunks of an end-of-day run hold largely the same contracts
    in one market state, and building, validating and valuing each contract and pricing its
    series on every grid once per chunk holding it was half a chunk's time (50 chunks of
    2,000 accounts over 50,000 contracts at 100,000 accounts).

    A chunk is valued on the kept universe only when every contract it holds is in it at the
    same state: the same stored fields of the contract and of what it rests on (underlying,
    tokens), the same price observation of each and the same implied-vol observation, the
    same day, rate, firm and parameter set. Otherwise a new universe is built: the chunk's
    contracts at the state the chunk read, and every other contract the firm's accounts hold
    that the batch values, read at once (2 s for 50,000 contracts, once per process and
    market state instead of once per chunk). An account's figures rest only on its own
    contracts, so valuing it on a larger universe gives the same numbers
    (tests/margin/test_batch_sweep.py holds the two paths equal). A tick's small chunks (fewer
    than ``MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS`` accounts) build their own universe as before:
    after a move the kept one is stale, and rebuilding it whole would cost the tick more than
    its own contracts do."""

    def __init__(self) -> None:
        self.kept: _Kept | None = None
        #: the state (firm, day, rate, parameters) at which the firm's universe was refused
        self.refused_key: tuple | None = None
        self.hits = self.builds = self.repriced = 0

    def rested_on(self) -> set[int]:
        """Every instrument the kept universe's contracts rest on (none kept: none)."""
        kept = self.kept
        return set() if kept is None else set(kept.rests()[0].tolist())

    def clear(self) -> None:
        """Forget the kept universe; the counts start again."""
        self.kept = self.refused_key = None
        self.hits = self.builds = self.repriced = 0

    def whole_for(self, firm_id: int, inputs: ChunkInputs, contracts: dict[int, Instrument],
                  *, build: bool = True) -> UniverseRun | None:
        """The valued universe holding ``contracts`` at the chunk's state, or None when it
        cannot be built (a contract refused: the chunk goes its usual way). The kept one, as
        it is or with the contracts a move of the market reached valued again
        (``_repriced``); else, with ``build``, a new one."""
        key = (firm_id, inputs.today, inputs.rate, getattr(inputs.rate_row, "pk", None),
               inputs.parameter_label, getattr(inputs.parameter_row, "pk", None))
        if key == self.refused_key:
            return None
        kept = self.kept
        if kept is not None and kept.key == key and kept.params == inputs.params:
            if self._current(kept, inputs, contracts):
                self.hits += 1
                return kept.whole
            repriced = self._repriced(kept, inputs, contracts)
            if repriced is not None:
                return repriced
        if not build:
            return None
        # A new universe: the chunk's contracts at the chunk's state, and every other
        # contract the firm's accounts hold that the batch values, read now (so the run's
        # later chunks find theirs in it).
        others = MARKET.instruments_with_related(_held_by_firm() - contracts.keys())
        other_prices = MARKET.price_rows(
            {r for i in others.values() for r in valued_on(i)} - inputs.prices.keys())
        prices = {**other_prices, **inputs.prices}
        other_vols = MARKET.vol_rows(others.keys())
        instruments = {**{pk: i for pk, i in others.items() if batch_covers(i, prices)},
                       **contracts}
        vol_rows = {**other_vols, **inputs.vol_rows}
        vols = vol_values(vol_rows)
        universe: Portfolio | None = None
        for _ in range(MAX_REFUSED):
            try:
                universe = build_universe(inputs, instruments, prices, vols)
                break
            except EngineInputError as exc:
                refused = _refused_of(instruments, exc)
                if refused is None or not refused.isdisjoint(contracts):
                    break  # the chunk's own: it goes its usual way, which says so
                for pk in refused:
                    del instruments[pk]
            except MissingMarketData:
                break
        if universe is None:
            self.kept, self.refused_key = None, key
            return None
        whole = value_universe(universe, inputs.params)
        self.builds += 1
        # kept by generation only when every row it was built from is the kept market's
        # (whose generation then moves with any of them)
        keeping = MARKET.synced and inputs.market is MARKET
        self.kept = _Kept(key, inputs.params, frozenset(instruments),
                          {} if keeping else _states(instruments.values(), prices),
                          {} if keeping else {pk: row.pk for pk, row in vol_rows.items()
                                              if pk in instruments},
                          whole, MARKET.generation if keeping else None)
        return whole

    def _repriced(self, kept: _Kept, inputs: ChunkInputs, contracts: dict[int, Instrument]
                  ) -> UniverseRun | None:
        """The kept universe brought to the kept market data's present generation by valuing
        again only the contracts resting on an instrument whose price or vol changed since
        (``margin.engine.batch.reprice_universe``): a tick moves a few underlyings, and a
        worker's universe of the firm's 50,000 contracts stays warm for the next chunk, a
        tick's or the close's. None where that cannot be done (not built from kept data, an
        instrument itself changed, a contract it lacks, more than ``REPRICE_SHARE`` of it
        moved, or the part does not fit): the caller builds anew."""
        if kept.generation is None or not MARKET.synced or inputs.market is not MARKET \
                or not contracts.keys() <= kept.contracts:
            return None
        changed = MARKET.changed_since(kept.generation)
        if changed is None:
            return None
        whole = kept.whole
        ids = kept.resting_on(changed)
        if ids.size > REPRICE_SHARE * len(whole.universe.positions):
            return None
        if ids.size:
            instruments = MARKET.instruments_with_related(ids.tolist())
            if len(instruments) != ids.size:
                return None
            prices = MARKET.price_rows({r for i in instruments.values() for r in valued_on(i)})
            vol_rows = MARKET.vol_rows(instruments.keys())
            try:
                part = build_universe(inputs, instruments, prices, vol_values(vol_rows))
            except (EngineInputError, MissingMarketData):
                return None
            # the part's positions in its own order (by symbol), placed in the universe's
            by_symbol = _position_index(whole.universe)
            place = np.fromiter((by_symbol[p.id] for p in part.positions), np.int64,
                                len(part.positions))
            repriced = reprice_universe(whole, value_universe(part, inputs.params), place)
            if repriced is None:
                return None
            _reindexed(whole.universe, repriced.universe)
            kept.whole = whole = repriced
        kept.generation = MARKET.generation
        self.repriced += 1
        return whole

    @staticmethod
    def _current(kept: _Kept, inputs: ChunkInputs, contracts: dict[int, Instrument]) -> bool:
        """Whether every contract of the chunk is in the kept universe at the chunk's state.
        Where the worker keeps its market data (``margin.market_cache``) both were read from
        it: the same unless it dropped something as changed since (its generation moved).
        Elsewhere each contract's stored fields and price and vol ids are compared."""
        if kept.generation is not None:
            # the chunk read what the universe was built from (else its own reads may be newer)
            return kept.generation == MARKET.generation and inputs.market is MARKET \
                and contracts.keys() <= kept.contracts
        states = _states(contracts.values(), inputs.prices)
        vol_ids = {pk: inputs.vol_rows[pk].pk for pk in contracts if pk in inputs.vol_rows}
        return all(kept.states.get(pk) == state for pk, state in states.items()) and all(
            pk in kept.contracts and kept.vol_ids.get(pk) == vol_ids.get(pk)
            for pk in contracts)


#: rounds of contracts refused by the validator (each round every one it lists) that a
#: universe leaves out before it gives up
MAX_REFUSED = 20
#: the share of a kept universe's contracts a move may reach for it to be valued again in
#: part (``UniverseCache._repriced``); past it, it is built whole
REPRICE_SHARE = 0.25


def _states(instruments, prices: dict[int, PriceRow]) -> dict[int, tuple]:
    """Each instrument and what it rests on: (its stored fields, its price's id)."""
    states: dict[int, tuple] = {}
    for instrument in instruments:
        for i in (instrument, *_rests_on(instrument)):
            if i.pk not in states:
                price = prices.get(i.pk)
                states[i.pk] = (_stored(i), price.pk if price else None)
    return states


def _held_by_firm() -> set[int]:
    """The instruments the current firm's accounts hold (the firm scope's positions)."""
    from accounts.models import Position

    return set(Position.objects.values_list("instrument_id", flat=True).distinct())


def _refused_of(instruments: dict[int, Instrument], exc: EngineInputError
                ) -> frozenset[int] | None:
    """The contracts a validation error of a universe names, every problem it lists at once
    (``positions[i]``: the i-th by symbol, as ``build_portfolio`` orders them), or None where
    one is not a contract's."""
    ordered = sorted(instruments.values(), key=lambda i: i.symbol)
    refused = set()
    for problem in getattr(exc, "problems", None) or (exc,):
        match = POSITION_FIELD.match(problem.field or "")
        if match is None or int(match.group(1)) >= len(ordered):
            return None
        refused.add(ordered[int(match.group(1))].pk)
    return frozenset(refused)


def _rests_on(instrument: Instrument) -> list[Instrument]:
    """The instruments a contract's valuation reads besides itself (``valued_on``)."""
    return [i for i in (instrument.underlying if instrument.underlying_id else None,
                        instrument.token0 if instrument.token0_id else None,
                        instrument.token1 if instrument.token1_id else None) if i is not None]


#: the stored fields of an instrument, in order
_INSTRUMENT_FIELDS = tuple(f.attname for f in Instrument._meta.concrete_fields)


def _stored(instrument: Instrument) -> tuple:
    values = instrument.__dict__
    return tuple(values.get(name) for name in _INSTRUMENT_FIELDS)


#: this process's universe (a worker values chunk after chunk)
UNIVERSES = UniverseCache()


def _refused_contract(inputs: ChunkInputs, accounts: list[Account],
                      exc: EngineInputError) -> int | None:
    """The instrument a validation error of the universe names (``positions[i]``: the i-th
    contract by symbol, as ``build_portfolio`` orders them), or None."""
    match = POSITION_FIELD.match(exc.field or "")
    if match is None:
        return None
    contracts = sorted({p.instrument_id: p.instrument for a in accounts
                        for p in inputs.held(a)}.values(), key=lambda i: i.symbol)
    index = int(match.group(1))
    return contracts[index].pk if index < len(contracts) else None


def _chunk_book(inputs: ChunkInputs, accounts: list[Account]) -> ChunkBook:
    """The chunk's universe (one position of quantity 1 per contract held, built and validated
    as an account's book is) and its holdings on it."""
    held = [inputs.held(a) for a in accounts]
    contracts = {p.valued_on[0]: p.instrument for rows in held for p in rows}
    universe = build_universe(inputs, contracts)
    return _holdings_on(universe, held, contracts)


def build_universe(inputs: ChunkInputs, contracts: dict[int, Instrument],
                   prices: dict | None = None, vols: dict[int, float] | None = None
                   ) -> Portfolio:
    """One position of quantity 1 per contract, at ``prices`` and ``vols`` (the chunk's by
    default), built and validated as an account's book is."""
    stand_ins = [Holding(0, instrument, Decimal(1), Decimal(0))
                 for instrument in contracts.values()]
    return build_portfolio(stand_ins, valuation_date=inputs.today,
                           prices=inputs.prices if prices is None else prices,
                           vols=inputs.vols if vols is None else vols, rate=inputs.rate,
                           params=inputs.params, valuation_time=inputs.now, methods=PM_ONLY)


def _holdings_on(universe: Portfolio, held: list[list[Holding]],
                 contracts: dict[int, Instrument]) -> ChunkBook:
    contract_of = _contract_index(universe, contracts)
    account = np.repeat(np.arange(len(held), dtype=np.int64), [len(rows) for rows in held])
    contract = np.fromiter((contract_of[p.valued_on[0]] for rows in held for p in rows),
                           np.int64, account.shape[0])
    quantity = np.fromiter((p.quantity for rows in held for p in rows), np.float64,
                           account.shape[0])
    return ChunkBook(universe, len(held), account, contract, quantity)


#: the universe last indexed, its positions' indexes by symbol and by instrument id
_INDEXED: list = [None, {}, {}]


def _position_index(universe: Portfolio) -> dict[str, int]:
    """Each universe position's index by its id (the contract's symbol): once per universe,
    not once per chunk valued on the kept one (50,000 positions at 100k accounts)."""
    if _INDEXED[0] is not universe:
        _INDEXED[:] = [universe, {p.id: k for k, p in enumerate(universe.positions)}, {}]
    return _INDEXED[1]


def _reindexed(old: Portfolio, new: Portfolio) -> None:
    """``new`` is ``old`` with some contracts valued again, each in its place
    (``reprice_universe``): what was indexed of the one is the other's."""
    if _INDEXED[0] is old:
        _INDEXED[0] = new


def _contract_index(universe: Portfolio, contracts: dict[int, Instrument]) -> dict[int, int]:
    """``_position_index`` by instrument id for ``contracts`` (among the universe's): each
    contract looked up by its symbol once per universe, not once per chunk holding it."""
    by_symbol = _position_index(universe)
    by_id = _INDEXED[2]
    for pk in contracts.keys() - by_id.keys():
        by_id[pk] = by_symbol[contracts[pk].symbol]
    return by_id


def _pm_result(figures: ChunkFigures, k: int, today: date) -> dict:
    """The batch's figures of account ``k`` in the calculator's response shape, so the one
    ``snapshot_figures`` rounds them (only what a snapshot stores)."""
    return {"valuation_date": today.isoformat(), "warnings": [],
            "net_liquidation_value": float(figures.net_liquidation_value[k]),
            "portfolio_margin": {
                "requirement": float(figures.requirement[k]),
                "regulatory_requirement": float(figures.regulatory[k]),
                "house_requirement": float(figures.house_requirement[k]),
                "house_components": figures.components(k),
                "minimum_charge": float(figures.minimum_charge[k])},
            "reg_t": None, "collateral": None}


# ------------------------------------------------------------------ a firm's holdings as arrays


@dataclass(frozen=True)
class HoldingArrays:
    """Every position of a set of accounts as arrays, one row per holding, ordered by account
    then instrument: what a chunk's ``ChunkBook`` holds, read without a ``Holding`` per row
    (the firm-wide simulator reads 100,000 books at once: 1.8 million rows)."""

    account: np.ndarray  # int64: index into the account ids read
    instrument: np.ndarray  # int64: the instrument's id
    quantity: np.ndarray  # float64, as ``_holdings_on`` converts each ``Decimal``


def load_holding_arrays(account_ids: np.ndarray) -> HoldingArrays:
    """The positions of ``account_ids`` (sorted, unique) among the current firm scope's
    ``Position`` rows, in one query. On PostgreSQL the rows come packed in one binary value
    (``_packed``): a firm of 100,000 accounts holds 1.8 million positions, and a Python tuple
    and a ``Decimal`` per row took 3 s of their reading (binary COPY too: a message per row)."""
    rows = Position.objects.order_by().values_list("account_id", "instrument_id", "quantity")
    if connection.vendor == "postgresql":
        table = _packed(rows)
        owner, instrument, quantity = table["account"], table["instrument"], table["quantity"]
    else:
        listed = list(rows)
        owner = np.fromiter((r[0] for r in listed), np.int64, len(listed))
        instrument = np.fromiter((r[1] for r in listed), np.int64, len(listed))
        quantity = np.fromiter((float(r[2]) for r in listed), np.float64, len(listed))
    account = np.searchsorted(account_ids, owner)
    mine = account < account_ids.shape[0]
    mine[mine] = account_ids[account[mine]] == owner[mine]  # e.g. a closed account's: left out
    account, instrument, quantity = account[mine], instrument[mine], quantity[mine]
    order = np.lexsort((instrument, account))
    return HoldingArrays(account[order].astype(np.int64), instrument[order].astype(np.int64),
                         quantity[order].astype(np.float64))


#: one packed row: account id, instrument id (bigint), quantity (double), big-endian
_PACKED_ROW = np.dtype([("account", ">i8"), ("instrument", ">i8"), ("quantity", ">f8")])


def _packed(rows) -> np.ndarray:
    """The (account id, instrument id, quantity) rows of a values-list queryset as one numpy
    record array: the server packs them into one ``bytea`` (``int8send``, ``float8send``),
    read in binary (no Python object per row). The quantity's numeric -> float8 cast is
    correctly rounded, as ``float(Decimal)`` is."""
    import psycopg

    sql, params = rows.query.sql_with_params()
    query = (f"SELECT string_agg(int8send(r.a) || int8send(r.i) || float8send(r.q::float8), "
             f"''::bytea) FROM ({sql}) AS r(a, i, q)")
    with connection.wrap_database_errors:
        connection.ensure_connection()
        # a server-side-binding cursor: Django's client-side cursors return text only
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(query, params, binary=True)
            packed = cursor.fetchone()[0] or b""
    return np.frombuffer(packed, _PACKED_ROW)


def arrays_on(universe: Portfolio, contracts: dict[int, Instrument], account: np.ndarray,
              instrument: np.ndarray, quantity: np.ndarray, n_accounts: int) -> ChunkBook:
    """``_holdings_on`` from arrays: holdings (``account`` 0..n_accounts-1, ``instrument``
    ids among ``contracts``) on the universe built of ``contracts`` (``build_universe``)."""
    by_symbol = _position_index(universe)
    ids = np.array(sorted(contracts), np.int64)
    position = np.array([by_symbol[contracts[pk].symbol] for pk in ids.tolist()], np.int64)
    contract = position[np.searchsorted(ids, instrument)]
    return ChunkBook(universe, n_accounts, account.astype(np.int64), contract,
                     quantity.astype(np.float64))
