"""Daily closes for historical VaR: loaded validated and audited, read per chunk of accounts.

Loading (``load_daily_closes``) follows ``margin.market_data``: every row checked (a known
shared underlying, an ISO date not in the future, a positive finite close, no date twice for
one symbol in a load), every problem named by row and field in one ``MarketDataError``, and
nothing stored on any error. A load is one transaction with one audit event on the platform
chain; on commit the accounts holding the instruments (or options, perpetuals and LP positions
on them) are marked dirty, as a price load does. A close already stored for a day is
replaced (a vendor's correction), except that a synthetic close never replaces a real one.

Reading (``read_history``): the closes of every underlying a chunk of accounts holds, in two
queries (a third for underlyings whose holidays differ), then per account the last ``returns_needed + 1`` closes on the dates its underlyings
share (returns must be simultaneous across symbols). An underlying with fewer closes than that
makes the account's VaR unavailable, with a ``history_short`` flag naming it, rather than
computed on too little (or made-up) history; a window that uses any synthetic close is flagged
``history_source: synthetic``.

The demo's history is SYNTHETIC (``margin/engine/data/history``, see ``engine.history``): the
demo seed loads it into the table explicitly with ``load_synthetic_demo_history``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from accounts.models import Instrument
from brokerage import audit

from .dirty import mark_holders
from .market_data import MarketDataError, _positive_decimal, exchange_date
from .models import DailyClose

ROW_FIELDS = ("symbol", "date", "close")
#: kinds that are an underlying (options, perpetuals and LP positions move with theirs)
HISTORY_KINDS = frozenset({Instrument.Kind.STOCK, Instrument.Kind.ETF, Instrument.Kind.INDEX,
                           Instrument.Kind.FUTURE, Instrument.Kind.CRYPTO})
# The close column is DecimalField(max_digits=24, decimal_places=8): 16 integer digits.
CLOSE_PLACES = Decimal("0.00000001")
CLOSE_LIMIT = Decimal(10) ** 16
BATCH = 2000
SYNTHETIC_FLAG = "history_source: synthetic"


# --------------------------------------------------------------------------- loading


def _close_date(value: Any, field_name: str, today: date,
                errors: list[dict[str, str]]) -> date | None:
    if isinstance(value, datetime):
        # A moment is not a trading day: whose date it falls on depends on a zone.
        errors.append({"field": field_name, "code": "invalid",
                       "message": f"{value.isoformat()} is a date and time: give the close's "
                                  "trading day (YYYY-MM-DD)"})
        return None
    if isinstance(value, date):
        day = value
    else:
        try:
            day = date.fromisoformat(str(value).strip())
        except ValueError:
            errors.append({"field": field_name, "code": "invalid",
                           "message": f"{value!r} is not an ISO date (YYYY-MM-DD)"})
            return None
    if day > today:
        errors.append({"field": field_name, "code": "future",
                       "message": f"{day.isoformat()} is in the future (today is {today})"})
        return None
    return day


def _close(value: Any, field_name: str, errors: list[dict[str, str]]) -> Decimal | None:
    number = _positive_decimal(value, field_name, errors)
    if number is None:
        return None
    if number >= CLOSE_LIMIT:
        errors.append({"field": field_name, "code": "too_large",
                       "message": f"{value} does not fit a close (below 10^16)"})
        return None
    return number.quantize(CLOSE_PLACES)


def _underlying(instruments: dict[str, Instrument], value: Any, field_name: str,
                errors: list[dict[str, str]]) -> Instrument | None:
    instrument = instruments.get(str(value or "").strip())
    if instrument is None:
        errors.append({"field": field_name, "code": "unknown_symbol",
                       "message": f"unknown symbol {value!r}"})
        return None
    if instrument.kind not in HISTORY_KINDS:
        errors.append({"field": field_name, "code": "not_an_underlying",
                       "message": f"{instrument.symbol} is a {instrument.get_kind_display()}: "
                                  "history is kept for underlyings (stock, ETF, index, future, "
                                  "crypto)"})
        return None
    return instrument


def _validated_rows(rows: list[dict[str, Any]], source: str
                    ) -> list[tuple[Instrument, date, Decimal]]:
    """Every row checked, all problems collected and raised together (nothing is stored)."""
    errors: list[dict[str, str]] = []
    if source not in DailyClose.Source.values:
        errors.append({"field": "source", "code": "invalid",
                       "message": f"unknown source {source!r}; one of "
                                  f"{', '.join(DailyClose.Source.values)}"})
    if not rows:
        errors.append({"field": "rows", "code": "empty", "message": "no closes"})
    instruments = {i.symbol: i for i in Instrument.cross_firm.for_compliance(
        reason="market history is shared reference data").filter(
            symbol__in={str(row.get("symbol", "")).strip() for row in rows}, firm__isnull=True)}
    today = exchange_date()
    seen: dict[tuple[str, date], int] = {}
    valid = []
    for index, row in enumerate(rows):
        at = f"rows[{index}]"
        unknown = set(row) - set(ROW_FIELDS)
        if unknown:
            errors.append({"field": at, "code": "unknown_field",
                           "message": f"unknown fields {sorted(unknown)}"})
        symbol = str(row.get("symbol", "")).strip()
        instrument = _underlying(instruments, row.get("symbol"), f"{at}.symbol", errors)
        day = _close_date(row.get("date"), f"{at}.date", today, errors)
        close = _close(row.get("close"), f"{at}.close", errors)
        if day is not None and symbol:
            first = seen.setdefault((symbol, day), index)
            if first != index:
                errors.append({"field": f"{at}.date", "code": "duplicate",
                               "message": f"{symbol} {day.isoformat()} is already in "
                                          f"rows[{first}]"})
                continue
        if instrument is not None and day is not None and close is not None:
            valid.append((instrument, day, close))
    if errors:
        raise MarketDataError(errors)
    return valid


def _replaced(prepared: list[DailyClose], source: str) -> int:
    """How many of the load's days already hold a close; refuses a synthetic close over a
    real one (demo data must never overwrite market history)."""
    ids = {c.instrument_id for c in prepared}
    days = [c.date for c in prepared]
    stored = dict(((i, d), s) for i, d, s in DailyClose.objects.filter(
        instrument_id__in=ids, date__range=(min(days), max(days))).values_list(
            "instrument_id", "date", "source"))
    errors = []
    replaced = 0
    for index, row in enumerate(prepared):
        existing = stored.get((row.instrument_id, row.date))
        if existing is None:
            continue
        replaced += 1
        if source == DailyClose.Source.SYNTHETIC and existing != DailyClose.Source.SYNTHETIC:
            errors.append({"field": f"rows[{index}].date", "code": "would_replace_real",
                           "message": f"{row.instrument.symbol} {row.date.isoformat()} holds a "
                                      f"{existing} close: a synthetic close never replaces it"})
    if errors:
        raise MarketDataError(errors)
    return replaced


def load_daily_closes(*, rows: Iterable[dict[str, Any]], source: str, actor) -> int:
    """Store daily closes ``[{"symbol", "date", "close"}]``, all or nothing; the count stored.

    One audit event (``history.loaded``, platform chain) per load; the accounts holding the
    instruments are marked dirty once the load commits.
    """
    now = timezone.now()
    prepared = [DailyClose(instrument=instrument, date=day, close=close, source=source,
                           loaded_at=now)
                for instrument, day, close in _validated_rows(list(rows), source)]
    with transaction.atomic():
        replaced = _replaced(prepared, source)
        DailyClose.objects.bulk_create(
            prepared, batch_size=BATCH, update_conflicts=True,
            unique_fields=["instrument", "date"], update_fields=["close", "source", "loaded_at"])
        audit.record(firm=None, actor=actor, event_type="history.loaded",
                     object_type="margin.dailyclose", object_id=len(prepared),
                     after={"source": source, "count": len(prepared), "replaced": replaced,
                            "symbols": sorted({c.instrument.symbol for c in prepared}),
                            "first_date": min(c.date for c in prepared),
                            "last_date": max(c.date for c in prepared)})
        # Holders are marked dirty in the same transaction (DESIGN.md path 1), as for prices.
        mark_holders(c.instrument_id for c in prepared)
    return len(prepared)


def load_synthetic_demo_history(*, actor=None) -> int:
    """Load the shipped SYNTHETIC closes (``engine/data/history``) for the demo's instruments,
    with source ``synthetic`` so every snapshot whose VaR uses them says so. Symbols of the
    file that the demo does not list are left out; the count stored."""
    from margin.engine.history import SYNTHETIC_CSV, load_closes_csv

    synthetic = load_closes_csv(SYNTHETIC_CSV)
    listed = set(Instrument.cross_firm.for_compliance(
        reason="the demo's market history is shared reference data").filter(
            symbol__in=synthetic.symbols, firm__isnull=True, kind__in=HISTORY_KINDS)
        .values_list("symbol", flat=True))
    rows = [{"symbol": symbol, "date": day, "close": repr(float(synthetic.closes[symbol][k]))}
            for symbol in synthetic.symbols if symbol in listed
            for k, day in enumerate(synthetic.dates)]
    if not rows:
        return 0
    return load_daily_closes(rows=rows, source=DailyClose.Source.SYNTHETIC, actor=actor)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SymbolCloses:
    """One underlying's stored closes up to the valuation date, oldest first."""

    dates: tuple[date, ...]
    closes: tuple[float, ...]
    synthetic: frozenset[date] = frozenset()

    @property
    def returns(self) -> int:
        return max(len(self.dates) - 1, 0)


