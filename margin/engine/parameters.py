"""Parameter sets: every range, offset, minimum and haircut the engine uses is data.

The platform default ships with the code (``data/default-2026.1.json``) so the calculator
never reads a database; a firm's versioned parameter set has the same shape and is passed in
by the caller. Parameter sets are plain nested dicts, read-only by convention.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_PARAMETER_SET = "default-2026.1"
_DATA = Path(__file__).with_name("data")

ParameterSet = dict[str, Any]


@lru_cache(maxsize=8)
def _load(name: str) -> str:
    path = _DATA / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"unknown parameter set {name!r}")
    return path.read_text()


def load_parameter_set(name: str = DEFAULT_PARAMETER_SET) -> ParameterSet:
    """A fresh copy of a shipped parameter set (callers may overlay their own fields)."""
    return json.loads(_load(name))


def overlay(base: ParameterSet, changes: dict[str, Any]) -> ParameterSet:
    """Deep-merge ``changes`` over ``base`` without touching either (firm overrides)."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def offset_for(params: ParameterSet, product_group: str, product_class: str,
               request_offsets: dict[str, float] | None = None) -> float:
    """Product-group offset: the request's, else the set's named group, else by class, else 0."""
    if request_offsets and product_group in request_offsets:
        return float(request_offsets[product_group])
    pm = params["portfolio_margin"]
    if product_group in pm.get("offsets", {}):
        return float(pm["offsets"][product_group])
    return float(pm.get("offsets_by_product_class", {}).get(product_class, 0.0))


# --------------------------------------------------------------------------- firm overrides
#: Sections a firm may override in its own parameter set. ``portfolio_margin`` and ``reg_t``
#: are the regulatory layer (FINRA 4210(g), Cboe Rule 10.4, FINRA 4210(c)): valuation points,
#: offsets and minimums a firm may not loosen; a firm adds conservatism through ``house``
#: (METHODOLOGY.md section 2), which max(regulatory, house) always applies on top.
FIRM_SECTIONS = ("house", "span", "defi", "var", "snapshots")
#: fields the engine reads when present but the default set leaves out (value: their type)
_OPTIONAL_FIELDS: dict[str, Any] = {"house": {"overrides": {"ineligible_range": 1.0,
                                                            "symbols": {}}},
                                    "span": {"price_scan": 0.0}}
#: maps whose keys are free (symbols), not field names, and the fields of each entry
_OPEN_MAPS = {("house", "overrides", "symbols"): {"range": 0.0, "down": 0.0, "up": 0.0,
                                                  "eligible": True,
                                                  "naked_short_fraction": 0.0}}
#: paths (prefixes) whose numbers may be negative: the shock grids
_SIGNED = {("defi", "crypto_grid"), ("defi", "depeg_grid")}
#: paths (prefixes) whose numbers are fractions in [0, 1]
_FRACTIONS = {("defi", "perp_margin"), ("defi", "perp_profit_haircut"), ("defi", "max_ltv"),
              ("defi", "advance_rate"), ("defi", "liquidation_threshold"), ("defi", "oracle"),
              ("var", "confidence"), ("var", "es_confidence"), ("span", "extreme_coverage"),
              ("house", "overrides", "naked_short_fraction")}
_FRACTION_LEAVES = {"naked_short_fraction"}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _under(path: tuple[str, ...], prefixes: set[tuple[str, ...]]) -> bool:
    return any(path[:len(p)] == p for p in prefixes)


