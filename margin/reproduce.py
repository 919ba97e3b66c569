"""Recomputing a stored snapshot from what it recorded, and comparing field by field.

A snapshot records its inputs by reference (``MarginSnapshot.positions``, ``price_ids`` and
``vol_ids`` or its chunk's ``market_state``, ``rate``, ``history``, ``parameter_version``;
``margin.figures.recorded_inputs``):
``recompute`` rebuilds the engine's input from those rows, never from today's book or today's
prices, runs the current engine and compares. Money fields must match to the cent; the risk
arrays within float32, the precision they were stored at; the flags, the parameter-set label and
the inputs hash (over the recorded inputs) exactly. The methods recomputed are the ones the
snapshot valued (the requirement's, ``margin.valuing.requirement_methods``). The history window's digest names a
close replaced since as the cause. A snapshot computed by another engine version is recomputed
by this one, and the reproduction says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from accounts.models import Instrument, Position
from brokerage.errors import DomainError
from brokerage.scope import firm_scope
from margin.engine import ENGINE_VERSION
from margin.engine.errors import EngineInputError
from margin.engine.parameters import ParameterSet

from .book import (
    MissingMarketData,
    build_portfolio,
    history_instruments,
    rate_value,
    valued_on,
)
from .figures import (
    empty_result,
    inputs_hash,
    market_ids,
    parameters_of,
    snapshot_figures,
    var_window,
)
from .market_history import AccountHistory, closes_digest, read_history
from .models import ImpliedVolatility, MarginSnapshot, PriceObservation
from .risk_arrays import class_group_arrays, unpack, within_precision

MONEY_FIELDS = ("net_liquidation_value", "equity", "pm_requirement", "house_requirement",
                "regt_initial", "regt_maintenance", "collateral_effective_value", "requirement",
                "excess")
#: compared exactly as stored, beside the money fields
RATIO_FIELDS = ("health_factor",)


class NotReproducible(DomainError, code="not_reproducible", status=409):
    """The snapshot cannot be recomputed: it records no inputs, or a row it names is gone."""


@dataclass(frozen=True)
class FieldComparison:
    field: str
    stored: str
    recomputed: str
    matches: bool


@dataclass(frozen=True)
class Reproduction:
    """A stored snapshot beside its recomputation."""

    snapshot: MarginSnapshot
    fields: tuple[FieldComparison, ...]
    inputs: str  # what was read back, in one line

    @property
    def differing(self) -> list[str]:
        return [f.field for f in self.fields if not f.matches]

    @property
    def matches(self) -> bool:
        return not self.differing

    @property
    def engine_note(self) -> str:
        """Empty when the snapshot's engine is the current one."""
        stored = self.snapshot.engine_version
        if stored == ENGINE_VERSION:
            return ""
        return (f"engine version differs: stored {stored}, current {ENGINE_VERSION} (recomputed "
                "with the current engine: a difference may be the engine's own change)")


@dataclass(frozen=True)
class _Rebuilt:
    positions: list[Position]
    prices: dict[int, PriceObservation]
    vols: dict[int, float]
    params: ParameterSet
    label: str
    history: AccountHistory | None


def recompute(snapshot: MarginSnapshot) -> Reproduction:
    """Recompute ``snapshot`` from its recorded inputs; raises NotReproducible."""
    if not snapshot.records_inputs:
        raise NotReproducible(f"snapshot {snapshot.pk} was written before snapshots recorded "
                              "their inputs: it cannot be recomputed", field="positions")
    with firm_scope(snapshot.firm):
        rebuilt = _rebuild(snapshot)
        result = _calculate(snapshot, rebuilt)
    return _compare(snapshot, rebuilt, result)


def _rebuild(snapshot: MarginSnapshot) -> _Rebuilt:
    positions = _positions(snapshot)
    params, label = parameters_of(snapshot.parameter_version, default=snapshot.parameter_set)
    # its own market rows, or its chunk's market state's of what its positions rest on
    price_ids, vol_ids = market_ids(snapshot, {i for p in positions
                                               for i in valued_on(p.instrument)})
    return _Rebuilt(
        positions=positions,
        prices=_rows(PriceObservation, price_ids, "price_ids"),
        vols={i: float(row.volatility)
              for i, row in _rows(ImpliedVolatility, vol_ids, "vol_ids").items()},
        params=params, label=label, history=_history(snapshot, positions))


