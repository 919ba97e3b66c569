"""A snapshot's fields from a valuation: money to the cent, the requirement of the account's
margin type, the add-ons, the inputs recorded by reference and their hash.

One definition each, shared by the sweep (``margin.valuing``), which stores them, and
``margin.reproduce``, which recomputes them from what was stored.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from accounts.models import Account
from margin.engine.parameters import ParameterSet, load_parameter_set

from .book import valued_on
from .equity import from_engine
from .market_history import AccountHistory, closes_digest
from .models import (
    ImpliedVolatility,
    MarginSnapshot,
    PriceObservation,
    RiskFreeRate,
    RiskParameterSet,
)

CENT = Decimal("0.01")
#: ``margin.snapshots.History.END_OF_DAY``: why a snapshot was kept, when it is the day's record
END_OF_DAY = "end_of_day"


def money(value) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def ratio(value) -> Decimal | None:
    """A ratio as stored (six places); None for none (no debt) or a non-finite one."""
    if value is None or not math.isfinite(float(value)):
        return None
    return Decimal(str(value)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


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
        "health_factor": ratio(collateral.get("health_factor")) if collateral else None,
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
    used = {i for p in positions for i in instrument_ids(p)}
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


def instrument_ids(position) -> tuple[int, ...]:
    """The instruments a position's value rests on: itself, its underlying, an LP's tokens
    (a sweep's ``Holding`` carries them, found once per instrument)."""
    return getattr(position, "valued_on", None) or valued_on(position.instrument)


def inputs_hash(snapshot: MarginSnapshot) -> str:
    """What the snapshot valued, by reference, hashed: the account, its margin type and cash,
    the positions as valued, the market rows (price, vol and rate ids and the rate's value),
    the VaR window, the valuation date, the parameter version, the methods and the engine.
    Equal inputs hash equal, so a redelivered chunk writes nothing twice. The valuation time
    is left out: it is when we looked, not what we valued. An end-of-day valuation hashes apart
    from an intraday one of the same inputs: the day's record is its own row even when nothing
    moved since the last intraday snapshot (FINRA 4220's daily record rests on it)."""
    history = snapshot.history
    document = {
        "end_of_day": snapshot.reason == END_OF_DAY,
        "account": snapshot.account_id, "margin_type": snapshot.margin_type,
        # Cash to the cent: SQLite sums a ledger to Decimal('150000'), not '150000.00'.
        "cash": str(money(snapshot.cash)), "parameters": snapshot.parameter_set,
        "engine": snapshot.engine_version, "methods": list(snapshot.methods),
        "valuation_date": snapshot.valuation_date.isoformat()
        if snapshot.valuation_date else None,
        "positions": snapshot.positions, "prices": snapshot.price_ids, "vols": snapshot.vol_ids,
        "rate": snapshot.rate_id,
        "rate_used": None if snapshot.rate_used is None
        else str(Decimal(str(snapshot.rate_used)).normalize()),
        "history": history,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def empty_result(today) -> dict:
    return {"valuation_date": today.isoformat(), "net_liquidation_value": 0.0, "warnings": [],
            "positions": [], "portfolio_margin": None, "reg_t": None, "span": None,
            "var": None, "stress": None, "collateral": None}


