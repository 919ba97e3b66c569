"""The intraday margin level (IML) of a book: equity less the FINRA 4210(c) maintenance
requirement, i.e. the cash the customer could withdraw while still meeting maintenance margin
(negative: the deposit needed). The comparison is on a maintenance basis, not Reg T initial
margin (MARGIN_CALLS.md section 5).

Nothing new is computed here: the book is priced and margined by the engine's Reg T block (its
``maintenance`` is 4210(c) in net-liquidation terms) through the calculator, and equity and the
requirement are rounded by ``margin.figures.snapshot_figures``, the one definition the
snapshots use. Only the ``reg_t`` method runs: the IML needs nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account, Instrument
from accounts.services import cash_balance

from ..book import (
    Holding,
    MissingMarketData,
    build_portfolio,
    current_rate,
    load_positions,
    market_observations_for,
    vol_values,
)
from ..engine.errors import EngineInputError
from ..figures import parameters_for, snapshot_figures
from ..market_data import exchange_date

METHODS = ("reg_t",)


@dataclass(frozen=True)
class Level:
    """A book's IML: ``equity`` and ``maintenance`` to the cent, or what could not be valued."""

    equity: Decimal | None
    maintenance: Decimal | None
    unvalued: str = ""

    @property
    def iml(self) -> Decimal | None:
        if self.equity is None or self.maintenance is None:
            return None
        return self.equity - self.maintenance


#: a book as valued here: its holdings and its cash
Book = tuple[list[Holding], Decimal]


def value_books(firm, books: Mapping[object, Book]) -> dict[object, Level]:
    """The IML of each book (keyed as given), one market read for all of them."""
    from ..calculator.compute import calculate
    from ..calculator.parse import CalculatorError

    if not books:
        return {}
    params, _ = parameters_for(firm)
    today, now = exchange_date(), timezone.now()
    prices, vol_rows = market_observations_for({key: holdings
                                                for key, (holdings, _) in books.items()})
    vols, rate = vol_values(vol_rows), current_rate(today)
    levels: dict[object, Level] = {}
    for key, (holdings, cash) in books.items():
        held = [h for h in holdings if h.quantity]
        try:
            portfolio = build_portfolio(held, valuation_date=today, prices=prices, vols=vols,
                                        rate=rate, params=params, valuation_time=now,
                                        methods=METHODS)
            result = calculate(portfolio, params) if portfolio.positions else {
                "net_liquidation_value": 0.0, "reg_t": {"initial": 0.0, "maintenance": 0.0}}
        except MissingMarketData as exc:
            levels[key] = Level(None, None, f"missing_price: {exc}")
            continue
        except EngineInputError as exc:
            levels[key] = Level(None, None, f"{exc.code}: {exc.message}")
            continue
        except CalculatorError as exc:
            levels[key] = Level(None, None, f"{exc.errors[0]['code']}: {exc}")
            continue
        figures = snapshot_figures(margin_type=Account.MarginType.REG_T, cash=cash,
                                   result=result)
        levels[key] = Level(figures["equity"], figures["requirement"])
    return levels


def apply_changes(holdings: list[Holding], account_id: int,
                  changes: Iterable[tuple[Instrument, Decimal]]) -> list[Holding]:
    """The holdings after adding each (instrument, signed quantity) to the book."""
    by_instrument = {h.instrument_id: h for h in holdings}
    for instrument, quantity in changes:
        held = by_instrument.get(instrument.pk)
        by_instrument[instrument.pk] = Holding(
            account_id, instrument, (held.quantity if held else Decimal(0)) + Decimal(quantity),
            held.cost_basis if held else Decimal(0))
    return list(by_instrument.values())


def intraday_margin_level(account: Account, *,
                          changes: Iterable[tuple[Instrument, Decimal]] = (),
                          cash_change: Decimal = Decimal(0)) -> Level:
    """The account's IML now, or after the proposed ``changes`` (instrument, signed quantity)
    and ``cash_change`` (what the orders pay or receive, fees included: negative for a
    purchase): what the pre-trade check shows as "the intraday margin level after". Writes
    nothing."""
    holdings = apply_changes(load_positions([account]).get(account.pk, []), account.pk,
                             changes)
    cash = cash_balance(account) + Decimal(cash_change)
    return value_books(account.firm, {account.pk: (holdings, cash)})[account.pk]
