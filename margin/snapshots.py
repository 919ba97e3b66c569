"""Computing and storing margin snapshots for accounts of the book.

A chunk of accounts is loaded in a few queries (positions, latest prices, vols), each account's
book goes through the same engine code as the calculator, and one snapshot per account and
input state is written (the inputs hash makes a redelivered task write nothing twice).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from accounts.models import Account
from accounts.services import cash_balances
from brokerage import audit
from margin.engine import ENGINE_VERSION
from margin.engine.errors import EngineInputError
from margin.engine.parameters import ParameterSet, load_parameter_set

from .book import (
    MissingMarketData,
    build_portfolio,
    current_rate_row,
    history_instruments,
    load_positions,
    market_observations_for,
    price_history,
    rate_value,
    vol_values,
)
from .calls.hooks import ChunkCalls, chunk_calls
from .equity import from_engine
from .market_data import exchange_date, outstanding_rejections
from .market_history import AccountHistory, closes_digest
from .models import (
    AccountMargin,
    ImpliedVolatility,
    MarginSnapshot,
    PriceObservation,
    RiskFreeRate,
    RiskParameterSet,
)
from .risk_arrays import pack_result
from .signals import snapshots_written

CENT = Decimal("0.01")


def money(value) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


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

    @property
    def valued(self) -> bool:
        return self.equity is not None


def parameters_for(firm) -> tuple[ParameterSet, str]:
    """The firm's active parameter set (or the platform default) and its label."""
    return parameters_of(active_parameter_row(firm))


def active_parameter_row(firm) -> RiskParameterSet | None:
    """The firm's active parameter-set version (None: the platform default applies)."""
    return RiskParameterSet.objects.filter(
        firm=firm, status=RiskParameterSet.Status.ACTIVE).order_by("-version").first()


def parameters_of(row: RiskParameterSet | None, default: str | None = None
                  ) -> tuple[ParameterSet, str]:
    """A version's parameter set and label; without one, the platform set ``default``
    (the current platform default when not named)."""
    if row is None:
        params = load_parameter_set(default) if default else load_parameter_set()
        return params, params.name
    return load_parameter_set(row.base).with_overrides(row.overrides), row.label


def var_window(params: ParameterSet) -> int:
    """Daily returns a snapshot's historical VaR needs per underlying: the parameter set's
    window (METHODOLOGY.md section 5: 500 by default), never fewer than the engine accepts."""
    return max(params.var.window, params.var.min_history - 1)


def _requirement(margin_type: str, result: dict) -> Decimal:
    """The requirement that applies to the account's margin type (what its equity must cover)."""
    pm, reg_t = result.get("portfolio_margin"), result.get("reg_t")
    if margin_type == Account.MarginType.PORTFOLIO_MARGIN and pm:
        return money(pm["requirement"])
    if margin_type == Account.MarginType.REG_T and reg_t:
        return money(reg_t["maintenance"])
    if margin_type == Account.MarginType.CASH and reg_t:
        return money(reg_t["initial"])  # a cash account pays in full
    return Decimal("0.00")


def snapshot_figures(*, margin_type: str, cash: Decimal, result: dict) -> dict[str, Any]:
    """A snapshot's money fields from the calculator's response, rounded once, here (what
    ``compute_snapshots`` stores and ``margin.reproduce`` compares to the cent)."""
    # The one definition of equity (margin.equity), which eligibility reads too.
    value = from_engine(cash=cash, net_liquidation_value=result["net_liquidation_value"])
    requirement = _requirement(margin_type, result)
    pm, reg_t, collateral = (result.get("portfolio_margin"), result.get("reg_t"),
                             result.get("collateral"))
    return {
        "net_liquidation_value": value.net_liquidation_value, "equity": value.equity,
        "pm_requirement": money(pm["requirement"]) if pm else None,
        "house_requirement": money(pm["house_requirement"]) if pm else None,
        "regt_initial": money(reg_t["initial"]) if reg_t else None,
        "regt_maintenance": money(reg_t["maintenance"]) if reg_t else None,
        "collateral_effective_value": money(collateral["effective_value"]) if collateral else None,
        "requirement": requirement, "excess": value.equity - requirement,
        "add_ons": add_ons(result),
    }


