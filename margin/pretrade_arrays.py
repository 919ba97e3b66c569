"""The pre-trade check's fast path: an account's risk arrays kept per process, so a check
revalues only the ordered contracts (issue 13, "Fast").

Per account (``HeldBook``): each held contract valued once on every grid the requirement needs
(the regulatory grid, the house volatility shifts, the concentration grids, the extended
stress: ``margin.engine.pm_aggregation.contract_vectors``), the class-group arrays they sum to,
cash, net liquidation value and the figures before. It is keyed by the account's margin version
(``AccountMargin.dirty_version`` and ``marked_at``: every position, ledger entry, price, vol,
oracle round, rate and parameter change that reaches the account raises it, in the load's own
transaction, ``margin.dirty``) and the valuation date, so a key read before the book is loaded is never
stale: a mismatch rebuilds the entry from one valuation of the book. Contracts ordered but not
held are valued alone (``ContractVector``), keyed by the contract, the price and vol rows it is
valued at, the rate, the parameters and the date.

The book after the orders is then the cached class-group arrays plus quantity x the ordered
contracts' vectors, aggregated by the engine's one aggregation
(``pm_aggregation.requirements``, which the sweep's batch path runs too), so it equals a full
recompute (tests/trading/test_pretrade.py). The PM buying power's bracket search probes on the
same arrays: each probe is the aggregation alone.

What this path does not cover goes to ``margin.pretrade``'s valuation of both books, as before:
Reg T and cash accounts (their strategy-based requirement pairs positions, so it is not
additive per contract: the calculator values the book after the orders, some 10 ms), books the
batch path leaves to the calculator (LP positions, perpetuals, tokens, futures options, class
groups of mixed product classes, house settings beyond the snapshot components), empty books,
and orders for contracts without a stored price.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from accounts.models import Account

from .book import Holding, MissingMarketData, build_portfolio, vol_values
from .engine.batch import BATCH_HOUSE, _covered_contracts
from .engine.errors import EngineInputError
from .engine.pm_aggregation import (
    ContractVectors,
    HeldArrays,
    HouseRequest,
    contract_vectors,
)
from .engine.portfolio_margin import PMRun
from .engine.valuation import value_positions
from .market_data import exchange_date, latest_prices, newest_per_instrument, outstanding_rejections
from .models import ImpliedVolatility
from .valuing import BATCH_INSTRUMENT_KINDS, PM_ONLY

#: accounts and contracts kept per process (least recently used dropped first)
MAX_ACCOUNTS, MAX_CONTRACTS = 512, 4096


class _Lru:
    def __init__(self, size: int) -> None:
        self.size, self.rows = size, OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self.lock:
            found = self.rows.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self.rows.move_to_end(key)
            return found

    def put(self, key, value) -> None:
        with self.lock:
            self.rows[key] = value
            self.rows.move_to_end(key)
            while len(self.rows) > self.size:
                self.rows.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.rows.clear()
            self.hits = self.misses = 0


ACCOUNTS = _Lru(MAX_ACCOUNTS)
CONTRACTS = _Lru(MAX_CONTRACTS)
#: an account whose book this path does not cover, kept under its key like a book
NOT_COVERED = object()


def clear() -> None:
    ACCOUNTS.clear()
    CONTRACTS.clear()


@dataclass
class HeldBook:
    """One account's cached arrays (module docstring) and what the check reads beside them."""

    market: Any  # margin.pretrade._Market as loaded: holdings, cash, prices, vols, params...
    arrays: HeldArrays
    contract_of: dict[int, int]  # instrument id -> index in arrays.vectors
    marks: dict[int, Decimal]  # instrument id -> current mark per unit
    before: Any  # Figures of the book as it is
    parameters: str = ""  # the parameter set's fingerprint (a contract's vectors rest on it)


@dataclass
class ContractVector:
    vectors: ContractVectors  # one contract
    mark: Decimal


def _mark(value: float) -> Decimal | None:
    return Decimal(str(round(float(value), 8))) if np.isfinite(value) else None


