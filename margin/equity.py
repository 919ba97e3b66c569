"""An account's equity, one definition: cash plus the engine's net liquidation value.

The engine values each position (``engine.valuation.value_positions``): stock, ETFs and crypto
at price x quantity, an option at its mark x multiplier (its model value without a mark), a
future at 0 (its gains and losses settle into cash daily), a perpetual at its unrealised P&L,
a Uniswap v3 position at its value at oracle prices. Snapshots store that equity
(``snapshots.compute_snapshots``); ``value_book`` computes the same number now, without
writing, for a reader that cannot wait for the next snapshot (eligibility, when the book moved
after the last one). Money is rounded once, here, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from accounts.models import Account
from accounts.services import cash_balance
from margin.engine.errors import POSITION_FIELD, EngineInputError
from margin.engine.valuation import value_positions

from .book import MissingMarketData, build_portfolio, current_rate, load_positions, market_for
from .market_data import exchange_date, outstanding_rejections

CENT = Decimal("0.01")


@dataclass(frozen=True)
class BookValue:
    """Cash and the positions' net liquidation value; ``unvalued`` names what could not be
    valued (then there is no equity to give: a partial sum would understate or overstate it)."""

    cash: Decimal
    net_liquidation_value: Decimal | None
    unvalued: tuple[str, ...] = ()

    @property
    def equity(self) -> Decimal | None:
        if self.net_liquidation_value is None:
            return None
        return self.cash + self.net_liquidation_value


def from_engine(*, cash: Decimal, net_liquidation_value: float) -> BookValue:
    """The account's value from the engine's net liquidation value (a float), in cents."""
    nlv = Decimal(str(net_liquidation_value)).quantize(CENT, ROUND_HALF_UP)
    return BookValue(cash=cash, net_liquidation_value=nlv)


def value_book(account: Account) -> BookValue:
    """The account's equity now, by the snapshot's definition, without writing anything.

    Positions, latest prices and vols as the sweep reads them; an instrument without a price,
    or whose latest oracle round was rejected (METHODOLOGY.md section 6: never valued at a
    stale or manipulated price), leaves the book unvalued and is named.
    """
    # Imported here: figures imports this module for `from_engine` (the one definition).
    from .figures import parameters_for

    cash = cash_balance(account)
    positions = load_positions([account]).get(account.pk, [])
    if not positions:
        return from_engine(cash=cash, net_liquidation_value=0.0)
    prices, vols = market_for({account.pk: positions})
    held = {i for p in positions for i in (p.instrument_id, p.instrument.underlying_id,
                                           p.instrument.token0_id, p.instrument.token1_id) if i}
    rejected = outstanding_rejections(held)
    if rejected:
        return BookValue(cash, None, tuple(sorted(
            f"{r.instrument.symbol} (oracle round rejected: {r.failed_check})"
            for r in rejected.values())))
    params, _ = parameters_for(account.firm)
    today = exchange_date()
    portfolio = None
    try:
        portfolio = build_portfolio(positions, valuation_date=today, prices=prices, vols=vols,
                                    rate=current_rate(today), params=params)
        valued = value_positions(portfolio, params, need_model=False)
    except MissingMarketData as exc:
        return BookValue(cash, None, tuple(exc.symbols))
    except EngineInputError as exc:
        return BookValue(cash, None, (_what_failed(exc, portfolio),))
    return from_engine(cash=cash, net_liquidation_value=valued.net_liquidation_value)


def _what_failed(exc: EngineInputError, portfolio) -> str:
    """The position the engine could not value, by symbol, with the engine's reason."""
    match = POSITION_FIELD.match(exc.field or "")
    if portfolio is not None and match and int(match.group(1)) < len(portfolio.positions):
        return f"{portfolio.positions[int(match.group(1))].id} ({exc.message})"
    return exc.message