def add_ons(result: dict) -> dict[str, str]:
    """The house add-ons over the regulatory requirement and the minimum charge, to the cent
    (text, so the JSON keeps them exact)."""
    pm = result.get("portfolio_margin")
    if not pm:
        return {}
    charges = {**pm.get("house_components", {}), "minimum_charge": pm.get("minimum_charge")}
    return {name: str(money(amount)) for name, amount in charges.items() if amount is not None}


def recorded_inputs(*, positions, valuation_date, prices: dict[int, PriceObservation],
                    vols: dict[int, ImpliedVolatility], rate: RiskFreeRate | None,
                    parameter_row: RiskParameterSet | None, returns_needed: int | None,
                    history: AccountHistory | None) -> dict[str, Any]:
    """What a snapshot records of its inputs, by reference (``margin.reproduce`` reads them):
    the positions themselves (they keep no history), the ids of the market rows the account's
    instruments were valued at, the rate row, the parameter version and the VaR window."""
    used = {i for p in positions for i in _instrument_ids(p)}
    window = None
    if returns_needed is not None:
        held = history or AccountHistory(None)
        window = {"returns": returns_needed, "flags": list(held.flags),
                  "first": held.window[0].isoformat() if held.window else None,
                  "last": held.window[1].isoformat() if held.window else None,
                  "digest": closes_digest(held.history) if held.history else None}
    return {
        "valuation_date": valuation_date,
        "positions": sorted([p.instrument_id, str(p.quantity), str(p.cost_basis)]
                            for p in positions),
        # JSON keys are text: instrument ids as strings, sorted for a stable row
        "price_ids": {str(i): prices[i].pk for i in sorted(used) if i in prices},
        "vol_ids": {str(i): vols[i].pk for i in sorted(used) if i in vols},
        "rate": rate, "rate_used": rate.rate if rate else None,
        "parameter_version": parameter_row, "history": window,
    }