def _vectors(market, holdings: list[Holding]):
    """The contracts of ``holdings`` valued once on every grid (None: not the batch's)."""
    stand_ins = [Holding(0, h.instrument, Decimal(1), Decimal(0)) for h in holdings]
    try:
        universe = build_portfolio(stand_ins, valuation_date=market.today, prices=market.prices,
                                   vols=market.vols, rate=market.rate, params=market.params,
                                   valuation_time=market.now, methods=PM_ONLY)
        if set(universe.house or {}) - BATCH_HOUSE or not _covered_contracts(universe).all():
            return None
        valued = value_positions(universe, market.params, need_model=True, greeks=False)
        run = PMRun(universe, market.params, valued)
    except (MissingMarketData, EngineInputError):
        return None
    by_symbol = {p.id: k for k, p in enumerate(universe.positions)}
    return (contract_vectors(universe, market.params, valued, run), by_symbol,
            HouseRequest.of(universe.house, market.params), valued.marks)


def _covered(account: Account, holdings: list[Holding], prices: dict) -> bool:
    return (account.margin_type == Account.MarginType.PORTFOLIO_MARGIN and bool(holdings)
            and all(h.instrument.kind in BATCH_INSTRUMENT_KINDS for h in holdings)
            and all((h.instrument.underlying_id if h.instrument.is_option
                     else h.instrument.pk) in prices for h in holdings))


def _build(account: Account) -> HeldBook | object:
    from .pretrade import _Market

    market = _Market.load(account, ())
    if not _covered(account, market.holdings, market.prices):
        return NOT_COVERED
    found = _vectors(market, market.holdings)
    if found is None:
        return NOT_COVERED
    vectors, by_symbol, request, marks = found
    contract_of = {h.instrument.pk: by_symbol[h.instrument.symbol] for h in market.holdings}
    quantity = np.zeros(len(vectors.symbols))
    for h in market.holdings:
        quantity[contract_of[h.instrument.pk]] = float(h.quantity)
    arrays = HeldArrays.build(vectors, quantity, request)
    book = HeldBook(market, arrays, contract_of,
                    {pk: _mark(marks[k]) for pk, k in contract_of.items()}, None)
    book.parameters = hashlib.sha256(repr(market.params).encode()).hexdigest()
    book.before = _figures(book, arrays.quantity, arrays.grids, arrays.row_names,
                           market.cash, arrays)
    return book


def held_book(account: Account, version: tuple) -> HeldBook | None:
    key = (account.pk, account.firm_id, account.margin_type, version, exchange_date())
    found = ACCOUNTS.get(key)
    if found is None:
        found = _build(account)
        ACCOUNTS.put(key, found)
    return None if found is NOT_COVERED else found


def _contract(book: HeldBook, instrument) -> ContractVector | None:
    """An ordered contract the account does not hold, valued alone on the account's grids."""
    market = book.market
    priced = instrument.underlying_id if instrument.is_option else instrument.pk
    ids = {instrument.pk, priced}
    if outstanding_rejections(ids):
        return None  # the old path says which round was rejected
    prices = latest_prices(ids)
    vol_rows = newest_per_instrument(ImpliedVolatility.objects, [instrument.pk])
    if priced not in prices:
        return None
    key = (instrument.pk, market.today, market.rate, book.parameters,
           tuple(sorted((i, row.pk) for i, row in prices.items())),
           tuple(sorted((i, row.pk) for i, row in vol_rows.items())))
    found = CONTRACTS.get(key)
    if found is None:
        alone = type(market)(**{**market.__dict__, "prices": prices,
                                "vols": vol_values(vol_rows)})
        valued = _vectors(alone, [Holding(0, instrument, Decimal(1), Decimal(0))])
        mark = _mark(valued[3][0]) if valued is not None else None
        found = ContractVector(valued[0], mark) if valued is not None and mark is not None \
            else NOT_COVERED
        CONTRACTS.put(key, found)
    return None if found is NOT_COVERED else found


