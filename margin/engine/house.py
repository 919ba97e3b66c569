"""The house layer (METHODOLOGY.md section 2): alternative requirements a broker adds.

Computed only when the request's ``house`` asks (``portfolio.house``), e.g.
``{"vol_shift": 0.25, "concentration": true, "stress_range": 0.25, "overrides": {...}}``.
A value of ``true`` takes the parameter set's ``house`` default; a number (``vol_shift``,
``stress_range``) or a dict (``concentration``, ``overrides``) replaces or overlays it;
``false`` / absent leaves the component out. Each component is its own requirement on the
whole portfolio, with the regulatory offsets and minimums, run through the same batch code:

- ``vol_shift``: every valuation point also with every implied vol scaled by (1 + s) and
  (1 - s); per product group the worst of the three vol states counts.
- ``concentration`` (Interactive Brokers style): the ``top_class_groups`` class groups with the
  largest regulatory worst loss are moved up to +/- ``top_move``, every other class group up to
  +/- ``other_move`` (equidistant points, the regulatory grid's counts, aligned by index).
- ``extended_stress`` (asked as ``stress_range``): every grid reaches at least +/- the range
  (``scenarios.extended_grid``).
- ``overrides``: per-symbol ranges (``symbols: {SYM: {"range": r}}`` or ``"down"``/``"up"``)
  widen the grid of the symbol's class group; a stock or ETF priced under ``min_price_for_pm``
  is not eligible for PM and is stressed by its whole value (+/- 100 %, or its
  ``ineligible_range``); naked short options carry an alternative minimum of
  ``naked_short_fraction`` (per symbol or global) of the deliverable's value. A naked short is
  a short option not covered, on the same underlying, by long options of the same right or by
  stock (long stock for calls, short stock for puts).

``house_components`` returns ``{name: requirement}`` in the order above; the block's
``house_requirement`` is the largest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import scenarios
from .parameters import ConcentrationParameters, HouseOverrides, SymbolOverride
from .series import Result

if TYPE_CHECKING:  # pragma: no cover
    from .portfolio_margin import PMRun

EQUITY_TYPES = ("stock", "etf")
NO_OVERRIDE = SymbolOverride()


def _setting(request: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in request:
            return request[name]
    return None


def _enabled(value: Any) -> bool:
    return value is not None and value is not False


def house_components(run: PMRun, regulatory: Result) -> dict[str, float]:
    """Every house component the request asks for: name -> requirement (raw float)."""
    request = run.portfolio.house or {}
    defaults = run.params.house
    out: dict[str, float] = {}

    value = _setting(request, "vol_shift")
    if _enabled(value):
        shift = defaults.vol_shift if value is True else float(value)
        out["vol_shift"] = vol_shift_requirement(run, regulatory, shift)

    value = _setting(request, "concentration")
    if _enabled(value):
        concentration = defaults.concentration
        if isinstance(value, dict):
            concentration = replace(concentration, **value)
        out["concentration"] = concentration_requirement(run, regulatory, concentration)

    value = _setting(request, "stress_range", "extended_stress")
    if _enabled(value):
        stress_range = defaults.stress_range if value is True else float(value)
        out["extended_stress"] = extended_stress_requirement(run, stress_range)

    value = _setting(request, "overrides")
    if _enabled(value):
        overrides = defaults.overrides
        if isinstance(value, dict):
            overrides = overrides.overlaid(value)
        out["overrides"] = overrides_requirement(run, overrides)
    return out


def vol_shift_requirement(run: PMRun, regulatory: Result, shift: float) -> float:
    """Per product group the worst loss over unshifted, vol-up and vol-down grids."""
    worst = regulatory.pg_worst.copy()
    for mult in scenarios.vol_multipliers(shift):
        shifted, _ = run.run(vol_mult=mult)
        worst = np.maximum(worst, shifted.pg_worst)
    return float(np.maximum(worst, regulatory.pg_minimum).sum())


def concentration_requirement(run: PMRun, regulatory: Result,
                              settings: ConcentrationParameters) -> float:
    """The riskiest class groups at +/- top_move, the others at +/- other_move."""
    st = run.structure
    cg_pnl = regulatory.cg_pnl
    valid = run.groups.valid[st.row_cg]
    cg_worst = np.maximum(-np.where(valid, cg_pnl, np.inf).min(axis=1), 0.0)
    order = np.argsort(-cg_worst, kind="stable")  # ties: first listed
    top = set(st.row_cg[order[: int(settings.top_class_groups)]].tolist())
    grids = []
    for cg, reg in enumerate(run.reg_grids):
        move = float(settings.top_move if cg in top else settings.other_move)
        grids.append(scenarios.scaled_grid(reg, move))
    result, _ = run.run(grids=grids)
    return float(result.account_requirement[0])


def extended_stress_requirement(run: PMRun, stress_range: float) -> float:
    grids = [scenarios.extended_grid(reg, stress_range, cls)
             for reg, cls in zip(run.reg_grids, run.cg_class, strict=True)]
    result, _ = run.run(grids=grids)
    return float(result.account_requirement[0])


def overrides_requirement(run: PMRun, settings: HouseOverrides) -> float:
    """Per-symbol ranges, PM ineligibility under a minimum price, naked-short minimums."""
    portfolio = run.portfolio
    min_price = settings.min_price_for_pm
    grids = []
    for cg, reg in enumerate(run.reg_grids):
        down = up = 0.0
        for sym in run.cg_members[cg]:
            und = portfolio.underlyings[sym]
            o = settings.symbols.get(sym) or NO_OVERRIDE
            down = max(down, o.down if o.down is not None else (o.range or 0.0))
            up = max(up, o.up if o.up is not None else (o.range or 0.0))
            if (o.eligible is False
                    or (min_price is not None and und.type in EQUITY_TYPES
                        and und.price < min_price)):
                down = max(down, settings.ineligible_range)
                up = max(up, settings.ineligible_range)
        grids.append(scenarios.widened_grid(reg, down, up) if (down or up) else reg)
    floor = _naked_short_minimums(run, settings)
    result, _ = run.run(grids=grids, cg_min_floor=floor)
    return float(result.account_requirement[0])


def _naked_short_minimums(run: PMRun, settings: HouseOverrides) -> np.ndarray:
    """Per class group: fraction x deliverable value of its uncovered short options."""
    portfolio, val = run.portfolio, run.valuation
    # per underlying symbol: long/short call and put units, stock units
    book: dict[str, dict[str, float]] = {}
    for i, p in enumerate(portfolio.positions):
        if p.kind not in ("option", "stock", "future_option", "future"):
            continue
        units = float(p.quantity) * float(p.multiplier)
        b = book.setdefault(p.root, {"lc": 0.0, "sc": 0.0, "lp": 0.0, "spu": 0.0,
                                     "ls": 0.0, "ss": 0.0, "spot": float(val.spots[i])})
        if p.kind in ("stock", "future"):
            b["ls" if units > 0 else "ss"] += abs(units)
        elif p.is_call:
            b["lc" if units > 0 else "sc"] += abs(units)
        else:
            b["lp" if units > 0 else "spu"] += abs(units)
    floor = np.zeros(len(run.cg_names))
    for sym, b in book.items():
        own = (settings.symbols.get(sym) or NO_OVERRIDE).naked_short_fraction
        fraction = settings.naked_short_fraction if own is None else own
        naked = max(b["sc"] - b["lc"] - b["ls"], 0.0) + max(b["spu"] - b["lp"] - b["ss"], 0.0)
        if naked and fraction:
            cg = run.cg_index[portfolio.underlyings[sym].class_group]
            floor[cg] += fraction * naked * float(portfolio.underlyings[sym].price)
    return floor
