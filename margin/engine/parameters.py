"""Parameter sets: every range, offset, minimum and haircut the engine uses is data.

The platform default ships with the code (``data/default-2026.1.json``) so the calculator
never reads a database; a firm's versioned parameter set has the same shape and is passed in
by the caller. Parameter sets are plain nested dicts, read-only by convention.
"""

from __future__ import annotations

import copy
import json
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