def _positions(snapshot: MarginSnapshot) -> list[Position]:
    """The positions as valued, rebuilt (unsaved) on their instruments."""
    ids = [instrument_id for instrument_id, _, _ in snapshot.positions]
    instruments = Instrument.objects.filter(pk__in=ids).select_related(
        "underlying", "token0", "token1").in_bulk()
    gone = sorted(set(ids) - set(instruments))
    if gone:
        raise NotReproducible(f"instruments {gone} are gone", field="positions")
    return [Position(firm=snapshot.firm, account=snapshot.account,
                     instrument=instruments[instrument_id], quantity=Decimal(quantity),
                     cost_basis=Decimal(cost_basis))
            for instrument_id, quantity, cost_basis in snapshot.positions]


def _rows(model, ids: dict[str, int], field: str) -> dict[int, Any]:
    """Instrument id -> the recorded market row, each checked to be the instrument's."""
    rows = model.objects.in_bulk(list(ids.values()))
    found = {int(instrument): rows.get(row_id) for instrument, row_id in ids.items()}
    gone = sorted(ids[str(i)] for i, row in found.items() if row is None or row.instrument_id != i)
    if gone:
        raise NotReproducible(f"{model._meta.verbose_name} rows {gone} are gone", field=field)
    return found


def _history(snapshot: MarginSnapshot, positions: list[Position]) -> AccountHistory | None:
    """The VaR window as recorded: the same closes, read back up to its last date."""
    recorded = snapshot.history
    if recorded is None:
        return None
    if recorded["last"] is None:  # VaR was left out (short history): recorded with its flags
        return AccountHistory(None, tuple(recorded["flags"]))
    held = {i.pk: i for p in positions for i in history_instruments(p)}
    chunk = read_history(list(held.values()), on=date.fromisoformat(recorded["last"]),
                         returns_needed=recorded["returns"])
    return chunk.for_symbols(i.symbol for i in held.values())


def _calculate(snapshot: MarginSnapshot, rebuilt: _Rebuilt, *, explanation: bool = False
               ) -> dict[str, Any]:
    """The calculator over the rebuilt inputs: the methods the snapshot valued, or (for the
    explanation) every method of the parameter set's snapshot settings."""
    from margin.calculator import CalculatorError
    from margin.calculator.compute import calculate

    methods = None if explanation or not snapshot.methods else tuple(snapshot.methods)
    try:
        portfolio = build_portfolio(
            rebuilt.positions, valuation_date=snapshot.valuation_date, prices=rebuilt.prices,
            vols=rebuilt.vols, rate=_rate(snapshot), params=rebuilt.params,
            valuation_time=snapshot.computed_at,
            history=rebuilt.history.history if rebuilt.history else None, methods=methods)
        return calculate(portfolio, rebuilt.params) if portfolio.positions \
            else empty_result(snapshot.valuation_date)
    except (MissingMarketData, EngineInputError, CalculatorError) as exc:
        raise NotReproducible(f"the recorded inputs no longer value: {exc}") from exc


def explanation(snapshot: MarginSnapshot) -> dict[str, Any]:
    """The calculator's whole response for the snapshot's recorded book and market (what the
    sweep no longer stores, DESIGN.md "Scale"): Reg T beside PM, VaR on the closes up to its
    valuation date, SPAN, the named stress scenarios. Read-only; raises NotReproducible."""
    if snapshot.result:
        return snapshot.result  # written whole before the batch sweep
    if not snapshot.records_inputs:
        raise NotReproducible(f"snapshot {snapshot.pk} records no inputs to explain",
                              field="positions")
    with firm_scope(snapshot.firm):
        rebuilt = _rebuild(snapshot)
        if rebuilt.history is None and "var" in rebuilt.params.snapshots.methods:
            held = {i.pk: i for p in rebuilt.positions for i in history_instruments(p)}
            chunk = read_history(list(held.values()), on=snapshot.valuation_date,
                                 returns_needed=var_window(rebuilt.params))
            rebuilt = _Rebuilt(rebuilt.positions, rebuilt.prices, rebuilt.vols, rebuilt.params,
                               rebuilt.label, chunk.for_symbols(i.symbol for i in held.values()))
        result = _calculate(snapshot, rebuilt, explanation=True)
    # VaR's window is the account's own stored closes: short history leaves it out, said here
    result["warnings"] = [*result["warnings"], *(rebuilt.history.flags
                                                 if rebuilt.history else ())]
    return result


