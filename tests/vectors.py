"""Loads the published reference vectors from MARGIN_VECTORS_DIR (default ../shared/vectors).

A missing folder or file is a loud failure, never a skip: these numbers are the acceptance bar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def vectors_dir() -> Path:
    folder = Path(os.environ.get("MARGIN_VECTORS_DIR", REPO.parent / "shared" / "vectors"))
    if not folder.is_dir():
        raise FileNotFoundError(
            f"reference vectors folder {folder} is missing: set MARGIN_VECTORS_DIR to the folder "
            "holding pricing.json, regt.json, portfolio_margin.json, span.json, uniswap_v3.json"
        )
    return folder


def load_vectors(name: str) -> dict[str, Any]:
    path = vectors_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"reference vector file {path} is missing")
    return json.loads(path.read_text())


def dig(document: Any, path: str) -> Any:
    """Follow a dotted path with list indexes: ``span.combined_commodities[0].scan_risk``."""
    value = document
    for part in path.replace("]", "").split("."):
        name, _, index = part.partition("[")
        if name:
            value = value[name]
        if index:
            value = value[int(index)]
    return value
