"""Loading market data: validated, all-or-nothing, audited.

A load with any bad row writes nothing and names every bad row (index and field). Prices must
be positive and finite; an unknown symbol, a time in the future or a NaN are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connection, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Instrument
from brokerage import audit
from brokerage.errors import InvalidInput
from brokerage.id_sets import id_set

from .dirty import mark_everyone, mark_holders
from .models import ImpliedVolatility, OracleRejection, PriceObservation, RiskFreeRate


class MarketDataError(InvalidInput):
    """A load refused: every bad row and field listed; nothing of the load is stored."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors=[(e["field"], e["code"], e["message"]) for e in errors])


def exchange_date() -> date:
    """The date a book is valued on: the exchange's (settings.TIME_ZONE is its clock), as the
    sweep's workers see it, never the zone a viewer's request activated (in Tokyo it is
    already tomorrow by New York's afternoon, and today's expiries would read as expired)."""
    return timezone.localdate(timezone=timezone.get_default_timezone())


def _positive_decimal(value: Any, field: str, errors: list[dict[str, str]],
                      allow_zero: bool = False) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        errors.append({"field": field, "code": "invalid", "message": f"{value!r} is not a number"})
        return None
    if not number.is_finite():
        errors.append({"field": field, "code": "not_finite",
                       "message": f"{value!r} is not a finite number"})
        return None
    if number < 0 or (number == 0 and not allow_zero):
        errors.append({"field": field, "code": "not_positive",
                       "message": f"must be positive, got {value}"})
        return None
    return number


def _observed_at(value: Any, field: str, errors: list[dict[str, str]]) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = parse_datetime(str(value)) if value is not None else None
        if moment is None:
            errors.append({"field": field, "code": "invalid",
                           "message": f"{value!r} is not an ISO datetime"})
            return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    if moment > timezone.now() + timezone.timedelta(minutes=5):
        errors.append({"field": field, "code": "future",
                       "message": f"{moment.isoformat()} is in the future"})
        return None
    return moment


def _validated_observations(rows: list[dict[str, Any]], value_field: str,
                            source: str) -> list[tuple[Instrument, Decimal, datetime]]:
    """Every row checked (symbol known, value positive and finite, time not in the future);
    all errors collected and raised together, so a bad load writes nothing."""
    errors: list[dict[str, str]] = []
    if source not in PriceObservation.Source.values:
        errors.append({"field": "source", "code": "invalid", "message": f"unknown source {source!r}"})
    if not rows:
        errors.append({"field": "observations", "code": "empty", "message": "no observations"})
    instruments = {i.symbol: i for i in Instrument.cross_firm.for_compliance(
        reason="market data is shared reference data").filter(
            symbol__in={str(row.get("symbol", "")) for row in rows}, firm__isnull=True)}
    valid = []
    for index, row in enumerate(rows):
        at = f"observations[{index}]"
        unknown = set(row) - {"symbol", value_field, "observed_at"}
        if unknown:
            errors.append({"field": at, "code": "unknown_field",
                           "message": f"unknown fields {sorted(unknown)}"})
        instrument = instruments.get(str(row.get("symbol", "")))
        if instrument is None:
            errors.append({"field": f"{at}.symbol", "code": "unknown_symbol",
                           "message": f"unknown symbol {row.get('symbol')!r}"})
        value = _positive_decimal(row.get(value_field), f"{at}.{value_field}", errors)
        moment = _observed_at(row.get("observed_at"), f"{at}.observed_at", errors)
        if instrument and value is not None and moment is not None:
            valid.append((instrument, value, moment))
    if errors:
        raise MarketDataError(errors)
    return valid