@dataclass(frozen=True)
class AccountHistory:
    """What an account's VaR may use: ``history`` in the engine's shape (None: VaR is
    unavailable) and the flags its snapshot carries about it."""

    history: dict[str, tuple[float, ...]] | None
    flags: tuple[str, ...] = ()
    #: the first and last date of the window (what a snapshot records to be recomputed)
    window: tuple[date, date] | None = None


@dataclass
class ChunkHistory:
    """The stored closes of a chunk's underlyings; ``for_symbols`` cuts one account's window.

    Series with more stored closes than one window were read from ``read_from`` on only
    (``truncated``: symbol -> instrument id). When their common dates fall short there, because
    the underlyings keep different holidays, their older closes are read once (one query per
    such set of symbols), so a window is never short of closes the table holds.
    """

    series: dict[str, SymbolCloses]
    returns_needed: int
    read_from: date | None = None
    truncated: dict[str, int] = field(default_factory=dict)
    _cut: dict[tuple[str, ...], AccountHistory] = field(default_factory=dict)

    def for_symbols(self, symbols: Iterable[str]) -> AccountHistory:
        key = tuple(sorted(set(symbols)))
        if key not in self._cut:  # accounts of a chunk often hold the same underlyings
            self._cut[key] = self._window(key)
        return self._cut[key]

    def _window(self, symbols: tuple[str, ...]) -> AccountHistory:
        if not symbols:
            return AccountHistory(None)
        needed = self.returns_needed
        empty = SymbolCloses((), ())
        short = tuple(
            f"history_short: {s} has {self.series.get(s, empty).returns} of the {needed} "
            "returns needed" for s in symbols if self.series.get(s, empty).returns < needed)
        if short:
            return AccountHistory(None, short)
        common = set(self.series[symbols[0]].dates)
        for s in symbols[1:]:
            common &= set(self.series[s].dates)
        days = sorted(common)[-(needed + 1):]
        if len(days) < needed + 1:
            if self._read_earlier(symbols):
                return self._window(symbols)
            return AccountHistory(None, (
                f"history_short: {', '.join(symbols)} share {max(len(days) - 1, 0)} of the "
                f"{needed} returns needed (closes on the same dates)",))
        history: dict[str, tuple[float, ...]] = {}
        synthetic = False
        for s in symbols:
            series = self.series[s]
            at = {d: k for k, d in enumerate(series.dates)}
            history[s] = tuple(series.closes[at[d]] for d in days)
            synthetic = synthetic or any(d in series.synthetic for d in days)
        return AccountHistory(history, (SYNTHETIC_FLAG,) if synthetic else (),
                              (days[0], days[-1]))


    def _read_earlier(self, symbols: tuple[str, ...]) -> bool:
        """Prepend the closes before ``read_from`` of the truncated series among ``symbols``;
        False when none of them was truncated (the table holds no more)."""
        ids = {self.truncated.pop(s): s for s in symbols if s in self.truncated}
        if not ids:
            return False
        earlier = _closes_by_instrument(
            DailyClose.objects.filter(instrument_id__in=ids, date__lt=self.read_from), ids)
        for instrument_id, (dates, values, synthetic) in earlier.items():
            symbol = ids[instrument_id]
            later = self.series[symbol]
            self.series[symbol] = SymbolCloses(
                (*dates, *later.dates), (*values, *later.closes),
                later.synthetic | frozenset(synthetic))
        return True