def _rate(snapshot: MarginSnapshot) -> float:
    """The rate as valued: the value recorded beside the row (a day's rate is corrected in
    place; the row then says what it holds now, ``_described``)."""
    return float(snapshot.rate_used) if snapshot.rate_used is not None \
        else rate_value(snapshot.rate)


def _compare(snapshot: MarginSnapshot, rebuilt: _Rebuilt, result: dict[str, Any]
             ) -> Reproduction:
    figures = snapshot_figures(margin_type=snapshot.margin_type, cash=snapshot.cash,
                               result=result)
    fields = [_exact(name, getattr(snapshot, name), figures[name])
              for name in (*MONEY_FIELDS, *RATIO_FIELDS)]
    fields += _keyed("add_ons", snapshot.add_ons, figures["add_ons"], _exact)
    fields += _keyed("risk_arrays", snapshot.risk_arrays, class_group_arrays(result), _array)
    history = rebuilt.history
    flags = list(result.get("warnings", [])) + list(history.flags if history else ())
    fields.append(_exact("flags", snapshot.flags, flags))
    if snapshot.history is not None and snapshot.history["digest"] is not None:
        digest = closes_digest(history.history) if history and history.history else None
        fields.append(_exact("history.digest", snapshot.history["digest"], digest))
    fields.append(_exact("parameter_set", snapshot.parameter_set, rebuilt.label))
    if snapshot.methods:  # written before: hashed over the engine input, not the references
        fields.append(_exact("inputs_hash", snapshot.inputs_hash, inputs_hash(snapshot)))
    return Reproduction(snapshot, tuple(fields), _described(snapshot, rebuilt))


def _exact(name: str, stored: Any, recomputed: Any) -> FieldComparison:
    return FieldComparison(name, _shown(stored), _shown(recomputed), stored == recomputed)


def _array(name: str, stored: str | None, recomputed: list[float] | None) -> FieldComparison:
    if stored is None or recomputed is None:
        return FieldComparison(name, "absent" if stored is None else f"{len(unpack(stored))} "
                               "points", "absent" if recomputed is None
                               else f"{len(recomputed)} points", False)
    values = unpack(stored)
    worst = max((abs(a - b) for a, b in zip(values, recomputed, strict=False)), default=0.0)
    return FieldComparison(name, f"{len(values)} points (float32)",
                           f"{len(recomputed)} points, max |diff| {worst:.6g}",
                           within_precision(values, recomputed))


def _keyed(prefix: str, stored: dict, recomputed: dict,
           compare: Callable[[str, Any, Any], FieldComparison]) -> Iterable[FieldComparison]:
    for key in sorted(stored.keys() | recomputed.keys()):
        yield compare(f"{prefix}[{key}]", stored.get(key), recomputed.get(key))


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return f"{len(value)}: {'; '.join(map(str, value))}"[:22] if value else "(none)"
    text = str(value)
    return text[:16] + "..." if len(text) > 22 else text


def _described(snapshot: MarginSnapshot, rebuilt: _Rebuilt) -> str:
    window = snapshot.history or {}
    history = (f"closes {window['first']}..{window['last']} ({window['returns']} returns)"
               if window.get("last") else "no VaR window")
    rate = "no rate row (0)"
    if snapshot.rate is not None:
        rate = f"rate #{snapshot.rate_id} {snapshot.rate_used}"
        if snapshot.rate.rate != snapshot.rate_used:
            rate += f" (the row holds {snapshot.rate.rate} now: corrected since)"
    return (f"{len(rebuilt.positions)} positions, {len(rebuilt.prices)} prices, "
            f"{len(rebuilt.vols)} vols, {rate}, {history}, parameters {rebuilt.label}, "
            f"valued on {snapshot.valuation_date}")
