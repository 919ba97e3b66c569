"""The pre-trade check: what proposed orders would do to an account's margin, and whether the
firm takes them (issue 13; MARGIN_CALLS.md sections 1, 3, 5 and 8). Writes nothing.

The book before and after the orders is valued as the sweep values it, so the two compare like
for like and "after" equals the sweep's recompute of the book once the orders are booked:

- a portfolio-margin book of contracts the sweep's batch path covers is checked on the
  account's cached risk arrays (``margin.pretrade_arrays``: each class group's P&L on every
  grid of the requirement, kept per process under the account's margin version, which every
  input of its margin raises): "after" is those arrays plus quantity x the ordered contracts'
  vectors, aggregated by the engine's one aggregation (``margin.engine.pm_aggregation``, the
  batch path's too); nothing held is priced again, and a check reads one row (the current
  margin with its version, whether a restriction is active, the call policy, a past-due PM
  deficiency);
- any other book (Reg T and cash accounts: a strategy-based requirement pairs positions, so it
  is not additive per contract) is valued whole (``margin.valuing``: positions, latest prices
  and vols, the rate, cash, the firm's parameters; the calculator with the methods the
  figures rest on).

Figures (before and after; money in the account's currency):

- ``equity`` = cash + net liquidation value (``margin.equity``); after the orders, cash moves
  by ``-signed quantity x price x multiplier - fees`` (a future's premium is nil: its gains and
  losses settle daily) and each position by its signed quantity;
- ``requirement`` = the requirement of the account's margin type (``margin.figures``: the
  portfolio-margin requirement with the firm's house components, Reg T maintenance, a cash
  account's full payment);
- ``excess_liquidity`` = equity - requirement (negative: a deficit);
- ``buying_power`` per instrument ordered: Reg T and cash accounts, ``max(excess, 0) / rate``
  with ``rate`` the initial-margin rate of what is bought (50 % for stock and ETFs in a Reg T
  account, Reg T 220.12; 100 % otherwise and in a cash account); portfolio margin, the market
  value of the largest whole order of that instrument, on the order's side, the excess can
  carry: ``max q`` with ``excess(book + q) >= 0``, found on the engine by powers of two then
  a bracket search over q (``quantity`` gives q);
- ``intraday_margin_level`` (after) = equity - requirement after the orders
  (``intraday_margin_level``: one function, the intraday standard's definition may replace it).

Decision: ``accept``, or ``reject`` with every reason (code, message):

- ``restricted``: an active restriction forbids the order
  (``margin.calls.restrictions.forbidding``: closing-only, funds on hand, the intraday block,
  any kind added later);
- ``pm_deficiency_past_due``: a portfolio-margin account with a PM deficiency past its due
  date, an order that increases the requirement, and the call policy's switch
  ``reject_increasing_orders_past_due`` on (rule book 3, [R]);
- ``deficit``: the orders create a deficit or increase one (excess after < 0 and below the
  excess before);
- ``health_factor``: the crypto health factor after the orders is below the firm's collateral
  call band (call policy ``health_factor_call``) and lower than before.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection
from django.utils import timezone

from accounts.models import Account, Instrument
from accounts.services import cash_balance

from .book import (
    Holding,
    MissingMarketData,
    build_portfolio,
    current_rate_row,
    load_positions,
    rate_value,
    vol_values,
)
from .calls.models import CallPolicy, MarginCall, Restriction
from .calls.policy import default_rows, typed
from .calls.restrictions import OrderEffect, forbidding
from .engine.batch import ChunkBook, value_chunk
from .engine.errors import EngineInputError
from .engine.valuation import value_positions
from .figures import empty_result, money, parameters_for, ratio, snapshot_figures
from .market_data import exchange_date, latest_prices, newest_per_instrument, outstanding_rejections
from .models import AccountMargin, ImpliedVolatility
from .valuing import PM_ONLY, _pm_result, batch_covers, requirement_methods

ACCEPT, REJECT = "accept", "reject"
#: Reg T 220.12: the initial margin of a margin equity security bought
REG_T_STOCK_RATE = Decimal("0.5")
MARGINABLE_KINDS = (Instrument.Kind.STOCK, Instrument.Kind.ETF)
#: powers of two, and probes per round of the bracket search, of the PM buying power
MAX_DOUBLINGS, PROBES = 24, 15
CENT = Decimal("0.01")


class Unvalued(Exception):
    """The book cannot be valued (a missing price, a rejected oracle round, an engine refusal):
    the check cannot answer."""


@dataclass(frozen=True)
class Order:
    instrument: Instrument
    side: str  # "buy" or "sell"
    quantity: Decimal  # positive
    price: Decimal | None = None  # per unit before the multiplier; None: the current mark
    fees: Decimal = Decimal(0)

    @property
    def signed(self) -> Decimal:
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass
class Figures:
    equity: Decimal
    requirement: Decimal
    excess_liquidity: Decimal
    health_factor: Decimal | None
    cash: Decimal


@dataclass
class Reason:
    code: str
    message: str


@dataclass
class PreTrade:
    account: Account
    before: Figures
    after: Figures
    intraday_margin_level: Decimal
    buying_power: list[dict[str, Any]]
    reasons: list[Reason] = field(default_factory=list)
    computed_at: datetime | None = None

    @property
    def decision(self) -> str:
        return REJECT if self.reasons else ACCEPT

    def as_dict(self) -> dict[str, Any]:
        def figures(f: Figures) -> dict[str, Any]:
            return {"equity": f.equity, "requirement": f.requirement,
                    "excess_liquidity": f.excess_liquidity, "health_factor": f.health_factor,
                    "cash": f.cash}
        return {"account": self.account.number, "margin_type": self.account.margin_type,
                "decision": self.decision, "before": figures(self.before),
                "after": figures(self.after),
                "intraday_margin_level": self.intraday_margin_level,
                "buying_power": self.buying_power,
                "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
                "computed_at": self.computed_at}

    def as_record(self) -> dict[str, Any]:
        """What an execution keeps of the check it passed (JSON: money as text)."""
        def text(value):
            return None if value is None else str(value)
        return {"decision": self.decision,
                "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
                "requirement": [text(self.before.requirement), text(self.after.requirement)],
                "equity": [text(self.before.equity), text(self.after.equity)],
                "excess_liquidity": [text(self.before.excess_liquidity),
                                     text(self.after.excess_liquidity)]}


def intraday_margin_level(figures: Figures) -> Decimal:
    """The intraday margin level after a transaction (rule book 5, maintenance basis): what the
    customer could withdraw while still meeting maintenance margin; negative, the deposit
    needed. For a Reg T account the requirement here is the 4210(c) maintenance one, so this is
    ``margin.intraday.levels``' own figure for the same book (tested equal); portfolio-margin
    and cash accounts are outside the standard (rule book 5, scope) and show their excess."""
    return figures.excess_liquidity


# Valuing -------------------------------------------------------------------------------------

@dataclass
class _Market:
    """What valuing the account and the ordered instruments reads, once per check."""

    account: Account
    holdings: list[Holding]
    cash: Decimal
    prices: dict
    vols: dict[int, float]
    params: Any
    rate: float
    today: Any
    now: datetime

    @classmethod
    def load(cls, account: Account, orders: Sequence[Order]) -> _Market:
        holdings = load_positions([account]).get(account.pk, [])
        instruments = [h.instrument for h in holdings] + [o.instrument for o in orders]
        ids = {i for inst in instruments for i in (inst.pk, inst.underlying_id, inst.token0_id,
                                                   inst.token1_id) if i}
        rejected = outstanding_rejections(ids)
        if rejected:
            raise Unvalued("oracle round rejected for " + ", ".join(
                sorted(r.instrument.symbol for r in rejected.values())))
        prices = latest_prices(ids)
        vols = vol_values(newest_per_instrument(ImpliedVolatility.objects, ids))
        today = exchange_date()
        params, _ = parameters_for(account.firm)
        return cls(account, holdings, cash_balance(account), prices, vols, params,
                   rate_value(current_rate_row(today)), today, timezone.now())

    def marks(self, orders: Sequence[Order]) -> list[Decimal]:
        """Each order's price: its own, else the instrument's current mark (its latest price,
        or, for an option between quotes, its model value at the stored vol, as the sweep
        values it: ``margin.book.current_mark``)."""
        unpriced = {o.instrument.pk: o.instrument for o in orders if o.price is None}
        if not unpriced:
            return [o.price for o in orders]
        stand_ins = [Holding(0, instrument, Decimal(1), Decimal(0))
                     for instrument in unpriced.values()]
        try:
            portfolio = build_portfolio(stand_ins, valuation_date=self.today,
                                        prices=self.prices, vols=self.vols, rate=self.rate,
                                        params=self.params, valuation_time=self.now,
                                        methods=())
            valued = value_positions(portfolio, self.params, need_model=True, greeks=False)
        except (MissingMarketData, EngineInputError) as exc:
            raise Unvalued(f"no price for an order ({exc}): give the order's price") from None
        by_symbol = {p.id: float(valued.marks[k]) for k, p in enumerate(portfolio.positions)}
        out = []
        for order in orders:
            if order.price is not None:
                out.append(order.price)
                continue
            value = by_symbol.get(order.instrument.symbol)
            if value is None or not math.isfinite(value):
                raise Unvalued(f"no price for {order.instrument.symbol}: give the order's price")
            out.append(Decimal(str(round(value, 8))))
        return out

    def with_order_marks(self, orders: Sequence[Order]) -> dict:
        """Prices with each ordered contract that has none marked at its order price (a new
        listed contract has no observation yet)."""
        prices = dict(self.prices)
        for order in orders:
            if order.instrument.pk not in prices and order.price is not None:
                prices[order.instrument.pk] = _Observed(order.price, self.now)
        return prices

    def batchable(self, books: Sequence[list[Holding]], prices: dict) -> bool:
        """Portfolio-margin books of contracts the engine's batch path values (as the sweep
        values them: ``margin.valuing``), every underlying priced."""
        if self.account.margin_type != Account.MarginType.PORTFOLIO_MARGIN:
            return False
        held = [h for book in books for h in book]
        return bool(held) and all(batch_covers(h.instrument, prices) for h in held)

    def value_many(self, books: Sequence[tuple[list[Holding], Decimal]],
                   prices: dict) -> list[Figures]:
        """Several books of the account at once: the batch path when it covers them (every
        contract of all the books valued once, as the sweep's chunk does), the calculator
        book by book otherwise. Equal figures either way (tests/margin/test_batch_sweep.py)."""
        if not self.batchable([b for b, _ in books], prices) \
                or any(not b for b, _ in books):
            return [self.value(b, cash, prices) for b, cash in books]
        contracts = {h.instrument.pk: h.instrument for b, _ in books for h in b}
        stand_ins = [Holding(0, instrument, Decimal(1), Decimal(0))
                     for instrument in contracts.values()]
        try:
            universe = build_portfolio(stand_ins, valuation_date=self.today, prices=prices,
                                       vols=self.vols, rate=self.rate, params=self.params,
                                       valuation_time=self.now, methods=PM_ONLY)
        except (MissingMarketData, EngineInputError):
            return [self.value(b, cash, prices) for b, cash in books]
        by_symbol = {p.id: k for k, p in enumerate(universe.positions)}
        rows = [(k, by_symbol[h.instrument.symbol], float(h.quantity))
                for k, (b, _) in enumerate(books) for h in b]
        account, contract, quantity = (np.array(column) for column in zip(*rows, strict=True))
        figures = value_chunk(ChunkBook(universe, len(books), account.astype(np.int64),
                                        contract.astype(np.int64),
                                        quantity.astype(np.float64)), self.params)
        out = []
        for k, (book, cash) in enumerate(books):
            if not figures.valued[k]:
                out.append(self.value(book, cash, prices))
                continue
            out.append(self._figures(cash, _pm_result(figures, k, self.today)))
        return out

    def _figures(self, cash: Decimal, result: dict) -> Figures:
        figures = snapshot_figures(margin_type=self.account.margin_type, cash=cash,
                                   result=result)
        return Figures(figures["equity"], figures["requirement"], figures["excess"],
                       figures["health_factor"], money(cash))

    def value(self, holdings: list[Holding], cash: Decimal, prices: dict) -> Figures:
        from .calculator.compute import calculate
        from .calculator.parse import CalculatorError

        methods = requirement_methods(self.account, holdings)
        if self.account.margin_type != Account.MarginType.PORTFOLIO_MARGIN:
            # the figures rest on Reg T (and collateral); the PM block the sweep adds for an
            # upgrade's sake is not one of them, and is half the calculator's time
            methods = tuple(m for m in methods if m != "portfolio_margin")
        try:
            if holdings:
                portfolio = build_portfolio(holdings, valuation_date=self.today, prices=prices,
                                            vols=self.vols, rate=self.rate, params=self.params,
                                            valuation_time=self.now, methods=methods)
                result = calculate(portfolio, self.params)
            else:
                result = empty_result(self.today)
        except MissingMarketData as exc:
            raise Unvalued(str(exc)) from None
        except (EngineInputError, CalculatorError) as exc:
            raise Unvalued(str(exc)) from None
        return self._figures(cash, result)


@dataclass(frozen=True)
class _Observed:
    """An order's price standing in for a price observation (``build_portfolio`` reads these)."""

    price: Decimal
    observed_at: datetime
    pk: int | None = None


def trade_cash(instrument: Instrument, signed: Decimal, price: Decimal) -> Decimal:
    """The cash a trade moves, signed as the ledger (a purchase is a debit), to the cent; a
    future's premium is nil (its gains and losses settle daily). Booking posts this amount."""
    if instrument.kind == Instrument.Kind.FUTURE:
        return Decimal("0.00")
    return (-(signed * price * Decimal(instrument.multiplier))).quantize(CENT)


def _premium(order: Order, price: Decimal) -> Decimal:
    return trade_cash(order.instrument, order.signed, price)


def apply_orders(holdings: list[Holding], cash: Decimal, orders: Sequence[Order],
                 marks: Sequence[Decimal]) -> tuple[list[Holding], Decimal]:
    """The book after the orders: quantities and cost bases moved, cash by premium and fees."""
    by_instrument = {h.instrument.pk: h for h in holdings}
    for order, price in zip(orders, marks, strict=True):
        held = by_instrument.get(order.instrument.pk)
        quantity = (held.quantity if held else Decimal(0)) + order.signed
        basis = (held.cost_basis if held else Decimal(0)) - _premium(order, price)
        by_instrument[order.instrument.pk] = Holding(holdings[0].account_id if holdings else 0,
                                                     order.instrument, quantity, basis)
        cash += _premium(order, price) - order.fees
    return [h for h in by_instrument.values() if h.quantity != 0], cash


def _effect(before: list[Holding], orders: Sequence[Order], cash_before: Decimal,
            cash_after: Decimal, requirement_before: Decimal,
            requirement_after: Decimal) -> OrderEffect:
    held = {h.instrument.pk: h.quantity for h in before}
    opens = increases_short = False
    for order in orders:
        was = held.get(order.instrument.pk, Decimal(0))
        now = was + order.signed
        held[order.instrument.pk] = now
        opens |= abs(now) > abs(was) or (was != 0 and now != 0 and (was > 0) != (now > 0))
        increases_short |= now < 0 and now < was
    return OrderEffect(opens=opens, increases_short=increases_short,
                       increases_debit=cash_after < 0 and cash_after < cash_before,
                       increases_requirement=requirement_after > requirement_before)


# Buying power --------------------------------------------------------------------------------

def _rate(account: Account, instrument: Instrument) -> Decimal:
    if account.margin_type == Account.MarginType.REG_T and instrument.kind in MARGINABLE_KINDS:
        return REG_T_STOCK_RATE
    return Decimal(1)


def _largest_order(market: _Market, holdings: list[Holding], cash: Decimal, prices: dict,
                   order: Order, price: Decimal) -> Decimal:
    """The largest whole quantity of the order's instrument the book carries, each round's
    candidates valued together (one batch per round: ``largest_carried``)."""
    def passing(quantities: list[Decimal]) -> list[bool]:
        books = []
        for quantity in quantities:
            probe = Order(order.instrument, order.side, quantity, price)
            books.append(apply_orders(holdings, cash, [probe], [price]))
        try:
            return [f.excess_liquidity >= 0 for f in market.value_many(books, prices)]
        except Unvalued:
            return [False] * len(quantities)

    return largest_carried(passing)


def largest_carried(passing) -> Decimal:
    """The largest whole quantity of an order, on its side, whose purchase or sale keeps the
    excess non-negative (portfolio margin: the engine decides): ``passing(quantities)`` says
    which candidates pass; powers of two, then ``PROBES`` evenly spaced quantities of the
    bracket per round, until it is one contract wide."""
    powers = [Decimal(2) ** k for k in range(MAX_DOUBLINGS)]
    carried = passing(powers)
    if not carried[0]:
        return Decimal(0)
    first_fail = next((k for k, ok in enumerate(carried) if not ok), None)
    if first_fail is None:
        return powers[-1]
    low, high = powers[first_fail - 1], powers[first_fail]
    while high - low > 1:
        step = max((high - low) // (PROBES + 1), Decimal(1))
        probes = [q for q in (low + step * (k + 1) for k in range(PROBES)) if q < high]
        if not probes:
            break
        results = passing(probes)
        passed = [q for q, ok in zip(probes, results, strict=True) if ok]
        failed = [q for q, ok in zip(probes, results, strict=True) if not ok]
        low = max([low, *passed])
        high = min([high, *[q for q in failed if q > low]])
    return low


def _buying_power(account: Account, orders: Sequence[Order], books: _Books
                  ) -> list[dict[str, Any]]:
    rows = []
    seen: set[int] = set()
    figures = {"before": books.before, "after": books.after}
    for order, price in zip(orders, books.marks, strict=True):
        if order.instrument.pk in seen:
            continue
        seen.add(order.instrument.pk)
        row: dict[str, Any] = {"instrument": order.instrument.symbol, "side": order.side}
        unit = price * Decimal(order.instrument.multiplier)
        for when in ("before", "after"):
            if account.margin_type == Account.MarginType.PORTFOLIO_MARGIN:
                quantity = books.largest_order(when, order, price)
                row[when] = money(quantity * unit)
                row[f"quantity_{when}"] = quantity
            else:
                power = max(figures[when].excess_liquidity, Decimal(0)) / _rate(
                    account, order.instrument)
                row[when] = money(power)
                row[f"quantity_{when}"] = (power / unit).to_integral_value(rounding="ROUND_FLOOR") \
                    if unit > 0 else None
        rows.append(row)
    return rows


# The check -----------------------------------------------------------------------------------

def _past_due_pm_deficiency(account: Account, today) -> MarginCall | None:
    return MarginCall.objects.filter(
        account=account, kind=MarginCall.Kind.PM_DEFICIENCY, status__in=MarginCall.OPEN_STATES,
        due_date__lt=today).order_by("due_date").first()


def _policy_rows(firm_id: int) -> dict[str, dict[str, str]]:
    """The firm's active call-policy rows, read only (the platform default where the firm has
    adopted none yet: the check writes nothing, not even the adoption)."""
    active = CallPolicy.objects.filter(firm_id=firm_id, status=CallPolicy.Status.ACTIVE).first()
    return {**default_rows(), **(active.rows if active else {})}


def _value(rows: dict[str, dict[str, str]], name: str):
    return typed(name, rows[name]["value"])


def _standing_sql(mark) -> str:
    """The standing's one statement (``mark(i)``: the i-th parameter's placeholder). Every
    subquery names the account's firm (the tenant scope's filter)."""
    states = ", ".join(mark(7 + k) for k in range(len(MarginCall.OPEN_STATES)))
    n = 7 + len(MarginCall.OPEN_STATES)
    return (
        f"SELECT m.dirty_version, m.marked_at, m.computed_version, m.equity, m.requirement,"
        f" m.excess, m.health_factor, m.flag, m.computed_at,"
        f" EXISTS (SELECT 1 FROM {Restriction._meta.db_table} r WHERE r.firm_id = {mark(1)}"
        f" AND r.account_id = m.account_id AND r.state = {mark(2)}),"
        f" (SELECT p.rows FROM {CallPolicy._meta.db_table} p WHERE p.firm_id = {mark(3)}"
        f" AND p.status = {mark(4)} ORDER BY p.version DESC LIMIT 1),"
        f" (SELECT c.id FROM {MarginCall._meta.db_table} c WHERE c.firm_id = {mark(5)}"
        f" AND c.account_id = m.account_id AND c.kind = {mark(6)} AND c.status IN ({states})"
        f" AND c.due_date < {mark(n)}::date ORDER BY c.due_date, c.id LIMIT 1)"
        f" FROM {AccountMargin._meta.db_table} m"
        f" WHERE m.firm_id = {mark(n + 1)} AND m.account_id = {mark(n + 2)}")


#: database connections that hold the standing's prepared statement (PostgreSQL)
_PREPARED: weakref.WeakSet = weakref.WeakSet()
_STATEMENT = "pretrade_standing"


def _standing_row(params: list) -> tuple | None:
    """The standing's row. Written out rather than composed with the ORM (composing costs
    more than the check's arithmetic), and on PostgreSQL prepared once per connection
    (planning it took longer than running it)."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(_standing_sql(lambda i: "%s").replace("::date", ""), params)
            return cursor.fetchone()
        raw = connection.connection
        if raw not in _PREPARED:
            # a session's prepared statement outlives a rolled-back transaction
            cursor.execute(f"PREPARE {_STATEMENT} AS {_standing_sql(lambda i: f'${i}')}")
            _PREPARED.add(raw)
        cursor.execute(f"EXECUTE {_STATEMENT}({', '.join(['%s'] * len(params))})", params)
        return cursor.fetchone()


@dataclass
class _Standing:
    """What the check reads of the account beside its book, in one query: the current margin
    row (its version keys the cached arrays; clean, its figures are "before"), whether a
    restriction is active (they are read only then), the firm's call policy and the id of the
    oldest past-due PM deficiency call."""

    version: int | None
    #: when the last mark raised the version (with it, the key of the cached arrays: on SQLite
    #: a version drawn in a transaction that rolled back is drawn again)
    marked_at: Any
    current: tuple | None  # computed_version, equity, requirement, excess, health, flag, at
    restricted: bool
    policy: dict[str, dict[str, str]]
    past_due_call: int | None

    @classmethod
    def load(cls, account: Account, today) -> _Standing:
        firm = account.firm_id
        row = _standing_row([firm, Restriction.State.ACTIVE, firm, CallPolicy.Status.ACTIVE,
                             firm, MarginCall.Kind.PM_DEFICIENCY, *MarginCall.OPEN_STATES,
                             today.isoformat(), firm, account.pk])
        if row is None:
            call = _past_due_pm_deficiency(account, today)
            return cls(None, None, None, True, _policy_rows(firm), call.pk if call else None)
        policy = json.loads(row[10]) if isinstance(row[10], str) else row[10]
        return cls(row[0], row[1], (row[2], money(row[3]), money(row[4]), money(row[5]),
                                    ratio(row[6]), row[7], row[8]),
                   bool(row[9]), {**default_rows(), **(policy or {})}, row[11])

    def figures(self, cash: Decimal) -> Figures | None:
        """The account's current margin as the sweep last wrote it, when nothing has moved
        since (clean, valued, not flagged): the figures before the orders."""
        if self.current is None:
            return None
        computed_version, equity, requirement, excess, health, flag, at = self.current
        if self.version > computed_version or equity is None or flag or at is None:
            return None
        return Figures(equity, requirement, excess, health, money(cash))


@dataclass
class _Books:
    """The book before and after the orders, their figures, and what the buying power
    searches on (either path)."""

    holdings: list[Holding]
    cash: Decimal
    cash_after: Decimal
    marks: list[Decimal]
    before: Figures
    after: Figures
    today: Any
    largest_order: Any  # (when, order, price) -> the largest whole quantity (PM)


def check(*, account: Account, orders: Sequence[Order], buying_power: bool = True,
          use_current_margin: bool = True, use_cache: bool = True) -> PreTrade:
    """The check of ``orders`` on ``account`` (module docstring). Writes nothing; raises
    ``Unvalued`` when the book or an ordered contract cannot be valued.

    A portfolio-margin book the engine's batch path covers is checked on the account's cached
    risk arrays (``margin.pretrade_arrays``: its class-group arrays on every grid of the
    requirement, kept per process under the account's margin version, plus quantity x the
    ordered contracts' vectors, aggregated by ``margin.engine.pm_aggregation``); other books
    (or ``use_cache=False``) are valued as the sweep values them. "Before" is the account's
    current margin row when it is clean (the sweep valued this very book at these very
    prices: ``margin.dirty`` marks it on any change), else (or ``use_current_margin=False``)
    the book before the orders valued likewise."""
    from .pretrade_arrays import fast_books

    standing = _Standing.load(account, exchange_date())
    books = fast_books(account, orders, standing, use_current_margin) if use_cache else None
    if books is None:
        books = _valued_books(account, orders, standing if use_current_margin else None)
    before, after = books.before, books.after
    reasons: list[Reason] = []

    effect = _effect(books.holdings, orders, books.cash, books.cash_after, before.requirement,
                     after.requirement)
    for restriction in forbidding(account, effect) if standing.restricted else ():
        reasons.append(Reason("restricted", f"the account is under a "
                                            f"{restriction.get_kind_display().lower()} "
                                            f"restriction since {restriction.starts_on} "
                                            f"({restriction.cause}): this order "
                                            f"{effect.describe()}"))
    policy: dict[str, dict[str, str]] | None = None
    if (account.margin_type == Account.MarginType.PORTFOLIO_MARGIN
            and effect.increases_requirement):
        policy = standing.policy
        call = MarginCall.objects.get(pk=standing.past_due_call) \
            if standing.past_due_call and _value(policy, "reject_increasing_orders_past_due") \
            else None
        if call is not None:
            reasons.append(Reason(
                "pm_deficiency_past_due",
                f"the PM deficiency call #{call.pk} of {call.amount_due} was due "
                f"{call.due_date}; an order increasing the requirement "
                f"({before.requirement} -> {after.requirement}) is refused "
                f"({policy['reject_increasing_orders_past_due']['citation']})"))
    if after.excess_liquidity < 0 and after.excess_liquidity < before.excess_liquidity:
        verb = "increase the deficit" if before.excess_liquidity < 0 else "create a deficit"
        reasons.append(Reason("deficit", f"the order would {verb}: excess liquidity "
                                         f"{before.excess_liquidity} -> "
                                         f"{after.excess_liquidity}"))
    if after.health_factor is not None:
        policy = standing.policy
        band = _value(policy, "health_factor_call")
        if after.health_factor < band and (before.health_factor is None
                                           or after.health_factor < before.health_factor):
            reasons.append(Reason("health_factor", f"the health factor would fall to "
                                                   f"{after.health_factor}, below the firm's "
                                                   f"collateral call band {band}"))
    return PreTrade(account=account, before=before, after=after,
                    intraday_margin_level=intraday_margin_level(after),
                    buying_power=_buying_power(account, orders, books) if buying_power else [],
                    reasons=reasons, computed_at=timezone.now())


def _valued_books(account: Account, orders: Sequence[Order], standing: _Standing | None
                  ) -> _Books:
    """Both books valued as the sweep values them (the batch path, else the calculator)."""
    market = _Market.load(account, orders)
    marks = market.marks(orders)
    prices = market.with_order_marks(orders)
    holdings_after, cash_after = apply_orders(market.holdings, market.cash, orders, marks)
    before = standing.figures(market.cash) if standing is not None else None
    if before is None:
        before, after = market.value_many([(market.holdings, market.cash),
                                           (holdings_after, cash_after)], prices)
    else:
        (after,) = market.value_many([(holdings_after, cash_after)], prices)
    books = {"before": (market.holdings, market.cash), "after": (holdings_after, cash_after)}

    def largest(when: str, order: Order, price: Decimal) -> Decimal:
        holdings, cash = books[when]
        return _largest_order(market, holdings, cash, prices, order, price)

    return _Books(market.holdings, market.cash, cash_after, marks, before, after, market.today,
                  largest)


__all__ = ["ACCEPT", "REJECT", "Order", "PreTrade", "Unvalued", "check", "intraday_margin_level"]
