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
from django.utils import timezone

from accounts.models import Account, Instrument
from accounts.services import cash_balances
from margin.engine import ENGINE_VERSION
from margin.engine.batch import ChunkBook, ChunkFigures, value_chunk
from margin.engine.errors import POSITION_FIELD, EngineInputError
from margin.engine.parameters import ParameterSet

from .book import (
    Holding,
    MissingMarketData,
    build_portfolio,
    current_rate_row,
    load_positions,
    market_observations_for,
    rate_value,
    vol_values,
)
from .figures import (
    END_OF_DAY,
    active_parameter_row,
    empty_result,
    inputs_hash,
    instrument_ids,
    money,
    parameters_of,
    recorded_inputs,
    snapshot_figures,
)
from .market_data import PriceRow, VolRow, exchange_date, outstanding_rejections
from .models import (
    MarginSnapshot,
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

    @classmethod
    def load(cls, accounts: Sequence[Account], end_of_day: frozenset[int] = frozenset()
             ) -> ChunkInputs:
        parameter_row = active_parameter_row(accounts[0].firm)
        params, label = parameters_of(parameter_row)
        positions = load_positions(accounts)
        prices, vol_rows = market_observations_for(positions)
        held = {i for rows in positions.values() for p in rows for i in instrument_ids(p)}
        today = exchange_date()
        rate_row = current_rate_row(today)
        return cls(params=params, parameter_label=label, parameter_row=parameter_row,
                   positions=positions, prices=prices, vol_rows=vol_rows,
                   vols=vol_values(vol_rows),
                   rejected=outstanding_rejections(prices.keys() | held), now=timezone.now(),
                   today=today, rate_row=rate_row, rate=rate_value(rate_row),
                   cash=cash_balances(accounts), end_of_day=end_of_day)

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
        held = self.held(account)
        if not held or account.margin_type != Account.MarginType.PORTFOLIO_MARGIN:
            return False
        priced = self._priced
        for p in held:
            ok = priced.get(p.instrument_id)
            if ok is None:
                ok = priced[p.instrument_id] = (
                    p.instrument.kind in BATCH_INSTRUMENT_KINDS
                    and all(i.pk in self.prices for i in _declared(p)))
            if not ok:
                return False
        return True

    @cached_property
    def _priced(self) -> dict[int, bool]:
        """Per contract, once for the chunk: a kind the batch covers, what it rests on priced."""
        return {}

    def snapshot(self, account: Account, *, methods: tuple[str, ...], result: dict,
                 risk_arrays: dict[str, str]) -> MarginSnapshot:
        """The unsaved history snapshot of one valuation (the sweep decides whether to keep it)."""
        cash = self.cash[account.pk]
        snapshot = MarginSnapshot(
            firm=account.firm, account=account, computed_at=self.now,
            engine_version=ENGINE_VERSION, parameter_set=self.parameter_label,
            margin_type=account.margin_type, cash=money(cash), methods=list(methods),
            **snapshot_figures(margin_type=account.margin_type, cash=cash, result=result),
            flags=list(result.get("warnings", [])), result=None, risk_arrays=risk_arrays,
            **recorded_inputs(positions=self.held(account), valuation_date=self.today,
                              prices=self.prices, vols=self.vol_rows, rate=self.rate_row,
                              parameter_row=self.parameter_row, history=None,
                              returns_needed=None))
        if account.pk in self.end_of_day:
            snapshot.reason = END_OF_DAY
        snapshot.inputs_hash = inputs_hash(snapshot)
        # Not a stored field (the snapshot's health factor is; recompute_snapshot reproduces
        # both): the debt the health factor is measured against, which a collateral call's
        # amount needs (margin.calls.deficits.collateral_owed).
        snapshot.collateral_debt = collateral_debt(result)
        return snapshot


def collateral_debt(result: dict) -> Decimal | None:
    """The debt of the collateral block's health factor (METHODOLOGY.md 6; the engine's
    ``defi.collateral.health_factor``): short tokens and perpetual losses, the positions
    whose market value is negative; None without debt."""
    block = result.get("collateral") or {}
    debt = sum((-row["market_value"] for row in block.get("positions", ())
                if row["market_value"] < 0), 0.0)
    return money(debt) if debt > 0 else None


def _declared(position: Holding) -> list[Instrument]:
    """The instruments ``build_portfolio`` needs a price for (the underlyings it declares)."""
    instrument = position.instrument
    if instrument.is_option or instrument.kind == Instrument.Kind.PERPETUAL:
        return [instrument.underlying]
    if instrument.kind == Instrument.Kind.UNISWAP_V3_LP:
        return [instrument.token0, instrument.token1]
    return [instrument]


def value_accounts(accounts: Sequence[Account], *, end_of_day: frozenset[int] = frozenset()
                   ) -> tuple[list[Flagged], list[MarginSnapshot]]:
    """Value a chunk's accounts (one firm): the flagged ones, and the valued ones as unsaved
    snapshots (module docstring); those in ``end_of_day`` are the day's record."""
    inputs = ChunkInputs.load(accounts, end_of_day)
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
    left: list[Account] = []
    while True:
        if not accounts:
            return [], left
        try:
            book = _chunk_book(inputs, accounts)
            break
        except EngineInputError as exc:
            # A contract the validator refuses (an option past its expiry, say): its holders
            # go to the calculator, which says so in their own terms; the rest stay in batch.
            refused = _refused_contract(inputs, accounts, exc)
            if refused is None:
                return [], left + accounts
            holders = {a for a in accounts
                       if any(p.instrument_id == refused for p in inputs.held(a))}
            left += [a for a in accounts if a in holders]
            accounts = [a for a in accounts if a not in holders]
        except MissingMarketData:
            return [], left + accounts  # the universe does not value: each account alone
    figures = value_chunk(book, inputs.params)
    snapshots = [inputs.snapshot(account, methods=PM_ONLY,
                                 result=_pm_result(figures, k, inputs.today),
                                 risk_arrays={name: pack(pnl) for name, pnl
                                              in figures.risk_arrays[k].items()})
                 for k, account in enumerate(accounts) if figures.valued[k]]
    return snapshots, left + [a for k, a in enumerate(accounts) if not figures.valued[k]]


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
    contracts = {p.instrument_id: p.instrument for rows in held for p in rows}
    stand_ins = [Holding(0, instrument, Decimal(1), Decimal(0))
                 for instrument in contracts.values()]
    universe = build_portfolio(stand_ins, valuation_date=inputs.today, prices=inputs.prices,
                               vols=inputs.vols, rate=inputs.rate, params=inputs.params,
                               valuation_time=inputs.now, methods=PM_ONLY)
    by_symbol = {p.id: k for k, p in enumerate(universe.positions)}
    contract_of = {pk: by_symbol[instrument.symbol] for pk, instrument in contracts.items()}
    account = np.repeat(np.arange(len(accounts), dtype=np.int64),
                        [len(rows) for rows in held])
    contract = np.fromiter((contract_of[p.instrument_id] for rows in held for p in rows),
                           np.int64, account.shape[0])
    quantity = np.fromiter((p.quantity for rows in held for p in rows), np.float64,
                           account.shape[0])
    return ChunkBook(universe, len(accounts), account, contract, quantity)


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
