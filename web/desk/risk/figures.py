"""What the firm risk page reads: set-based queries over the firm's current margin
(``AccountMargin``, one row per account, what the sweep keeps current), its history snapshots
and its positions. Pages never recompute on load (DESIGN.md "The paths data takes", 5)."""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from accounts.models import Instrument, Position
from brokerage.models import Firm
from margin.dirty import contracts_on
from margin.market_data import newest_price_rows, outstanding_rejections
from margin.models import AccountMargin, MarginSnapshot, OracleRejection
from margin.sweep import CLOSED_FLAG

ZERO = Decimal("0.00")
LISTED = 10  # rows of each "largest" table


@dataclass(frozen=True)
class Totals:
    equity: Decimal
    requirement: Decimal
    excess: Decimal
    accounts: int


@dataclass(frozen=True)
class DayMove:
    """The firm's totals now against its books at the start of the firm's day."""

    start: Totals
    now: Totals
    since: datetime

    @property
    def equity(self) -> Decimal:
        return self.now.equity - self.start.equity

    @property
    def requirement(self) -> Decimal:
        return self.now.requirement - self.start.requirement

    @property
    def excess(self) -> Decimal:
        return self.now.excess - self.start.excess


def current_rows() -> QuerySet:
    """The firm's valued current-margin rows (the request's firm scope)."""
    return AccountMargin.objects.filter(requirement__isnull=False, equity__isnull=False)


def firm_totals() -> Totals:
    found = current_rows().aggregate(equity=Sum("equity"), requirement=Sum("requirement"),
                                     excess=Sum("excess"), accounts=Count("pk"))
    return Totals(found["equity"] or ZERO, found["requirement"] or ZERO, found["excess"] or ZERO,
                  found["accounts"])


