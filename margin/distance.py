"""Distance to a call for one account: how far each underlying, and the whole market, can move
before the account falls into deficit, and its figures under preset stressed markets. Writes
nothing (DESIGN.md: "What-if, distance-to-call and the firm simulator run the engine without
writing").

The book is loaded and built as the pre-trade check builds it (``margin.pretrade._Market``:
positions, cash, latest prices and vols, the rate, the firm's parameters; ``margin.book``'s
one ``build_portfolio``), with the methods the account's requirement rests on
(``margin.valuing.requirement_methods``, less the portfolio-margin block a Reg T or cash
account's figures do not use, as the check values it). Each moved book is valued by the
calculator and turned into equity and requirement by the one ``margin.figures.snapshot_figures``
(the sweep's own rounding and margin-type rule), so move 0 gives the sweep's figures for the
same prices. The shock and the search are the engine's (``margin.engine.distance``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np
from django.utils import timezone

from accounts.models import Account

from .book import MissingMarketData, build_portfolio
from .calculator.compute import calculate
from .calculator.parse import CalculatorError
from .engine import distance as engine
from .engine.errors import EngineInputError
from .engine.valuation import value_positions
from .figures import money, snapshot_figures
from .market_data import exchange_date
from .models import AccountMargin
from .pretrade import Unvalued, _Market
from .pretrade_arrays import MAX_ACCOUNTS, _Lru
from .valuing import requirement_methods

#: answers kept per process under the account's margin version (below)
ANSWERS = _Lru(MAX_ACCOUNTS)


def remembered(account: Account, question: tuple, compute):
    """``compute()``'s answer for ``account``, kept per process under the account's margin
    version (``AccountMargin.dirty_version`` and ``marked_at``: every position, ledger entry,
    price, vol, rate and parameter change that reaches the account raises it, ``margin.dirty``;
    the pre-trade check keys its arrays the same way, ``margin.pretrade_arrays``) and the
    valuation date, so a page read after any change values again and a reload does not."""
    version = AccountMargin.objects.filter(account=account).values_list(
        "dirty_version", "marked_at").first()
    if version is None:
        return compute()
    key = (question, account.pk, account.firm_id, account.margin_type, version, exchange_date())
    found = ANSWERS.get(key)
    if found is None:
        found = compute()
        ANSWERS.put(key, found)
    return found


@dataclass
class Direction:
    """One direction's answer for one underlying (or the market): the furthest move still
    covered, or None when no move out to ``limit`` is a deficit."""

    direction: int
    move: float | None
    limit: float
    curve: list[tuple[float, Decimal]]

    @property
    def found(self) -> bool:
        return self.move is not None


@dataclass
class Distance:
    """How far one class group (or, ``group`` None, the whole market) can move each way."""

    group: str | None
    symbols: list[str]
    down: Direction
    up: Direction

    @property
    def label(self) -> str:
        if self.group is None:
            return "The whole market"
        others = [s for s in self.symbols if s != self.group]
        return f"{self.group} ({', '.join(others)})" if others else self.group

    @property
    def nearest(self) -> Direction | None:
        found = [d for d in (self.down, self.up) if d.found]
        return min(found, key=lambda d: abs(d.move)) if found else None


@dataclass
class StressedMarket:
    move: float
    equity: Decimal
    requirement: Decimal
    excess: Decimal


@dataclass
class DistanceToCall:
    account: Account
    equity: Decimal
    requirement: Decimal
    excess: Decimal
    underlyings: list[Distance]
    market: Distance
    stressed: list[StressedMarket]
    limit: float
    basis: str  # the margin type whose requirement the excess is measured against
    computed_at: datetime = field(default_factory=timezone.now)

    @property
    def in_deficit(self) -> bool:
        return self.excess < 0


def book_figures(account: Account, basis: str):
    """The account's portfolio as the check builds it, its valuation today, and the figures
    of a (moved) portfolio against the requirement of margin type ``basis``."""
    market = _Market.load(account, ())
    if not market.holdings:
        return market, None, None, None
    methods = requirement_methods(account, market.holdings)
    if basis == Account.MarginType.PORTFOLIO_MARGIN:
        methods = tuple(dict.fromkeys([*methods, "portfolio_margin"]))
    else:
        methods = tuple(m for m in methods if m != "portfolio_margin")
    try:
        portfolio = build_portfolio(market.holdings, valuation_date=market.today,
                                    prices=market.prices, vols=market.vols, rate=market.rate,
                                    params=market.params, valuation_time=market.now,
                                    methods=methods)
        valued = value_positions(portfolio, market.params, need_model=True, greeks=False)
    except (MissingMarketData, EngineInputError) as exc:
        raise Unvalued(str(exc)) from None

    def figures(moved) -> tuple[float, float]:
        try:
            result = calculate(moved, market.params)
        except CalculatorError as exc:
            raise Unvalued(f"the book cannot be valued at a moved price: {exc}") from None
        found = snapshot_figures(margin_type=basis, cash=market.cash,
                                 result=result)
        return float(found["equity"]), float(found["requirement"])

    return market, portfolio, valued, figures


def _direction(crossing: engine.Crossing) -> Direction:
    return Direction(crossing.direction, crossing.move, crossing.limit,
                     [(m, money(e)) for m, e in crossing.curve])


def distance_to_call(account: Account, *, limit: float = engine.SEARCH_LIMIT,
                     presets: tuple[float, ...] = engine.PRESETS,
                     basis: str | None = None) -> DistanceToCall | None:
    """The account's distance to a call (module docstring); None for an empty book. Raises
    ``Unvalued`` when the book (or a moved book) cannot be valued. ``basis`` measures the
    excess against another margin type's requirement (a Reg T account's distance were it
    under portfolio margin); by default the account's own, which is what calls it."""
    basis = basis or account.margin_type
    return remembered(account, ("distance", limit, presets, basis),
                      lambda: _distance_to_call(account, limit, presets, basis))