def inputs_hash(*, account_id: int, margin_type: str, cash: Decimal, portfolio,
                parameter_label: str, engine: str = ENGINE_VERSION) -> str:
    """What the snapshot valued, hashed: equal inputs hash equal (a redelivered task writes
    nothing twice), and a recomputation that rebuilds the same engine input hashes the same."""
    # Cash as stored (to the cent): SQLite sums a ledger to Decimal('150000'), not '150000.00'.
    document = {"account": account_id, "margin_type": margin_type, "cash": str(money(cash)),
                "parameters": parameter_label, "engine": engine,
                # The valuation time is when we looked, not what we valued: leave it out so a
                # redelivered task over the same market state hashes the same.
                "portfolio": repr(dataclasses.replace(portfolio, valuation_time=None))}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class History(StrEnum):
    """Which valued accounts get a history snapshot (DESIGN.md "Scale")."""

    #: the sweep's default: only where a decision rests on the change (``history_reason``)
    INTRADAY = "intraday"
    #: the end-of-day run: every account
    END_OF_DAY = "end_of_day"
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
    rows = AccountMargin.objects.filter(account_id__in=account_ids).values_list(
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
    outcomes, valuations = _value(accounts)
    previous = _previous([v.account_id for v in valuations]) \
        if history == History.INTRADAY else {}
    calls = chunk_calls(firm, [v.account_id for v in valuations]) \
        if history == History.INTRADAY else None
    for valuation in valuations:
        mode = History.END_OF_DAY if valuation.account_id in end_of_day else history
        valuation.reason = history_reason(history=mode, valuation=valuation,
                                          previous=previous.get(valuation.account_id),
                                          calls=calls)
    stored = store_history(firm=firm, snapshots=[v for v in valuations if v.reason],
                           actor=actor)
    for valuation in valuations:
        outcomes.append(SnapshotOutcome(
            valuation.account_id, stored.get(valuation.account_id),
            equity=valuation.equity, requirement=valuation.requirement,
            excess=valuation.excess, risk_arrays=valuation.risk_arrays))
    outcomes.sort(key=lambda o: o.account_id)
    valued = [o.account_id for o in outcomes if o.valued]
    if valued:
        # Every valued account, snapshot or not: margin calls judge the chunk (a call may rest
        # on equity that moved without a history snapshot); those valued for a close are named.
        closing = [a for a in valued if a in end_of_day or history == History.END_OF_DAY]
        snapshots_written.send(MarginSnapshot, firm=firm, account_ids=valued,
                               end_of_day=closing)
    return outcomes


def store_history(*, firm, snapshots: list[MarginSnapshot], actor=None
                  ) -> dict[int, MarginSnapshot]:
    """Insert the chunk's new history snapshots in one statement with one audit event (count
    and digest of their content hashes), in one transaction. A snapshot of inputs already
    stored (a redelivered chunk) is not written again: the stored one is returned."""
    if not snapshots:
        return {}
    wanted = {(s.account_id, s.inputs_hash) for s in snapshots}
    for attempt in range(2):
        existing = {s.account_id: s for s in MarginSnapshot.objects.filter(
            account_id__in=[s.account_id for s in snapshots],
            inputs_hash__in=[s.inputs_hash for s in snapshots])
            if (s.account_id, s.inputs_hash) in wanted}
        new = [s for s in snapshots if s.account_id not in existing]
        try:
            with transaction.atomic():
                if new:
                    for snapshot in new:
                        snapshot.content_hash = content_hash(snapshot)
                    MarginSnapshot.objects.bulk_create(new)
                    audit.record(firm=firm, actor=actor, event_type=CHUNK_EVENT,
                                 object_type="margin.marginsnapshot", object_id=new[0].pk,
                                 after=chunk_summary(new))
            break
        except IntegrityError:
            # A duplicate chunk inserted the same inputs meanwhile: read them back, once.
            if attempt:
                raise
    return {**existing, **{s.account_id: s for s in new}}


def _value(accounts: Sequence[Account]) -> tuple[list[SnapshotOutcome], list[MarginSnapshot]]:
    """Value each account: the flagged ones as outcomes, the valued ones as unsaved snapshots."""
    from margin.calculator.compute import calculate
    from margin.calculator.parse import CalculatorError

    firm = accounts[0].firm
    parameter_row = active_parameter_row(firm)
    params, parameter_label = parameters_of(parameter_row)
    positions = load_positions(accounts)
    prices, vol_rows = market_observations_for(positions)
    vols = vol_values(vol_rows)
    rejected = outstanding_rejections(prices.keys() | _held_instruments(positions))
    now = timezone.now()
    today = exchange_date()
    rate_row = current_rate_row(today)
    rate = rate_value(rate_row)
    wants_var = "var" in params.snapshots.methods
    history = price_history(positions, on=today, returns_needed=var_window(params)) \
        if wants_var else None
    balances = cash_balances(accounts)
    outcomes: list[SnapshotOutcome] = []
    valuations: list[MarginSnapshot] = []
    for account in accounts:
        cash = balances[account.pk]
        blocked = sorted({f"{r.instrument.symbol} ({r.failed_check})" for p in positions.get(account.pk, [])
                          for r in (rejected.get(i) for i in _instrument_ids(p)) if r})
        if blocked:
            # Never valued at a rejected price: the last good snapshot stands, flagged.
            outcomes.append(SnapshotOutcome(account.pk, None,
                                            f"oracle_rejected: {', '.join(blocked)}"))
            continue
        # VaR only on the account's own stored closes: short history leaves it out, flagged.
        held = None if history is None else history.for_symbols(
            i.symbol for p in positions.get(account.pk, []) for i in history_instruments(p))
        try:
            portfolio = build_portfolio(positions.get(account.pk, []), valuation_date=today,
                                        prices=prices, vols=vols, rate=rate, params=params,
                                        valuation_time=now,
                                        history=held.history if held else None)
            result = calculate(portfolio, params) if portfolio.positions else _empty(today)
        except MissingMarketData as exc:
            outcomes.append(SnapshotOutcome(account.pk, None, f"missing_price: {exc}"))
            continue
        except EngineInputError as exc:
            outcomes.append(SnapshotOutcome(account.pk, None, f"{exc.code}: {exc.message}"))
            continue
        except CalculatorError as exc:
            # The engine refused the book as priced (e.g. an option mark outside its
            # no-arbitrage bounds after its underlying moved): flagged, the chunk goes on.
            first = exc.errors[0]
            outcomes.append(SnapshotOutcome(account.pk, None, f"{first['code']}: {exc}"))
            continue
        hashed = inputs_hash(account_id=account.pk, margin_type=account.margin_type, cash=cash,
                             portfolio=portfolio, parameter_label=parameter_label)
        valuations.append(MarginSnapshot(
            firm=account.firm, account=account, computed_at=now, inputs_hash=hashed,
            engine_version=ENGINE_VERSION, parameter_set=parameter_label,
            margin_type=account.margin_type, cash=money(cash),
            **snapshot_figures(margin_type=account.margin_type, cash=cash, result=result),
            flags=list(result.get("warnings", [])) + list(held.flags if held else ()),
            result=result, risk_arrays=pack_result(result),
            **recorded_inputs(positions=positions.get(account.pk, []), valuation_date=today,
                              prices=prices, vols=vol_rows, rate=rate_row,
                              parameter_row=parameter_row, history=held,
                              returns_needed=var_window(params) if wants_var else None),
        ))
    return outcomes, valuations


def _instrument_ids(position) -> list[int]:
    instrument = position.instrument
    return [i for i in (instrument.pk, instrument.underlying_id, instrument.token0_id,
                        instrument.token1_id) if i]


def _held_instruments(positions) -> set[int]:
    return {i for rows in positions.values() for p in rows for i in _instrument_ids(p)}


def _empty(today) -> dict:
    return {"valuation_date": today.isoformat(), "net_liquidation_value": 0.0, "warnings": [],
            "positions": [], "portfolio_margin": None, "reg_t": None, "span": None,
            "var": None, "stress": None, "collateral": None}


def latest_snapshot(account: Account) -> MarginSnapshot | None:
    return MarginSnapshot.objects.filter(account=account).order_by("-computed_at", "-id").first()


# -- content hashes and the chunk's audit event --------------------------------------------------

#: one audit event per stored chunk of history snapshots (count and digest)
CHUNK_EVENT = "margin.snapshot_chunk"
#: what a content hash leaves out: the row id (assigned by the insert) and the hash itself
_UNHASHED = {"id", "content_hash"}


def content_hash(snapshot: MarginSnapshot) -> str:
    """sha256 of a snapshot's stored fields (recorded inputs included), normalised so the row
    read back from PostgreSQL or SQLite hashes as the instance did before its insert."""
    document = {field.attname: _normalised(field, getattr(snapshot, field.attname))
                for field in MarginSnapshot._meta.concrete_fields
                if field.attname not in _UNHASHED}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _normalised(field, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(field, models.DecimalField):
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-field.decimal_places)))
    if isinstance(field, models.DateTimeField):
        return value.astimezone(UTC).isoformat()
    if isinstance(field, models.DateField):
        return value.isoformat()
    if isinstance(field, models.JSONField):
        return _json_numbers(value)
    return value


def _json_numbers(value: Any) -> Any:
    """JSON as either database returns it: jsonb keeps numbers as numeric, so 1e20 comes back
    as an integer and -0.0 as 0; integral floats are taken as integers on both sides."""
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
    hashes = []
    for pk in ids:
        recomputed = content_hash(rows[pk])
        if recomputed != rows[pk].content_hash:
            return f"snapshot {pk} does not match its content hash (altered)"
        hashes.append(recomputed)
    if chunk_digest(hashes) != after.get("digest"):
        return "snapshot chunk: the snapshots do not match the event's digest"
    return None
