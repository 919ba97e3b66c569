"""From the book to the engine: an account's positions and the latest market data as a
`Portfolio`, read in a few queries for a whole chunk of accounts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import NamedTuple

from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from accounts.models import Account, Instrument, Position
from brokerage.id_sets import id_set
from margin.engine.parameters import ParameterSet
from margin.engine.portfolio import LPPosition, Portfolio, StressScenario, Underlying
from margin.engine.portfolio import Position as EnginePosition
from margin.engine.validation import validate_portfolio

from .market_data import (
    PriceRow,
    VolRow,
    newest_per_instrument,
    newest_price_rows,
    newest_vol_rows,
)
from .market_history import ChunkHistory, read_history
from .models import ImpliedVolatility, PriceObservation, RiskFreeRate

# The engine's underlying type for each instrument kind that can be an underlying.
UNDERLYING_TYPE = {
    Instrument.Kind.STOCK: "stock", Instrument.Kind.ETF: "etf", Instrument.Kind.INDEX: "index",
    Instrument.Kind.FUTURE: "future", Instrument.Kind.CRYPTO: "token",
}


class MissingMarketData(ValueError):
    """An instrument in the book has no usable price: the account is not valued."""

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(f"no price for {', '.join(sorted(symbols))}")
        self.symbols = sorted(symbols)


class Holding(NamedTuple):
    """One position as the valuation reads it (what `build_portfolio` and a snapshot's record
    take from a `Position`), on an instrument shared by every holding of it in the chunk. A
    tuple: a chunk makes tens of thousands (a frozen dataclass sets each field through
    ``object.__setattr__``)."""

    account_id: int
    instrument: Instrument
    quantity: Decimal
    cost_basis: Decimal
    #: the instruments its value rests on (``figures.instrument_ids``), found once per
    #: instrument for the chunk rather than once per holding and use
    valued_on: tuple[int, ...] = ()

    @property
    def instrument_id(self) -> int:
        # ``valued_on`` starts with the instrument itself (a chunk reads this per holding)
        return self.valued_on[0] if self.valued_on else self.instrument.pk


def valued_on(instrument: Instrument) -> tuple[int, ...]:
    """The instruments a position on ``instrument`` rests on: itself, its underlying, an LP's
    tokens."""
    return tuple(i for i in (instrument.pk, instrument.underlying_id, instrument.token0_id,
                             instrument.token1_id) if i)


def load_positions(accounts: Sequence[Account], instruments: Callable[[set[int]], dict[
        int, Instrument]] | None = None) -> dict[int, list[Holding]]:
    """The accounts' positions, in three queries: the rows as values, each distinct instrument
    once, then the underlyings and tokens they name that are not among them. A chunk of 2,000
    accounts holds some 40,000 positions on a few thousand contracts: a model instance per row,
    or one per joined instrument and row (``select_related`` builds the underlying again for
    every option on it), cost more than valuing the chunk. ``instruments`` reads them
    (``instruments_with_related``; a sweep worker's kept ones, ``margin.market_cache``)."""
    rows = list(Position.objects.filter(account_id__in=id_set(a.pk for a in accounts))
                .values_list("account_id", "instrument_id", "quantity", "cost_basis"))
    instruments = (instruments or instruments_with_related)({row[1] for row in rows})
    depends = {pk: tuple(filter(None, DEPENDS_ON(instrument.__dict__)))
               for pk, instrument in instruments.items()}
    by_account: dict[int, list[Holding]] = defaultdict(list)
    for account_id, instrument_id, quantity, cost_basis in rows:
        by_account[account_id].append(Holding(account_id, instruments[instrument_id], quantity,
                                              cost_basis, depends[instrument_id]))
    return by_account


#: the instrument's relations a valuation follows (an option's underlying, an LP's tokens)
RELATED = ("underlying", "token0", "token1")


#: what ``valued_on`` reads, from the instance's stored values
DEPENDS_ON = itemgetter("id", "underlying_id", "token0_id", "token1_id")


def instruments_by_id(ids) -> dict[int, Instrument]:
    """``Instrument.objects.filter(pk__in=ids).in_bulk()``, the instances made from the rows'
    values directly: what ``Model.from_db`` does (the same converted values, the instance
    marked as loaded from the queryset's database) without ``Model.__init__`` setting each
    field through its descriptor, a third of a chunk's reading cost at 25,000 contracts. With
    an init signal receiver on ``Instrument`` it goes through ``from_db`` as usual."""
    queryset = Instrument.objects.filter(pk__in=id_set(ids))
    if pre_init.has_listeners(Instrument) or post_init.has_listeners(Instrument):
        return queryset.in_bulk()
    attnames = [f.attname for f in Instrument._meta.concrete_fields]
    pk = attnames.index(Instrument._meta.pk.attname)
    db = queryset.db
    found: dict[int, Instrument] = {}
    for row in queryset.values_list(*attnames):
        instance = Instrument.__new__(Instrument)
        instance.__dict__.update(zip(attnames, row, strict=True))
        state = instance._state = ModelState()
        state.adding, state.db = False, db
        found[row[pk]] = instance
    return found


def instruments_with_related(ids) -> dict[int, Instrument]:
    """The instruments by id, each related instrument (underlying, tokens) loaded once and
    shared by every instrument naming it (what ``select_related`` would load per row)."""
    found = instruments_by_id(ids)
    fields = [Instrument._meta.get_field(name) for name in RELATED]
    named = {getattr(i, f.attname) for i in found.values() for f in fields} - found.keys()
    named.discard(None)
    extra = instruments_by_id(named) if named else {}
    for instrument in found.values():
        for f in fields:
            pk = getattr(instrument, f.attname)
            target = found.get(pk) or extra.get(pk)
            if target is not None:  # else read when first followed, as without select_related
                f.set_cached_value(instrument, target)
    return found


def latest_vol_observations(instrument_ids) -> dict[int, ImpliedVolatility]:
    """The newest implied vol row per instrument (a snapshot records which one it used)."""
    return newest_per_instrument(ImpliedVolatility.objects, instrument_ids)


def latest_vols(instrument_ids) -> dict[int, float]:
    return vol_values(latest_vol_observations(instrument_ids))


def vol_values(rows: dict[int, ImpliedVolatility]) -> dict[int, float]:
    """What `build_portfolio` reads: instrument id -> implied vol."""
    return {instrument_id: float(row.volatility) for instrument_id, row in rows.items()}


def current_rate_row(on: date) -> RiskFreeRate | None:
    return RiskFreeRate.objects.filter(currency="USD", observed_on__lte=on).order_by(
        "-observed_on").first()


def rate_value(row: RiskFreeRate | None) -> float:
    return float(row.rate) if row else 0.0


def current_rate(on: date) -> float:
    return rate_value(current_rate_row(on))


def current_mark(mark: PriceObservation | None, spot: PriceObservation | None, *,
                 has_vol: bool) -> PriceObservation | None:
    """An option's mark, unless its underlying has moved since and a vol can value it instead.

    A tick on the underlying arrives before (or without) new option quotes: the last mark then
    describes a market that no longer exists (after a 12 % drop a put's old mark sits below its
    new intrinsic value, outside the no-arbitrage bounds). Between quotes the option is marked
    to model at its stored implied vol, as a desk does; without a vol the old mark is all there
    is, and the engine judges it (and flags the account when it cannot be used).
    """
    if mark is None or spot is None or not has_vol:
        return mark
    return None if mark.observed_at < spot.observed_at else mark


def build_portfolio(positions: Sequence[Position], *, valuation_date: date, prices: dict,
                    vols: dict[int, float], rate: float, params: ParameterSet,
                    valuation_time: datetime | None = None,
                    history: dict[str, tuple[float, ...]] | None = None,
                    methods: Sequence[str] | None = None) -> Portfolio:
    """The account's book as the engine's `Portfolio`, with the firm's snapshot settings: the
    house components the firm switches on and, unless ``methods`` names the methods to run
    (the sweep's: what the requirement rests on, ``margin.valuing``), every method of the
    parameter set's snapshot settings and its named stress scenarios (the explanation's)."""
    underlyings: dict[str, Underlying] = {}
    missing: set[str] = set()
    engine_positions: list[EnginePosition] = []

    def declare(instrument: Instrument) -> str:
        if instrument.symbol not in underlyings:
            observation = prices.get(instrument.pk)
            if observation is None:
                missing.add(instrument.symbol)
                return instrument.symbol
            underlyings[instrument.symbol] = Underlying(
                symbol=instrument.symbol, price=float(observation.price),
                product_class=instrument.product_class,
                type=UNDERLYING_TYPE.get(instrument.kind, "stock"),
                class_group=instrument.class_group, product_group=instrument.product_group,
                dividend_yield=float(instrument.dividend_yield),
            )
        return instrument.symbol

    for index, position in enumerate(sorted(positions, key=lambda p: p.instrument.symbol)):
        instrument = position.instrument
        quantity = float(position.quantity)
        common = {"index": index, "id": instrument.symbol, "quantity": quantity}
        kind = instrument.kind
        if kind in (Instrument.Kind.STOCK, Instrument.Kind.ETF, Instrument.Kind.CRYPTO):
            symbol = declare(instrument)
            engine_positions.append(EnginePosition(
                kind="crypto" if kind == Instrument.Kind.CRYPTO else "stock", symbol=symbol,
                **common))
        elif instrument.is_option:
            root = declare(instrument.underlying)
            mark = current_mark(prices.get(instrument.pk), prices.get(instrument.underlying_id),
                                has_vol=instrument.pk in vols)
            expiry = instrument.expiry
            engine_positions.append(EnginePosition(
                kind="future_option" if kind == Instrument.Kind.FUTURE_OPTION else "option",
                underlying=root, right=instrument.right, strike=float(instrument.strike),
                expiry=expiry, time_to_expiry=max((expiry - valuation_date).days, 0) / 365.0,
                multiplier=float(instrument.multiplier),
                exercise=instrument.exercise_style or None,
                price=float(mark.price) if mark else None,
                implied_vol=vols.get(instrument.pk), **common))
        elif kind == Instrument.Kind.FUTURE:
            root = declare(instrument)
            engine_positions.append(EnginePosition(
                kind="future", underlying=root, expiry=instrument.expiry,
                multiplier=float(instrument.multiplier),
                price=float(prices[instrument.pk].price) if instrument.pk in prices else None,
                **common))
        elif kind == Instrument.Kind.PERPETUAL:
            root = declare(instrument.underlying)
            entry = float(position.cost_basis) / quantity if quantity else 0.0
            engine_positions.append(EnginePosition(
                kind="perpetual", symbol=root, entry_price=abs(entry), **common))
        elif kind == Instrument.Kind.UNISWAP_V3_LP:
            token0, token1 = declare(instrument.token0), declare(instrument.token1)
            engine_positions.append(EnginePosition(
                kind="uniswap_v3_lp", lp=LPPosition(
                    token0=token0, token1=token1, decimals0=instrument.decimals0,
                    decimals1=instrument.decimals1, liquidity=int(instrument.liquidity),
                    tick_lower=instrument.tick_lower, tick_upper=instrument.tick_upper),
                **common))
    if missing:
        raise MissingMarketData(sorted(missing))
    settings = params.snapshots
    explanation = methods is None
    methods = tuple(settings.methods if explanation else methods)
    held_history = None
    if history and all(symbol in history for symbol in underlyings):
        held_history = {symbol: history[symbol] for symbol in underlyings}
    # the engine's one validator: the same bounds a calculator request meets (raises
    # InvalidPortfolio, an EngineInputError the sweep reports as the account's flag)
    return validate_portfolio(Portfolio(
        valuation_date=valuation_date, underlyings=underlyings,
        positions=tuple(engine_positions), rate=rate, valuation_time=valuation_time,
        methods=tuple(m for m in methods if m != "var" or held_history),
        house=params.house.snapshot_components.as_house_request(),
        history=held_history if "var" in methods else None,
        stress=tuple(StressScenario(name=name, moves={}) for name in settings.stress)
        if explanation else (),
    ), params)


def market_for(positions_by_account: dict[int, list[Position]]) -> tuple[dict, dict[int, float]]:
    """Latest prices and vols for every instrument (and underlying) in a chunk, in 2 queries."""
    prices, vols = market_observations_for(positions_by_account)
    return prices, vol_values(vols)


def market_observations_for(positions_by_account: dict[int, list[Position]]
                            ) -> tuple[dict[int, PriceRow], dict[int, VolRow]]:
    """`market_for` as rows: the newest price and vol observations (their ids are what a
    snapshot records), as plain rows (2 queries)."""
    ids = {i for rows in positions_by_account.values() for row in rows
           for i in (row.valued_on or valued_on(row.instrument))}
    return newest_price_rows(ids), newest_vol_rows(ids)


def history_instruments(position: Position) -> list[Instrument]:
    """The underlyings whose daily closes the position's VaR scenarios move (the instruments
    `build_portfolio` declares for it): a stock itself, an option's or a perpetual's
    underlying, an LP position's two tokens."""
    instrument = position.instrument
    return [i for i in (instrument, instrument.underlying, instrument.token0, instrument.token1)
            if i is not None and i.kind in UNDERLYING_TYPE]


def price_history(positions_by_account: dict[int, list[Position]], *, on: date,
                  returns_needed: int) -> ChunkHistory:
    """Stored daily closes (``margin.market_history``) of every underlying in a chunk, up to
    ``on``, in two queries; ``for_symbols`` then cuts each account's window."""
    held = {i.pk: i for rows in positions_by_account.values() for row in rows
            for i in history_instruments(row)}
    return read_history(list(held.values()), on=on, returns_needed=returns_needed)