def check_overrides(base: ParameterSet, changes: Any) -> list[tuple[str, str]]:
    """Every problem of a firm's ``changes`` to ``base`` as (dotted path, message); [] if none.

    A change may only name fields the base set has (a typo must not be silently ignored), in
    the sections a firm may change (``FIRM_SECTIONS``), with the base field's type; numbers are
    finite, non-negative (grids excepted) and fractions within [0, 1]; haircut tiers are
    ascending size caps ending in an open tier, with haircuts in [0, 1] that never fall as the
    holding grows (METHODOLOGY.md section 6).
    """
    if not isinstance(changes, dict):
        return [("", "the overrides must be a JSON object")]
    errors: list[tuple[str, str]] = []
    for section, value in changes.items():
        if section not in FIRM_SECTIONS:
            reason = ("is the regulatory layer: a firm adds conservatism through 'house'"
                      if section in ("portfolio_margin", "reg_t") else "is not a field")
            errors.append((section, f"'{section}' {reason}; a firm may change "
                                    f"{', '.join(FIRM_SECTIONS)}"))
            continue
        schema = overlay(base, _OPTIONAL_FIELDS)
        _check_node(schema.get(section), value, (section,), errors)
    if not errors and "defi" in changes:
        merged = overlay(base, changes)["defi"]
        for tier, table in merged.get("haircut_tiers", {}).items():
            _check_tiers(table, ("defi", "haircut_tiers", tier), errors)
    return errors


def _check_node(base: Any, value: Any, path: tuple[str, ...], errors: list[tuple[str, str]]
                ) -> None:
    dotted = ".".join(path)
    if isinstance(base, dict):
        if not isinstance(value, dict):
            errors.append((dotted, "must be an object"))
            return
        for key, item in value.items():
            if path in _OPEN_MAPS:
                _check_node(_OPEN_MAPS[path], item, (*path, str(key)), errors)
            elif key not in base:
                errors.append((f"{dotted}.{key}", f"unknown field '{key}' in {dotted}"))
            else:
                _check_node(base[key], item, (*path, key), errors)
        return
    if _is_number(base) and not _is_number(value):
        errors.append((dotted, "must be a number"))
    elif isinstance(base, bool) and not isinstance(value, bool):
        errors.append((dotted, "must be true or false"))
    elif isinstance(base, list) and not isinstance(value, list):
        errors.append((dotted, "must be a list"))
    elif isinstance(base, str) and not isinstance(value, str):
        errors.append((dotted, "must be a string"))
    else:
        _check_leafs(value, path, errors)


def _check_leafs(value: Any, path: tuple[str, ...], errors: list[tuple[str, str]]) -> None:
    """Numbers anywhere under ``value``: finite, signed only on grids, fractions in [0, 1]."""
    dotted = ".".join(path)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_leafs(item, (*path, str(key)), errors)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_leafs(item, (*path[:-1], f"{path[-1]}[{i}]"), errors)
    elif _is_number(value):
        plain = tuple(p.split("[")[0] for p in path)
        if not math.isfinite(value):
            errors.append((dotted, "must be a finite number"))
        elif value < 0 and not _under(plain, _SIGNED):
            errors.append((dotted, "must not be negative"))
        elif value > 1 and (_under(plain, _FRACTIONS) or plain[-1] in _FRACTION_LEAVES):
            errors.append((dotted, "is a fraction: at most 1"))


def _check_tiers(table: Any, path: tuple[str, ...], errors: list[tuple[str, str]]) -> None:
    dotted = ".".join(path)
    rows = table if isinstance(table, list) else []
    if not rows or not all(isinstance(r, list) and len(r) == 2 for r in rows):
        errors.append((dotted, "must be a list of [size cap in USD or null, haircut] pairs"))
        return
    caps = [r[0] for r in rows]
    if caps[-1] is not None or any(c is None for c in caps[:-1]):
        errors.append((dotted, "only the last tier is open-ended (cap null)"))
    elif any(not _is_number(c) or c <= 0 for c in caps[:-1]) or caps[:-1] != sorted(
            set(caps[:-1])):
        errors.append((dotted, "size caps must be positive and strictly ascending"))
    cuts = [r[1] for r in rows]
    if not all(_is_number(c) and 0 <= c <= 1 for c in cuts):
        errors.append((dotted, "haircuts must be numbers in [0, 1]"))
    elif cuts != sorted(cuts):
        errors.append((dotted, "haircuts must not fall as the holding grows"))
