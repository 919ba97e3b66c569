"""A snapshot's fields from a valuation: money to the cent, the requirement of the account's
margin type, the add-ons, the inputs recorded by reference and their hash.

One definition each, shared by the sweep (``margin.valuing``), which stores them, and
``margin.reproduce``, which recomputes them from what was stored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import router
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from accounts.models import Account
from margin.engine.parameters import ParameterSet, load_parameter_set

from .book import valued_on
from .equity import from_engine
from .market_history import AccountHistory, closes_digest
from .models import (
    ImpliedVolatility,
    MarginSnapshot,
    MarketState,
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
    # the rounding passed by position: by keyword, C's Decimal parses it at twice the cost,
    # and a chunk rounds some 18,000 figures
    return Decimal(str(value)).quantize(CENT, ROUND_HALF_UP)


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
                    history: AccountHistory | None, market_state: MarketState | None = None
                    ) -> dict[str, Any]:
    """What a snapshot records of its inputs, by reference (``margin.reproduce`` reads them):
    the positions themselves (they keep no history), the ids of the market rows the account's
    instruments were valued at (or the chunk's ``market_state`` holding them: ``market_ids``),
    the rate row, the parameter version and the VaR window. The positions and ids are integers
    and text only (``new_snapshot``'s plain JSON)."""
    # one pass: what each position rests on, and the position as recorded
    used_ids: set[int] = set()
    recorded_positions = []
    for p in positions:
        ids = instrument_ids(p)
        if market_state is None:
            used_ids.update(ids)
        recorded_positions.append([ids[0], str(p.quantity), str(p.cost_basis)])
    recorded_positions.sort()
    used = sorted(used_ids)
    window = None
    if returns_needed is not None:
        held = history or AccountHistory(None)
        window = {"returns": returns_needed, "flags": list(held.flags),
                  "first": held.window[0].isoformat() if held.window else None,
                  "last": held.window[1].isoformat() if held.window else None,
                  "digest": closes_digest(held.history) if held.history else None}
    return {
        "valuation_date": valuation_date,
        "positions": recorded_positions,
        # JSON keys are text: instrument ids as strings, sorted for a stable row
        "price_ids": {str(i): prices[i].pk for i in used if i in prices},
        "vol_ids": {str(i): vols[i].pk for i in used if i in vols},
        "market_state": market_state,
        "rate": rate, "rate_used": rate.rate if rate else None,
        "parameter_version": parameter_row, "history": window,
    }


def new_market_state(instrument_ids: Iterable[int], prices: dict[int, PriceObservation],
                     vols: dict[int, ImpliedVolatility]) -> MarketState:
    """The unsaved market state of these instruments' rows (``MarketState``), its digest the
    sha256 of its JSON (keys sorted: the same rows give the same digest, whoever records
    them)."""
    used = sorted(set(instrument_ids))
    price_ids = {str(i): prices[i].pk for i in used if i in prices}
    vol_ids = {str(i): vols[i].pk for i in used if i in vols}
    text = _plain_text({"prices": price_ids, "vols": vol_ids})
    return MarketState(digest=hashlib.sha256(text.encode()).hexdigest(), price_ids=price_ids,
                       vol_ids=vol_ids)


def market_state_of(snapshot: MarginSnapshot) -> MarketState | None:
    """The snapshot's market state: the one recorded with it before its insert, or the row."""
    field = MarginSnapshot._meta.get_field("market_state")
    cached = field.get_cached_value(snapshot, None)
    if cached is not None or snapshot.market_state_id is None:
        return cached
    return snapshot.market_state


def market_ids(snapshot: MarginSnapshot, instrument_ids: Iterable[int]
               ) -> tuple[dict[str, int], dict[str, int]]:
    """The price and implied-vol observation ids the snapshot valued ``instrument_ids`` at (the
    instruments its positions rest on), by instrument id as text: its own, or its chunk's
    market state's."""
    state = market_state_of(snapshot)
    if state is None:
        return snapshot.price_ids, snapshot.vol_ids
    keys = {str(i) for i in instrument_ids}
    return ({k: v for k, v in state.price_ids.items() if k in keys},
            {k: v for k, v in state.vol_ids.items() if k in keys})


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
    moved since the last intraday snapshot (FINRA 4220's daily record rests on it).

    The hashed text is ``json.dumps(document, sort_keys=True, default=str)`` of the document
    below (every stored snapshot's hash rests on it), written from each value's own text: a
    value nested in a document is written as it is alone, and keys come in sorted order, so
    the JSON ``new_snapshot`` wrote of the positions and market ids is used as it is."""
    engine, parameters, rate, rate_used, valuation_date = _unchanging_inputs(snapshot)
    state = market_state_of(snapshot)
    common = (
        _encoded(snapshot.account_id), _encoded(str(money(snapshot.cash))),
        "true" if snapshot.reason == END_OF_DAY else "false",
        engine, _stored_json(snapshot, "history"))
    if state is not None:
        # the chunk's market rows by their digest, in place of the snapshot's own
        fragments = (*common, _encoded(snapshot.margin_type), _encoded(state.digest),
                     json_text(snapshot, "methods") or _encoded(list(snapshot.methods)),
                     parameters, _stored_json(snapshot, "positions"), rate, rate_used,
                     valuation_date)
        return hashlib.sha256((_STATE_INPUTS_DOCUMENT % fragments).encode()).hexdigest()
    fragments = (
        *common, _encoded(snapshot.margin_type),
        json_text(snapshot, "methods") or _encoded(list(snapshot.methods)),
        parameters, _stored_json(snapshot, "positions"), _stored_json(snapshot, "price_ids"),
        rate, rate_used, valuation_date, _stored_json(snapshot, "vol_ids"))
    return hashlib.sha256((_INPUTS_DOCUMENT % fragments).encode()).hexdigest()


def _unchanging_inputs(snapshot: MarginSnapshot) -> tuple[str, ...]:
    """The JSON of the inputs a chunk's snapshots share (engine, parameters, rate row and
    value, valuation date): written again only when one is not the same object as the last
    snapshot's."""
    values = (snapshot.engine_version, snapshot.parameter_set, snapshot.rate_id,
              snapshot.rate_used, snapshot.valuation_date)
    last = _LAST_UNCHANGING[0]
    if last is not None and all(map(operator.is_, values, last[0])):
        return last[1]
    engine, parameters, rate, rate_used, valuation_date = values
    texts = (_encoded(engine), _encoded(parameters), _encoded(rate),
             "null" if rate_used is None
             else _encoded(str(Decimal(str(rate_used)).normalize())),
             "null" if valuation_date is None else _encoded(valuation_date.isoformat()))
    _LAST_UNCHANGING[0] = (values, texts)
    return texts


#: the last snapshot's shared inputs and their JSON (``_unchanging_inputs``)
_LAST_UNCHANGING: list[tuple[tuple, tuple[str, ...]] | None] = [None]


#: the inputs hash's document with its values' places, keys sorted as ``sort_keys`` sorts them
_INPUTS_DOCUMENT = "{" + ", ".join(f'"{key}": %s' for key in sorted((
    "account", "cash", "end_of_day", "engine", "history", "margin_type", "methods",
    "parameters", "positions", "prices", "rate", "rate_used", "valuation_date", "vols"))) + "}"
#: the same with a market state's digest (``market``) in place of the snapshot's own ids
_STATE_INPUTS_DOCUMENT = "{" + ", ".join(f'"{key}": %s' for key in sorted((
    "account", "cash", "end_of_day", "engine", "history", "margin_type", "market", "methods",
    "parameters", "positions", "rate", "rate_used", "valuation_date"))) + "}"
#: a value's JSON as the inputs hash's ``json.dumps`` writes it nested in its document
_encoded = json.JSONEncoder(sort_keys=True, default=str).encode


def _stored_json(snapshot: MarginSnapshot, attname: str) -> str:
    return json_text(snapshot, attname) or _encoded(getattr(snapshot, attname))


# -- an unsaved snapshot, its JSON written once -------------------------------------------------

#: the JSON text of a plain JSON value (``new_snapshot``'s ``plain_json``; no cycle to look for
#: in a value of text and numbers)
_plain_text = json.JSONEncoder(sort_keys=True, check_circular=False).encode


def new_snapshot(values: dict[str, Any], *, plain_json: Iterable[str] = ()) -> MarginSnapshot:
    """An unsaved snapshot of ``values`` (each field by name, a related row as its instance),
    every other field at its default: what ``MarginSnapshot(**values)`` makes, without
    ``Model.__init__`` setting each field through its descriptor and asking each field for its
    default (a sixth of building a chunk's snapshots; ``Model.from_db``'s reason for building
    from positional values). With an init signal receiver on ``MarginSnapshot`` it is
    ``MarginSnapshot(**values)``.

    ``plain_json`` names JSON fields whose values the caller built of text, integers, lists and
    dicts keyed by text only (no float, whose JSON the database may write back otherwise, no
    other type): their JSON text is written once, when first asked for, and the inputs hash,
    the content hash and the insert read it (``json_text``) instead of each serializing the
    value again. Those values are not changed in place afterwards (a snapshot is
    append-only)."""
    if pre_init.has_listeners(MarginSnapshot) or post_init.has_listeners(MarginSnapshot):
        snapshot = MarginSnapshot(**values)
    else:
        fixed, made, related, known = _snapshot_layout()
        unknown = values.keys() - known
        if unknown:
            raise TypeError(f"MarginSnapshot() got unexpected keyword arguments: {unknown}")
        snapshot = MarginSnapshot.__new__(MarginSnapshot)
        state = snapshot._state = ModelState()
        stored = snapshot.__dict__
        stored.update(fixed)
        stored.update(values)
        for attname, default in made:
            if attname not in values:
                stored[attname] = default()
        for name, field in related:
            if name in stored:
                # as the foreign key's descriptor sets it: the id, the instance cached, and the
                # database the router writes the snapshot to beside that instance
                row = stored.pop(name)
                stored[field.attname] = None if row is None \
                    else getattr(row, field.target_field.attname)
                field.set_cached_value(snapshot, row)
                if row is not None and state.db is None:
                    state.db = router.db_for_write(MarginSnapshot, instance=row)
    # written when first asked for: an intraday sweep keeps few of the snapshots it builds
    snapshot._json_texts = {name: (value, None) for name in plain_json
                            if (value := getattr(snapshot, name)) is not None}
    return snapshot


@functools.cache
def _snapshot_layout() -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...],
                                tuple[tuple[str, Any], ...], frozenset[str]]:
    """MarginSnapshot's fields as ``new_snapshot`` sets them: the defaults that are values,
    the ones made per instance (``default=list``), the foreign keys by name, every name a
    value may be given by."""
    fields = MarginSnapshot._meta.concrete_fields
    made = tuple((f.attname, f.get_default) for f in fields
                 if f.has_default() and callable(f.default))
    fixed = {f.attname: f.get_default() for f in fields
             if f.attname not in dict(made)}
    related = tuple((f.name, f) for f in fields if f.is_relation)
    known = frozenset(f.attname for f in fields) | {name for name, _ in related}
    return fixed, made, related, known


def json_text(snapshot: MarginSnapshot, attname: str) -> str | None:
    """The JSON text of a field ``new_snapshot`` was told is plain, written once, while the
    field still holds that value (the same object); None otherwise (a row read back, a value
    set since)."""
    texts = snapshot.__dict__.get("_json_texts")
    if not texts:
        return None
    known = texts.get(attname)
    if known is None or known[0] is not snapshot.__dict__.get(attname):
        return None
    if known[1] is None:
        known = texts[attname] = (known[0], _short_text(known[0]))
    return known[1]


def _short_text(value: Any) -> str:
    """``_plain_text``, the text of a short list of text kept: a chunk's snapshots carry the
    same few (no warnings, the methods valued), two of the seven JSON texts each writes."""
    if type(value) is list and len(value) <= 4 and all(type(v) is str for v in value):
        key = tuple(value)
        text = _SHORT_TEXTS.get(key)
        if text is None:
            if len(_SHORT_TEXTS) > 1000:
                _SHORT_TEXTS.clear()
            text = _SHORT_TEXTS[key] = _plain_text(value)
        return text
    return _plain_text(value)


#: JSON texts of short lists of text (``_short_text``)
_SHORT_TEXTS: dict[tuple[str, ...], str] = {}


def empty_result(today) -> dict:
    return {"valuation_date": today.isoformat(), "net_liquidation_value": 0.0, "warnings": [],
            "positions": [], "portfolio_margin": None, "reg_t": None, "span": None,
            "var": None, "stress": None, "collateral": None}


