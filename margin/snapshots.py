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
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from accounts.services import cash_balance
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
from .equity import from_engine
from .market_data import exchange_date, outstanding_rejections
from .market_history import AccountHistory, closes_digest
from .models import (
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
    account_id: int
    snapshot: MarginSnapshot | None
    flag: str = ""


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


def compute_snapshots(*, accounts: Sequence[Account], actor=None) -> list[SnapshotOutcome]:
    """Value each account and store its snapshot. Accounts with bad inputs keep their last
    good snapshot and are reported with a flag (never valued at a missing or bad price)."""
    from margin.calculator.compute import calculate
    from margin.calculator.parse import CalculatorError

    if not accounts:
        return []
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
    outcomes: list[SnapshotOutcome] = []
    for account in accounts:
        cash = cash_balance(account)
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
        snapshot = MarginSnapshot(
            firm=account.firm, account=account, computed_at=now, inputs_hash=hashed,
            engine_version=ENGINE_VERSION, parameter_set=parameter_label,
            margin_type=account.margin_type, cash=cash,
            **snapshot_figures(margin_type=account.margin_type, cash=cash, result=result),
            flags=list(result.get("warnings", [])) + list(held.flags if held else ()),
            result=result, risk_arrays=pack_result(result),
            **recorded_inputs(positions=positions.get(account.pk, []), valuation_date=today,
                              prices=prices, vols=vol_rows, rate=rate_row,
                              parameter_row=parameter_row, history=held,
                              returns_needed=var_window(params) if wants_var else None),
        )
        equity, requirement = snapshot.equity, snapshot.requirement
        try:
            with transaction.atomic():
                snapshot.save()
                audit.record(firm=account.firm, actor=actor, event_type="margin.snapshot",
                             obj=snapshot, after={"account": account.number,
                                                  "equity": equity, "requirement": requirement,
                                                  "excess": snapshot.excess})
        except IntegrityError:
            # The same inputs were already valued (a redelivered task): nothing to write.
            snapshot = MarginSnapshot.objects.get(account=account, inputs_hash=hashed)
        outcomes.append(SnapshotOutcome(account.pk, snapshot))
    written = [o.account_id for o in outcomes if o.snapshot is not None]
    if written:
        snapshots_written.send(MarginSnapshot, firm=firm, account_ids=written)
    return outcomes


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
