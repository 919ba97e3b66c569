"""Each position's contribution to the account's requirement: how much the requirement would
change if that position alone were closed (issue 18, the overview's positions table). Writes
nothing.

The books "without this position" are valued as the pre-trade check values a book
(``margin.pretrade._Market.value_many``: for a portfolio-margin book the batch path values
every book at once, every contract once, as the sweep's chunk does; the calculator otherwise),
beside the book as it is, at the same prices, so each difference compares like for like. A
strategy-based (Reg T) requirement pairs positions, so contributions do not add up to the
requirement; a portfolio-margin one nets within class groups, so they need not either.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from accounts.models import Account

from .pretrade import _Market


@dataclass(frozen=True)
class Contribution:
    instrument_id: int
    symbol: str
    requirement_without: Decimal
    #: requirement without the position - requirement with it (negative: closing lowers it)
    change: Decimal


def contributions(account: Account) -> tuple[Decimal | None, dict[int, Contribution]]:
    """The requirement of the book as it is, and each held instrument's contribution (by
    instrument id), kept under the account's margin version (``margin.distance.remembered``).
    Raises ``margin.pretrade.Unvalued`` when a book cannot be valued."""
    from .distance import remembered

    return remembered(account, ("contributions",), lambda: _contributions(account))


def _contributions(account: Account) -> tuple[Decimal | None, dict[int, Contribution]]:
    market = _Market.load(account, ())
    holdings = [h for h in market.holdings if h.quantity != 0]
    if not holdings:
        return None, {}
    books = [(holdings, market.cash)] + [
        ([h for h in holdings if h is not closed], market.cash) for closed in holdings]
    figures = market.value_many(books, market.prices)
    now = figures[0].requirement
    out = {}
    for closed, without in zip(holdings, figures[1:], strict=True):
        out[closed.instrument.pk] = Contribution(closed.instrument.pk, closed.instrument.symbol,
                                                 without.requirement,
                                                 without.requirement - now)
    return now, out





def contributions_under(account: Account, basis: str) -> dict[int, Decimal]:
    """Each held instrument's contribution to the requirement of margin type ``basis`` (a Reg
    T account's figure were it under portfolio margin: what closing a hedge would do there),
    on the book ``margin.distance`` builds, the position left out of the engine's portfolio.
    Raises ``margin.pretrade.Unvalued``."""
    from .distance import remembered

    return remembered(account, ("contributions", basis),
                      lambda: _contributions_under(account, basis))


def _contributions_under(account: Account, basis: str) -> dict[int, Decimal]:
    from dataclasses import replace

    from .distance import book_figures

    market, portfolio, _, figures = book_figures(account, basis)
    if portfolio is None:
        return {}
    _, now = figures(portfolio)
    by_symbol = {h.instrument.symbol: h.instrument.pk for h in market.holdings}
    out = {}
    for position in portfolio.positions:
        without = replace(portfolio, positions=tuple(p for p in portfolio.positions
                                                     if p is not position))
        _, requirement = figures(without) if without.positions else (0.0, 0.0)
        out[by_symbol[position.id]] = Decimal(str(requirement)) - Decimal(str(now))
    return out
__all__ = ["Contribution", "contributions", "contributions_under"]