def _distance_to_call(account: Account, limit: float, presets: tuple[float, ...], basis: str
                      ) -> DistanceToCall | None:
    market, portfolio, valued, figures = book_figures(account, basis)
    if portfolio is None:
        return None

    def search(groups):
        def excess(moves: np.ndarray) -> np.ndarray:
            return engine.excess_at(portfolio, valued, figures, moves, groups)
        return [_direction(engine.first_deficit(excess, d, limit=limit))
                for d in (engine.DOWN, engine.UP)]

    movable = engine.movable_groups(portfolio)
    symbols = {g: sorted(s for s, u in portfolio.underlyings.items() if u.class_group == g)
               for g in movable}
    underlyings = [Distance(g, symbols[g], *search([g])) for g in movable]
    if len(underlyings) == 1:
        # one underlying: the whole market's move is that underlying's
        only = underlyings[0]
        whole = Distance(None, only.symbols, only.down, only.up)
    else:
        whole = Distance(None, sorted(s for g in movable for s in symbols[g]), *search(None))
    equity, requirement = figures(portfolio)
    stressed = [StressedMarket(s.move, money(s.equity), money(s.requirement),
                               money(s.equity) - money(s.requirement))
                for s in engine.stressed(portfolio, valued, figures, presets)]
    return DistanceToCall(account, money(equity), money(requirement),
                          money(equity) - money(requirement), underlyings, whole, stressed,
                          limit, basis)


def excess_after_move(account: Account, move: float, groups: list[str] | None = None,
                      basis: str | None = None) -> Decimal:
    """The account's excess with ``groups`` (None: the whole market) moved by ``move``,
    revalued whole (what the search decides on; the tests recompute its answer with it)."""
    _, portfolio, valued, figures = book_figures(account, basis or account.margin_type)
    if portfolio is None:
        return money(0)
    return money(engine.excess_at(portfolio, valued, figures, [move], groups)[0])


__all__ = ["Direction", "Distance", "DistanceToCall", "StressedMarket", "book_figures",
           "distance_to_call", "remembered",
           "excess_after_move"]
