"""The one serialiser both doors (CLI and API) print: the same dict gives the same bytes.

Money is rounded to cents here, once, at the edge (DESIGN.md); everything else is printed as
the engine computed it. Rounding is **half away from zero on the number's shortest decimal
form** (``Decimal(repr(x)).quantize(Decimal("0.01"), ROUND_HALF_UP)``): 2.675 -> 2.68 and
-2.675 -> -2.68, so a long and a short of the same size round to the same magnitude, and a
figure that prints as ``x.xx5`` rounds the way a reader expects (binary ``round(2.675, 2)``
gives 2.67).

Output format: ``json.dumps`` with ``indent=2``, ``separators=(",", ": ")``, ASCII only
(non-ASCII symbols escaped, so the bytes never depend on an encoding), keys in the order the
dict was built (CALCULATOR.md order; never sorted), ``allow_nan=False`` (a NaN or infinity in
a result is an engine bug: it raises rather than print invalid JSON), ``-0.0`` printed as
``0.0``, and a final newline. Integers beyond 2^53 arrive as decimal strings and stay strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

# Every response key whose numbers are money (USD): each number below such a key (a scalar, a
# P&L array, a dict of components) is rounded to cents. Prices, implied vols, Greeks, offsets,
# points, ratios (ltv, health_factor) and counts are not money and are never rounded.
MONEY_KEYS = frozenset({
    # positions and the account
    "market_value", "value", "net_liquidation_value",
    # portfolio margin
    "requirement", "regulatory_requirement", "house_requirement", "house_components",
    "minimum_charge", "worst_loss", "pnl",
    # Reg T
    "initial", "maintenance", "minimum_equity",
    # SPAN (the risk array is money per position, profit positive)
    "risk_array", "scan_risk", "intra_spread_charge", "inter_spread_credit",
    "short_option_minimum", "net_option_value",
    # VaR and stress
    "historical", "expected_shortfall", "parametric", "loss",
    # collateral (perpetuals also carry their tier's margins)
    "stressed_loss", "effective_value", "borrowable", "initial_margin", "maintenance_margin",
})

CENT = Decimal("0.01")
JSON_OPTIONS: dict[str, Any] = {
    "indent": 2, "separators": (",", ": "), "ensure_ascii": True, "allow_nan": False,
    "sort_keys": False,
}


def round_money(x: float) -> float:
    """Cents, half away from zero on the shortest decimal form of ``x``; never ``-0.0``."""
    if not math.isfinite(x):
        raise ValueError(f"money value {x!r} is not finite")
    cents = float(Decimal(repr(float(x))).quantize(CENT, rounding=ROUND_HALF_UP))
    return 0.0 if cents == 0 else cents


def _plain_float(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError(f"value {x!r} is not finite")
    return 0.0 if x == 0 else x


def normalise(value: Any, money: bool = False) -> Any:
    """Plain JSON types (numpy unwrapped, tuples as lists), money rounded, no -0.0."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return round_money(float(value)) if money else value
    if isinstance(value, float):
        return round_money(value) if money else _plain_float(value)
    if isinstance(value, Mapping):
        return {str(k): normalise(v, money or k in MONEY_KEYS) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v, money) for v in value]
    raise TypeError(f"cannot render {type(value).__name__}")


def dumps(document: Any) -> bytes:
    """The exact bytes of a response body (result or errors)."""
    return (json.dumps(normalise(document), **JSON_OPTIONS) + "\n").encode("ascii")


def render(result: Mapping[str, Any]) -> bytes:
    return dumps(result)


def render_errors(errors: list[dict[str, str]]) -> bytes:
    return dumps({"errors": [{"field": e["field"], "code": e["code"], "message": e["message"]}
                             for e in errors]})