def start_of_day(firm: Firm, now: datetime | None = None) -> datetime:
    """Midnight of today in the firm's zone (the firm's day: what its people call today)."""
    local = timezone.localtime(now or timezone.now(), zoneinfo.ZoneInfo(firm.time_zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def day_move(firm: Firm) -> DayMove:
    """Totals now and at the start of the firm's day: each account's last snapshot before
    midnight or, for an account first valued today, its first snapshot of the day; one
    statement (a correlated subquery per account on the snapshots' account-time index)."""
    since = start_of_day(firm)
    history = MarginSnapshot.objects.filter(account_id=OuterRef("account_id"))
    start = Coalesce(
        Subquery(history.filter(computed_at__lt=since).order_by("-computed_at", "-pk")
                 .values("pk")[:1]),
        Subquery(history.filter(computed_at__gte=since).order_by("computed_at", "pk")
                 .values("pk")[:1]))
    at_start = MarginSnapshot.objects.filter(
        pk__in=current_rows().annotate(start=start).values("start")).aggregate(
        equity=Sum("equity"), requirement=Sum("requirement"), excess=Sum("excess"),
        accounts=Count("pk"))
    return DayMove(Totals(at_start["equity"] or ZERO, at_start["requirement"] or ZERO,
                          at_start["excess"] or ZERO, at_start["accounts"]),
                   firm_totals(), since)


def largest_requirements(limit: int = LISTED) -> list[AccountMargin]:
    return list(current_rows().select_related("account__client")
                .order_by("-requirement", "account_id")[:limit])


def closest_to_call(limit: int = LISTED) -> list[AccountMargin]:
    """The accounts with the least excess per dollar of requirement (those in deficit first:
    their cushion is negative)."""
    cushion = ExpressionWrapper(F("excess") / F("requirement"),
                                output_field=DecimalField(max_digits=30, decimal_places=10))
    return list(current_rows().filter(requirement__gt=0).annotate(cushion=cushion)
                .select_related("account__client").order_by("cushion", "account_id")[:limit])


@dataclass(frozen=True)
class Exposure:
    """Gross notional on one class group: |quantity| x multiplier x the price it moves with."""

    class_group: str
    long: Decimal
    short: Decimal
    accounts: int

    @property
    def gross(self) -> Decimal:
        return self.long + self.short


def concentration(limit: int = LISTED) -> list[Exposure]:
    """The class groups carrying the most gross notional (delta-unadjusted: an option counts
    its underlying's notional), in three queries: positions summed per instrument, the
    instruments' newest prices, accounts per class group."""
    long_q = Sum(Case(When(quantity__gt=0, then=F("quantity")), default=0,
                      output_field=DecimalField(max_digits=30, decimal_places=8)))
    per_instrument = list(Position.objects.values("instrument_id").annotate(
        long=long_q, gross=Sum(Abs("quantity"))).order_by())
    instruments = Instrument.objects.in_bulk([row["instrument_id"] for row in per_instrument])
    moves_with = {pk: i.underlying_id or pk for pk, i in instruments.items()}
    prices = newest_price_rows(set(moves_with.values()))
    long: dict[str, Decimal] = defaultdict(lambda: ZERO)
    short: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in per_instrument:
        instrument = instruments[row["instrument_id"]]
        price = prices.get(moves_with[instrument.pk])
        if price is None or instrument.kind == Instrument.Kind.UNISWAP_V3_LP:
            continue  # unpriced (flagged by the sweep) or a pool share (no single notional)
        unit = price.price * instrument.multiplier
        long[instrument.class_group] += row["long"] * unit
        short[instrument.class_group] += (row["gross"] - row["long"]) * unit
    holders = dict(Position.objects.values("instrument__class_group").annotate(
        n=Count("account_id", distinct=True)).order_by().values_list("instrument__class_group",
                                                                     "n"))
    found = [Exposure(group, long[group].quantize(Decimal("0.01")),
                      short[group].quantize(Decimal("0.01")), holders.get(group, 0))
             for group in long.keys() | short.keys()]
    return sorted(found, key=lambda e: (-e.gross, e.class_group))[:limit]


@dataclass(frozen=True)
class Rejection:
    rejection: OracleRejection
    holders: int


def oracle_rejections() -> list[Rejection]:
    """Oracle rounds refused by the loader's checks and not yet followed by a good price, on
    instruments the firm's books rest on (their holders keep their last good valuation,
    flagged); rejections are market data, shared, so the firm's positions select them."""
    candidates = OracleRejection.objects.values_list("instrument_id", flat=True).distinct()
    outstanding = outstanding_rejections(set(candidates))
    if not outstanding:
        return []
    found = []
    for instrument_id, rejection in sorted(outstanding.items(),
                                           key=lambda kv: kv[1].rejected_at, reverse=True):
        # the contracts first, their positions by instrument (margin.dirty.holders_of's reason)
        holders = Position.objects.filter(instrument_id__in=contracts_on([instrument_id])) \
            .values("account_id").distinct().count()
        if holders:
            found.append(Rejection(rejection, holders))
    return found


def stale_limit() -> timedelta:
    """How long an account may wait for the sweep before its margin is stale: the readiness
    probe's limit on the sweep's backlog (``READYZ_MAX_DIRTY_AGE_S``, a chunk's time limit)."""
    return timedelta(seconds=float(settings.READYZ_MAX_DIRTY_AGE_S))


def stale_accounts() -> QuerySet:
    """Accounts marked dirty longer ago than the limit and not swept since: their current
    margin (and latest snapshot) describe inputs that have moved."""
    return AccountMargin.objects.filter(dirty_version__gt=F("computed_version"),
                                        marked_at__lt=timezone.now() - stale_limit())


def unvalued_accounts() -> QuerySet:
    """Accounts the last sweep could not value (a rejected oracle round, a missing price, a
    book the engine refuses): their numbers are the last good ones."""
    return AccountMargin.objects.filter(flag__gt="").exclude(flag=CLOSED_FLAG)
