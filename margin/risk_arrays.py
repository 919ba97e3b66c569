"""Risk arrays in compact form: each class group's P&L at the valuation points, float32.

DESIGN.md "Scale": a snapshot keeps its arrays compactly rather than the calculator's whole
response. Each class group's array is stored as little-endian float32 bytes in base64 (a
ten-point array is 56 characters), keyed by the class group, so a row stays small and the
arrays are still readable without the engine. float32 keeps about 7 significant digits: a
stored value is within half a float32 unit in the last place of the engine's float64, which is
the precision a recomputation is compared at (`within_precision`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

STORED = np.dtype("<f4")
# float32 carries a 24-bit significand: rounding float64 to it moves a value by at most half a
# unit in the last place, 2**-24 of its magnitude.
RELATIVE_PRECISION = 2.0 ** -24


def pack(values: Any) -> str:
    return base64.b64encode(np.asarray(values, dtype=np.float64).astype(STORED).tobytes()
                            ).decode("ascii")


def unpack(packed: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed), dtype=STORED).astype(np.float64)


def class_group_arrays(result: Mapping[str, Any]) -> dict[str, list[float]]:
    """Each class group's P&L array from a calculator response (none without a PM block)."""
    pm = result.get("portfolio_margin") or {}
    return {group["class_group"]: list(group["pnl"]) for group in pm.get("class_groups", [])}


def pack_result(result: Mapping[str, Any]) -> dict[str, str]:
    return {name: pack(pnl) for name, pnl in class_group_arrays(result).items()}


def within_precision(stored: np.ndarray, computed: Any) -> bool:
    """True when ``computed`` (float64) rounds to ``stored`` within float32's precision."""
    computed = np.asarray(computed, dtype=np.float64)
    if stored.shape != computed.shape:
        return False
    tolerance = np.abs(computed) * (2 * RELATIVE_PRECISION) + np.finfo(STORED).tiny
    return bool(np.all(np.abs(stored - computed) <= tolerance))