def closes_digest(history: Mapping[str, Sequence[float]]) -> str:
    """sha256 of an account's VaR window (symbol and closes, as the engine received them): what
    a snapshot records of its history, so a close replaced afterwards is named as the cause."""
    document = [[symbol, [repr(float(c)) for c in history[symbol]]] for symbol in sorted(history)]
    return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()


def _closes_by_instrument(closes, instrument_ids: Iterable[int]
                          ) -> dict[int, tuple[list[date], list[float], set[date]]]:
    """Each instrument's closes of the queryset ``closes``, oldest first, with the synthetic
    days apart."""
    collected: dict[int, tuple[list[date], list[float], set[date]]] = {
        i: ([], [], set()) for i in instrument_ids}
    for instrument_id, day, close, source in closes.order_by("instrument_id", "date").values_list(
            "instrument_id", "date", "close", "source"):
        dates, values, synthetic = collected[instrument_id]
        dates.append(day)
        values.append(float(close))
        if source == DailyClose.Source.SYNTHETIC:
            synthetic.add(day)
    return collected


def read_history(instruments: Sequence[Instrument], *, on: date,
                 returns_needed: int) -> ChunkHistory:
    """The closes up to ``on`` of ``instruments`` (a chunk's underlyings), in two queries.

    The first finds, per instrument, the date of its ``returns_needed + 1``-th newest close;
    the second reads every instrument's closes from the earliest of those dates on, and all
    closes of instruments with fewer. That is enough for a window unless the underlyings keep
    different holidays; then ``for_symbols`` reads the earlier closes it needs.
    """
    by_id = {i.pk: i for i in instruments}
    closes_needed = returns_needed + 1
    starts = dict(DailyClose.objects.filter(instrument_id__in=by_id, date__lte=on).annotate(
        newest=Window(RowNumber(), partition_by=[F("instrument_id")],
                      order_by=F("date").desc())).filter(newest=closes_needed)
        .values_list("instrument_id", "date"))
    wanted = Q(instrument_id__in=[i for i in by_id if i not in starts])
    read_from = min(starts.values()) if starts else None
    if starts:
        wanted |= Q(instrument_id__in=list(starts), date__gte=read_from)
    collected = _closes_by_instrument(DailyClose.objects.filter(wanted, date__lte=on), by_id)
    return ChunkHistory(
        {by_id[i].symbol: SymbolCloses(tuple(d), tuple(v), frozenset(s))
         for i, (d, v, s) in collected.items()}, returns_needed, read_from=read_from,
        truncated={by_id[i].symbol: i for i in starts})