def _store_observations(model, value_field: str, *, observations: Iterable[dict[str, Any]],
                        source: str, actor, firm, event_type: str,
                        name_symbols: bool = False) -> list:
    """Rows `[{"symbol", value_field, "observed_at"}]` validated, then stored in one statement
    with their audit event, all or nothing."""
    prepared = [model(instrument=instrument, source=source, observed_at=moment,
                      **{value_field: value})
                for instrument, value, moment in _validated_observations(
                    list(observations), value_field, source)]
    after: dict[str, Any] = {"source": source, "count": len(prepared)}
    if name_symbols:
        after["symbols"] = sorted({row.instrument.symbol for row in prepared})
    with transaction.atomic():
        created = model.objects.bulk_create(prepared)
        audit.record(firm=firm, actor=actor, event_type=event_type,
                     object_type=model._meta.label_lower, object_id=len(created), after=after)
        # In the same transaction: the holders are dirty exactly when the rows are visible.
        mark_holders(row.instrument_id for row in created)
    return created


def load_prices(*, observations: Iterable[dict[str, Any]], source: str, actor,
                firm=None) -> list[PriceObservation]:
    """Store price observations `[{"symbol", "price", "observed_at"}]`, all or nothing; the
    accounts holding them are marked dirty in the same transaction."""
    return _store_observations(PriceObservation, "price", observations=observations,
                               source=source, actor=actor, firm=firm,
                               event_type="prices.loaded", name_symbols=True)


def load_implied_vols(*, observations: Iterable[dict[str, Any]], source: str, actor,
                      firm=None) -> list[ImpliedVolatility]:
    """Store implied volatilities `[{"symbol", "volatility", "observed_at"}]`, all or nothing;
    the accounts holding them (an option's vol moves its holders' requirement) are marked dirty
    in the same transaction."""
    return _store_observations(ImpliedVolatility, "volatility", observations=observations,
                               source=source, actor=actor, firm=firm, event_type="vols.loaded")


def set_risk_free_rate(*, rate: Any, observed_on: date, actor, currency: str = "USD",
                       tenor_days: int = 90) -> RiskFreeRate:
    errors: list[dict[str, str]] = []
    try:
        value = Decimal(str(rate))
        if not value.is_finite() or not (Decimal("-0.05") < value < Decimal("0.5")):
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errors.append({"field": "rate", "code": "invalid",
                       "message": f"{rate!r} is not a plausible annual rate"})
        raise MarketDataError(errors) from None
    with transaction.atomic():
        row, _ = RiskFreeRate.objects.update_or_create(
            currency=currency, tenor_days=tenor_days, observed_on=observed_on,
            defaults={"rate": value})
        audit.record(firm=None, actor=actor, event_type="rate.set", obj=row,
                     after={"currency": currency, "tenor_days": tenor_days, "rate": value})
        # Every option of every firm is discounted at it: every account is marked.
        mark_everyone()
    return row


def latest_prices(instrument_ids: Iterable[int]) -> dict[int, PriceObservation]:
    """The newest observation per instrument, in one query."""
    return newest_per_instrument(PriceObservation.objects, instrument_ids)


def newest_per_instrument(rows: QuerySet, instrument_ids: Iterable[int]) -> dict[int, Any]:
    """The newest row (by ``observed_at``, then id) of each instrument: ``DISTINCT ON`` on
    PostgreSQL (one index scan per instrument, however many observations it has); elsewhere a
    subquery per row."""
    return {row.instrument_id: row for row in _newest(rows, instrument_ids)}


def _newest(rows: QuerySet, instrument_ids: Iterable[int]) -> QuerySet:
    rows = rows.filter(instrument_id__in=id_set(instrument_ids))
    if connection.vendor == "postgresql":
        return rows.order_by("instrument_id", "-observed_at", "-id").distinct("instrument_id")
    latest = rows.model.objects.filter(instrument_id=OuterRef("instrument_id")).order_by(
        "-observed_at", "-id").values("id")[:1]
    return rows.filter(id=Subquery(latest))


@dataclass(frozen=True, slots=True)
class PriceRow:
    """What a valuation reads of a price observation (its id is what a snapshot records): a
    sweep chunk reads tens of thousands, and a model instance each cost more than the read."""

    pk: int
    instrument_id: int
    price: Decimal
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class VolRow:
    """What a valuation reads of an implied-volatility observation (``PriceRow``'s reason;
    not when it was observed: only an option's mark is judged by its age)."""

    pk: int
    instrument_id: int
    volatility: Decimal


