"""Deciding which valuations of a chunk are kept as history, and storing them.

A chunk's accounts are valued by ``margin.valuing`` (the engine's batch path, the calculator
for what it does not cover); ``history_reason`` decides which valuations become append-only
history snapshots, stored in one bulk insert with one audit event per chunk (count and digest
of their content hashes). One snapshot per account and input state: the inputs hash makes a
redelivered chunk write nothing twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from enum import StrEnum
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction

from accounts.models import Account
from brokerage import audit
from brokerage.id_sets import id_set, text_set

from .calls.deficits import Collateral
from .calls.hooks import ChunkCalls, chunk_calls
from .copy_rows import column_text, copy_text
from .figures import END_OF_DAY, json_text
from .models import AccountMargin, MarginSnapshot, MarketState
from .signals import snapshots_written
from .valuing import record_chunk, value_accounts


@dataclass(frozen=True)
class SnapshotOutcome:
    """One account of a chunk: valued (its numbers; ``snapshot`` the history snapshot of this
    valuation when one was kept, else None) or flagged (not valued, ``flag`` says why)."""

    account_id: int
    snapshot: MarginSnapshot | None
    flag: str = ""
    equity: Decimal | None = None
    requirement: Decimal | None = None
    excess: Decimal | None = None
    risk_arrays: dict = field(default_factory=dict)
    health_factor: Decimal | None = None

    @property
    def valued(self) -> bool:
        return self.equity is not None


class History(StrEnum):
    """Which valued accounts get a history snapshot (DESIGN.md "Scale")."""

    #: the sweep's default: only where a decision rests on the change (``history_reason``)
    INTRADAY = "intraday"
    #: the end-of-day run: every account
    END_OF_DAY = END_OF_DAY
    #: someone asked (recompute_accounts, a direct recompute_firm, the demo seed, tests)
    FORCED = "forced"


@dataclass(frozen=True)
class Previous:
    """What an intraday decision compares a new valuation with: the account's current row
    (the latest valuation, snapshot or not) and the requirement of its latest snapshot (so a
    slow drift adds up to a move instead of each step hiding under the threshold)."""

    excess: Decimal | None
    snapshot_id: int | None
    snapshot_requirement: Decimal | None


def history_reason(*, history: History, valuation: MarginSnapshot,
                   previous: Previous | None, calls: ChunkCalls | None = None) -> str:
    """Why this valuation is kept as history, or "" when it only updates the current row.

    The one decision point. A call opening shows as the excess changing sign and is issued at
    the close (kept anyway); a call a recovery would meet is kept here (``margin_call``),
    before the threshold test (``margin.calls.hooks``).
    """
    if history != History.INTRADAY:
        return str(history)
    if previous is None or previous.snapshot_id is None:
        return "first"
    if previous.excess is not None and (previous.excess < 0) != (valuation.excess < 0):
        return "excess_sign"
    if calls is not None and calls.would_meet(valuation):
        return "margin_call"
    if _requirement_moved(previous.snapshot_requirement, valuation.requirement):
        return "requirement_move"
    return ""


def _requirement_moved(before: Decimal | None, after: Decimal) -> bool:
    """More than MARGIN_SNAPSHOT_REQUIREMENT_MOVE relative, and at least the absolute floor
    (a few dollars on a tiny requirement is not a decision)."""
    if before is None:
        return True
    move = abs(after - before)
    relative = Decimal(str(settings.MARGIN_SNAPSHOT_REQUIREMENT_MOVE))
    floor = Decimal(str(settings.MARGIN_SNAPSHOT_REQUIREMENT_FLOOR))
    return move > relative * abs(before) and move >= floor


def _previous(account_ids: list[int]) -> dict[int, Previous]:
    """The chunk's current rows and their snapshots' requirement, in one query."""
    rows = AccountMargin.objects.filter(account_id__in=id_set(account_ids)).values_list(
        "account_id", "excess", "snapshot_id", "snapshot__requirement")
    return {account: Previous(excess, snapshot, requirement)
            for account, excess, snapshot, requirement in rows}


def compute_snapshots(*, accounts: Sequence[Account], actor=None,
                      history: History = History.FORCED,
                      end_of_day: frozenset[int] = frozenset()) -> list[SnapshotOutcome]:
    """Value each account and store the history snapshots ``history`` calls for (one bulk
    insert and one audit event for the chunk); the accounts in ``end_of_day`` are kept as
    history whatever ``history`` says. Accounts with bad inputs keep their last good
    snapshot and are reported with a flag (never valued at a missing or bad price)."""
    if not accounts:
        return []
    firm = accounts[0].firm
    day_record = frozenset(a.pk for a in accounts) if history == History.END_OF_DAY \
        else end_of_day
    flagged, valuations = value_accounts(accounts, end_of_day=day_record)
    outcomes = [SnapshotOutcome(f.account_id, None, f.flag) for f in flagged]
    previous = _previous([v.account_id for v in valuations]) \
        if history == History.INTRADAY else {}
    calls = chunk_calls(firm, [v.account_id for v in valuations],
                        collateral=_collateral(valuations)) \
        if history == History.INTRADAY else None
    for valuation in valuations:
        mode = History.END_OF_DAY if valuation.account_id in end_of_day else history
        valuation.reason = history_reason(history=mode, valuation=valuation,
                                          previous=previous.get(valuation.account_id),
                                          calls=calls)
    # What the kept ones valued, recorded and hashed once their reason is known (the day's
    # record hashes apart: its own row)
    stored = store_history(firm=firm, snapshots=record_chunk([v for v in valuations
                                                              if v.reason]), actor=actor)
    for valuation in valuations:
        outcomes.append(SnapshotOutcome(
            valuation.account_id, stored.get(valuation.account_id),
            equity=valuation.equity, requirement=valuation.requirement,
            excess=valuation.excess, risk_arrays=valuation.risk_arrays,
            health_factor=valuation.health_factor))
    outcomes.sort(key=lambda o: o.account_id)
    valued = [o.account_id for o in outcomes if o.valued]
    if valued:
        # Every valued account, snapshot or not: margin calls judge the chunk (a call may rest
        # on equity that moved without a history snapshot); those valued for a close are named.
        closing = [a for a in valued if a in end_of_day or history == History.END_OF_DAY]
        snapshots_written.send(MarginSnapshot, firm=firm, account_ids=valued,
                               end_of_day=closing,
                               collateral=_collateral(valuations, stored=stored))
    return outcomes


def _collateral(valuations: Sequence[MarginSnapshot], stored: dict | None = None
                ) -> dict[int, Collateral]:
    """The chunk's valuations with a health factor (crypto or LP collateral against a debt),
    as the collateral-call rules read them: no query (``margin.calls.deficits``)."""
    return {v.account_id: Collateral(
        v.health_factor, getattr(v, "collateral_debt", None) or Decimal("0.00"), v.equity,
        v.cash, stored[v.account_id].pk if stored and v.account_id in stored else None)
        for v in valuations if v.health_factor is not None}


def store_history(*, firm, snapshots: list[MarginSnapshot], actor=None
                  ) -> dict[int, MarginSnapshot]:
    """Insert the chunk's new history snapshots in one statement with one audit event (count
    and digest of their content hashes), in one transaction. A snapshot of inputs already
    stored (a redelivered chunk) is not written again: the stored one is returned."""
    if not snapshots:
        return {}
    wanted = {(s.account_id, s.inputs_hash) for s in snapshots}
    existing: dict[int, MarginSnapshot] = {}
    for attempt in range(3):
        if attempt:
            # Inserted whole first: a chunk's snapshots are new but for a redelivered or
            # repeated one, which the unique inputs refuse (looking first cost every chunk an
            # index probe per account). Then what is stored already is read and left out.
            existing = {s.account_id: s for s in MarginSnapshot.objects.filter(
                account_id__in=id_set(s.account_id for s in snapshots),
                inputs_hash__in=text_set(s.inputs_hash for s in snapshots))
                if (s.account_id, s.inputs_hash) in wanted}
        new = [s for s in snapshots if s.account_id not in existing]
        try:
            with transaction.atomic():
                if new:
                    _store_market_states(new)
                    for snapshot, hashed in zip(new, content_hashes(new), strict=True):
                        snapshot.content_hash = hashed
                    _insert(new)
                    audit.record(firm=firm, actor=actor, event_type=CHUNK_EVENT,
                                 object_type="margin.marginsnapshot", object_id=new[0].pk,
                                 after=chunk_summary(new))
            break
        except IntegrityError:
            # Some are stored already (a redelivered chunk), or a duplicate chunk inserted
            # them meanwhile: read them back, once more at most.
            if attempt == 2:
                raise
            field = MarginSnapshot._meta.get_field("market_state")
            for snapshot in new:
                snapshot.pk = None  # ids drawn for the refused insert
                state = field.get_cached_value(snapshot, None)
                if state is not None:  # its row went with the refused insert's transaction
                    state.pk, state._state.adding = None, True
    return {**existing, **{s.account_id: s for s in new}}


def _store_market_states(snapshots: list[MarginSnapshot]) -> None:
    """Store the market states the snapshots were recorded with (``record_chunk``: one per
    chunk) unless stored already (found by digest: a chunk valued at the same rows, or this
    one redelivered), and point each snapshot at its row, before their content is hashed."""
    field = MarginSnapshot._meta.get_field("market_state")
    states = {id(state): state for s in snapshots
              if (state := field.get_cached_value(s, None)) is not None and state.pk is None}
    if not states:
        return
    MarketState.objects.bulk_create(list(states.values()), ignore_conflicts=True)
    ids = dict(MarketState.objects.filter(digest__in=[s.digest for s in states.values()])
               .values_list("digest", "pk"))
    for state in states.values():
        state.pk = ids[state.digest]
        state._state.adding = False
    for snapshot in snapshots:
        state = field.get_cached_value(snapshot, None)
        if state is not None:
            snapshot.market_state_id = state.pk  # (which drops the cached instance)
            field.set_cached_value(snapshot, state)


def _insert(snapshots: list[MarginSnapshot]) -> None:
    """Insert the chunk's snapshots: on PostgreSQL with COPY, their ids drawn from the table's
    sequence first (a 2,000-row INSERT of some 70,000 parameters spent more time having its
    parameters placed than the engine spent valuing the chunk), the rows written as COPY text a
    column at a time (``margin.copy_rows``), the JSON ``new_snapshot`` wrote as it is;
    elsewhere ``bulk_create``."""
    if connection.vendor != "postgresql":
        MarginSnapshot.objects.bulk_create(snapshots)
        return
    meta = MarginSnapshot._meta
    quote = connection.ops.quote_name
    fields = meta.concrete_fields
    with connection.wrap_database_errors:  # a unique violation is Django's IntegrityError
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) "
                           "FROM generate_series(1, %s)", [meta.db_table, len(snapshots)])
            for snapshot, (pk,) in zip(snapshots, cursor.fetchall(), strict=True):
                snapshot.pk = pk
            rows = copy_text([column_text(
                f, list(map(attrgetter(f.attname), snapshots)), connection,
                [json_text(s, f.attname) for s in snapshots]
                if isinstance(f, models.JSONField) else None) for f in fields])
            columns = ", ".join(quote(f.column) for f in fields)
            with cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
                copy.write(rows)
    for snapshot in snapshots:
        snapshot._state.adding, snapshot._state.db = False, connection.alias


def latest_snapshot(account: Account) -> MarginSnapshot | None:
    return MarginSnapshot.objects.filter(account=account).order_by("-computed_at", "-id").first()


# -- content hashes and the chunk's audit event --------------------------------------------------

#: one audit event per stored chunk of history snapshots (count and digest)
CHUNK_EVENT = "margin.snapshot_chunk"
#: what a content hash leaves out: the row id (assigned by the insert) and the hash itself
_UNHASHED = {"id", "content_hash"}


def content_hash(snapshot: MarginSnapshot) -> str:
    """sha256 of a snapshot's stored fields (recorded inputs included), normalised so the row
    read back from PostgreSQL or SQLite hashes as the instance did before its insert: the
    JSON text of ``{field: normalised value}``, keys sorted (``json.dumps(sort_keys=True)``);
    a field's normalisation is ``_normaliser``'s (None stays None)."""
    return content_hashes([snapshot])[0]


def content_hashes(snapshots: Sequence[MarginSnapshot]) -> list[str]:
    """``content_hash`` of each snapshot, its document's text written from each field's own
    JSON text (a value nested in a document is written as it is alone, ``, `` and ``: ``
    between items, keys sorted), a field at a time for the lot: one normalisation per value
    where the same object stands in every row (the chunk's time, firm, engine, parameters),
    and the JSON ``new_snapshot`` wrote of a plain field used as it is (``json_text``: a
    plain value normalises to itself)."""
    if not snapshots:
        return []
    document, fields = _hashed_document()
    columns = [[json_text(s, name) or text(value)
                for s, value in zip(snapshots, values, strict=True)]
               if kind == "json" else _each(values, text)
               for name, kind, text in fields
               for values in (list(map(attrgetter(name), snapshots)),)]
    hashes = [hashlib.sha256((document % row).encode()).hexdigest()
              for row in zip(*columns, strict=True)]
    # A field added since (``_HASHED_WHEN_SET``) is in the document only where set: the rows
    # written before it hash as they did.
    without, kept = _hashed_document(without=True)
    unset = [k for k, s in enumerate(snapshots)
             if any(getattr(s, name) is None for name in _HASHED_WHEN_SET)]
    if unset:
        at = [k for k, (name, _, _) in enumerate(fields) if name in kept]
        for k in unset:
            row = tuple(columns[c][k] for c in at)
            hashes[k] = hashlib.sha256((without % row).encode()).hexdigest()
    return hashes


def _each(values: list[Any], text: Any) -> list[str]:
    """``text`` of each value, once per run of the same object."""
    texts: list[str] = []
    last, written = _UNSET, ""
    for value in values:
        if value is not last:
            last, written = value, text(value)
        texts.append(written)
    return texts


_UNSET = object()


#: fields added to the snapshot after rows were hashed: in a row's document only where set
_HASHED_WHEN_SET = frozenset({"market_state_id"})


@functools.cache
def _hashed_document(without: bool = False) -> tuple[str, Any]:
    """The content hash's document with its values' places (keys sorted), and each hashed
    field in that order: its name, kind and how a value becomes its normalised JSON text.
    ``without``: the document of a row whose ``_HASHED_WHEN_SET`` fields are unset, and the
    names of the fields it holds."""
    fields = sorted(_hashed_fields())
    if without:
        names = tuple(name for name, _ in fields if name not in _HASHED_WHEN_SET)
        return "{" + ", ".join(f"{_json(name)}: %s" for name in names) + "}", frozenset(names)
    document = "{" + ", ".join(f"{_json(name)}: %s" for name, _ in fields) + "}"
    return document, tuple((name, "json" if normalise is _json_numbers else "value",
                            _json_of(normalise, quoted=name in _QUOTED))
                           for name, normalise in fields)


#: a normalised value's JSON text, as ``json.dumps(document, sort_keys=True)`` nests it
_json = json.JSONEncoder(sort_keys=True).encode


def _json_of(normalise: Any, *, quoted: bool) -> Any:
    if quoted:  # text JSON writes as it is: digits, signs, points, ISO dates and times
        return lambda value: "null" if value is None else '"' + normalise(value) + '"'
    return lambda value: "null" if value is None else _json(normalise(value))


#: the fields normalised to text that JSON writes as it is, quoted (``_normaliser``)
_QUOTED = frozenset(f.attname for f in MarginSnapshot._meta.concrete_fields
                    if isinstance(f, models.DecimalField | models.DateField))


@functools.cache
def _hashed_fields() -> tuple[tuple[str, Any], ...]:
    """Each hashed field's name and how its value is normalised (``_normaliser``: chosen once
    per field rather than per snapshot and field)."""
    return tuple((field.attname, _normaliser(field))
                 for field in MarginSnapshot._meta.concrete_fields
                 if field.attname not in _UNHASHED)


def _normaliser(field) -> Any:
    """How a field's (not None) value is normalised: money and ratios to their places as text,
    times in UTC, dates and times as ISO text, JSON as either database returns it."""
    if isinstance(field, models.DecimalField):
        places = Decimal(1).scaleb(-field.decimal_places)
        # Decimal(str(d)) is d itself: a Decimal is quantized as it is
        return lambda value: str((value if type(value) is Decimal else Decimal(str(value)))
                                 .quantize(places))
    if isinstance(field, models.DateTimeField):
        return lambda value: value.astimezone(UTC).isoformat()
    if isinstance(field, models.DateField):
        return lambda value: value.isoformat()
    if isinstance(field, models.JSONField):
        return _json_numbers
    return lambda value: value


#: what ``_json_numbers`` returns as it is (the types a snapshot's JSON holds most)
_AS_IS = frozenset({str, int, bool, type(None)})


def _json_numbers(value: Any) -> Any:
    """JSON as either database returns it: jsonb keeps numbers as numeric, so 1e20 comes back
    as an integer and -0.0 as 0; integral floats are taken as integers on both sides."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, dict):
        return {str(k): _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def chunk_digest(hashes: Sequence[str]) -> str:
    """sha256 over the chunk's content hashes, in the order stored."""
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def chunk_summary(snapshots: Sequence[MarginSnapshot]) -> dict[str, Any]:
    """The chunk's audit event body: how many, which (ids in order), and their digest."""
    return {"count": len(snapshots), "snapshots": [s.pk for s in snapshots],
            "digest": chunk_digest([s.content_hash for s in snapshots])}


def verify_chunk(event) -> str | None:
    """The audit verifier's check of one chunk event (registered in MarginConfig.ready): each
    snapshot it names still hashes to what was stored, and together to the event's digest.
    Returns why not, or None."""
    after = event.after or {}
    ids = list(after.get("snapshots", []))
    if after.get("count") != len(ids):
        return "snapshot chunk: count does not match the snapshots named"
    rows = MarginSnapshot.cross_firm.for_compliance(
        reason="the audit verifier checks stored snapshots against their chunk digests",
    ).in_bulk(ids)
    missing = [pk for pk in ids if pk not in rows]
    if missing:
        return f"snapshot chunk: snapshot {missing[0]} is missing"
    hashes = content_hashes([rows[pk] for pk in ids])
    for pk, recomputed in zip(ids, hashes, strict=True):
        if recomputed != rows[pk].content_hash:
            return f"snapshot {pk} does not match its content hash (altered)"
    if chunk_digest(hashes) != after.get("digest"):
        return "snapshot chunk: the snapshots do not match the event's digest"
    return None