def _figures(book: HeldBook, quantity, grids, names, cash: Decimal, arrays: HeldArrays):
    found, nlv = arrays.figures(quantity, grids, names)
    return _result_figures(book, found, 0, nlv, cash)


def _result_figures(book: HeldBook, found, i: int, nlv: float, cash: Decimal):
    """Entry ``i`` of the aggregation's requirements as the check's figures, rounded by the
    one ``snapshot_figures`` (as ``margin.valuing._pm_result`` feeds it)."""
    result = {"net_liquidation_value": nlv, "portfolio_margin": {
        "requirement": float(found.requirement[i]),
        "regulatory_requirement": float(found.regulatory[i]),
        "house_requirement": float(found.house_requirement[i]),
        "house_components": {n: float(v[i]) for n, v in found.house.items()},
        "minimum_charge": float(found.minimum_charge[i])},
        "reg_t": None, "collateral": None}
    return book.market._figures(cash, result)


def fast_books(account: Account, orders: Sequence, standing, use_current_margin: bool):
    """The check's books on the cached arrays (``margin.pretrade._Books``), or None where this
    path does not cover them (module docstring)."""
    from .pretrade import Order, _Books, _premium

    if (standing.version is None
            or account.margin_type != Account.MarginType.PORTFOLIO_MARGIN
            or any(o.instrument.kind not in BATCH_INSTRUMENT_KINDS for o in orders)):
        return None
    book = held_book(account, (standing.version, standing.marked_at))
    if book is None:
        return None
    arrays, cash = book.arrays, book.market.cash
    extra = [o.instrument for o in orders if o.instrument.pk not in book.contract_of]
    contract_of = book.contract_of
    marks_of = book.marks
    if extra:
        added = {}
        for instrument in {i.pk: i for i in extra}.values():
            found = _contract(book, instrument)
            if found is None:
                return None
            added[instrument.pk] = found
        held_class = dict(zip(arrays.vectors.class_group, arrays.vectors.product_class,
                              strict=True))
        if any(held_class.get(c.vectors.class_group[0], c.vectors.product_class[0])
               != c.vectors.product_class[0] for c in added.values()):
            return None  # a class group of two product classes: the calculator's
        arrays = arrays.with_contracts([c.vectors for c in added.values()])
        n = len(book.arrays.vectors.symbols)
        contract_of = {**contract_of, **{pk: n + k for k, pk in enumerate(added)}}
        marks_of = {**marks_of, **{pk: c.mark for pk, c in added.items()}}
    marks = [o.price if o.price is not None else marks_of[o.instrument.pk] for o in orders]
    if any(m is None for m in marks):
        return None
    change: dict[int, float] = {}
    cash_after = cash
    for o, price in zip(orders, marks, strict=True):
        k = contract_of[o.instrument.pk]
        change[k] = change.get(k, 0.0) + float(o.signed)
        cash_after += _premium(o, price) - o.fees
    moved = arrays.moved(change)
    after = _figures(book, *moved, cash_after, arrays)
    before = standing.figures(cash) if use_current_margin else None
    if before is None:
        before = book.before
    bases = {"before": (arrays.quantity, cash, {}), "after": (moved[0], cash_after, change)}

    def largest(when: str, order: Order, price: Decimal) -> Decimal:
        from .pretrade import largest_carried

        _, base_cash, base_change = bases[when]
        k = contract_of[order.instrument.pk]
        sign = 1.0 if order.side == "buy" else -1.0

        def passing(quantities: list[Decimal]) -> list[bool]:
            found, nlv = arrays.probes(base_change, k, sign * np.array(
                [float(q) for q in quantities]))
            out = []
            for i, q in enumerate(quantities):
                probe = Order(order.instrument, order.side, q, price)
                figures = _result_figures(book, found, i, float(nlv[i]),
                                          base_cash + _premium(probe, price))
                out.append(figures.excess_liquidity >= 0)
            return out

        return largest_carried(passing)

    return _Books(book.market.holdings, cash, cash_after, marks, before, after,
                  book.market.today, largest)