def newest_price_rows(instrument_ids: Iterable[int]) -> dict[int, PriceRow]:
    """``latest_prices`` as plain rows, in one query."""
    return {row[1]: PriceRow(*row) for row in _newest(PriceObservation.objects, instrument_ids)
            .values_list("id", "instrument_id", "price", "observed_at")}


def newest_vol_rows(instrument_ids: Iterable[int]) -> dict[int, VolRow]:
    """The newest implied vol per instrument as plain rows, in one query."""
    return {row[1]: VolRow(*row) for row in _newest(ImpliedVolatility.objects, instrument_ids)
            .values_list("id", "instrument_id", "volatility")}


def load_oracle_round(*, symbol: str, round: dict[str, Any], actor,
                      reference_price: float | None = None,
                      valuation_time: datetime | None = None) -> PriceObservation:
    """Check a Chainlink-style round (METHODOLOGY.md section 6) and store its price.

    A failed check stores no price: the rejection is recorded and audited (so accounts holding
    the instrument are flagged and keep their last good snapshot) and `OracleRejected` is
    raised naming the check and the feed. The valuation time defaults to the load time.
    """
    from margin.engine.defi.oracles import check_round
    from margin.engine.errors import EngineInputError, OracleRejected
    from margin.engine.parameters import load_parameter_set

    instrument = Instrument.cross_firm.for_compliance(reason="market data is shared").filter(
        symbol=symbol, firm__isnull=True).first()
    if instrument is None:
        raise MarketDataError([{"field": "symbol", "code": "unknown_symbol",
                                "message": f"unknown symbol {symbol!r}"}])
    at = valuation_time or timezone.now()
    try:
        price = check_round(symbol, round, at, reference_price, load_parameter_set(),
                            f"oracle.{symbol}")
    except OracleRejected as rejected:
        with transaction.atomic():
            rejection = OracleRejection.objects.create(
                instrument=instrument, round_id=str(round.get("round_id", "")),
                failed_check=rejected.check, message=rejected.message)
            audit.record(firm=None, actor=actor, event_type="oracle.rejected", obj=rejection,
                         after={"symbol": symbol, "check": rejected.check,
                                "message": rejected.message, "round": round})
            # The holders' current margin must say so (flagged, last good numbers kept).
            mark_holders([instrument.pk])
        raise
    except EngineInputError as malformed:
        raise MarketDataError([malformed.as_dict()]) from None
    with transaction.atomic():
        observation = PriceObservation.objects.create(
            instrument=instrument, price=Decimal(repr(price)), source=PriceObservation.Source.ORACLE,
            observed_at=at, oracle_round_id=str(round.get("round_id", "")))
        audit.record(firm=None, actor=actor, event_type="prices.loaded", obj=observation,
                     after={"source": "oracle", "symbol": symbol, "price": observation.price,
                            "round_id": observation.oracle_round_id})
        mark_holders([instrument.pk])
    return observation


def outstanding_rejections(instrument_ids: Iterable[int]) -> dict[int, OracleRejection]:
    """Rejections not yet followed by a good price of the same instrument."""
    ids = list(instrument_ids)
    newest_good = PriceObservation.objects.filter(instrument_id=OuterRef("instrument_id")).order_by(
        "-loaded_at").values("loaded_at")[:1]
    rows = OracleRejection.objects.filter(instrument_id__in=id_set(ids)).annotate(
        good_after=Subquery(newest_good)).order_by("instrument_id", "-rejected_at")
    outstanding: dict[int, OracleRejection] = {}
    for row in rows:
        if row.instrument_id in outstanding:
            continue
        if row.good_after is None or row.good_after < row.rejected_at:
            outstanding[row.instrument_id] = row
        else:
            outstanding.setdefault(row.instrument_id, None)
    return {k: v for k, v in outstanding.items() if v is not None}
