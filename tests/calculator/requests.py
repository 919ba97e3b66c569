"""Request builders shared by the calculator tests (shapes from CALCULATOR.md)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from margin.calculator import run

REPO = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "valuation_date": "2007-02-23",
    "rate": 0.0525,
    "underlyings": {
        "IBM": {"price": 97.73, "product_class": "equity"},
        "SPX": {"price": 1451.19, "product_class": "broad_index_high_cap",
                "dividend_yield": 0.018},
        "SPY": {"price": 145.30, "product_class": "broad_index_high_cap", "type": "etf",
                "class_group": "SPX"},
    },
    "positions": [
        {"id": "stk", "kind": "stock", "symbol": "IBM", "quantity": 10000},
        {"id": "c100", "kind": "option", "underlying": "IBM", "right": "call", "strike": 100,
         "expiry": "2007-04-20", "quantity": -100, "price": 1.68},
    ],
    "methods": ["portfolio_margin", "reg_t"],
}

ETH_ROUND: dict[str, Any] = {
    "round_id": "92233720368547771158", "answer": "300000000000", "decimals": 8,
    "started_at": "2026-11-24T11:59:48Z", "updated_at": "2026-11-24T11:59:48Z",
    "answered_in_round": "92233720368547771158", "heartbeat_s": 3600,
    "previous_answer": "299100000000",
}


def base(**changes: Any) -> dict[str, Any]:
    request = copy.deepcopy(BASE)
    request.update(changes)
    return request


def body(request: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(request, dict):
        return json.dumps(request).encode()
    return request.encode() if isinstance(request, str) else request


def errors_of(request: dict[str, Any] | str | bytes) -> list[tuple[str, str]]:
    """(field, code) of every error; asserts a 400 whose body holds errors and no number."""
    status, out = run(body(request))
    assert status == 400, out.decode()
    document = json.loads(out)
    assert list(document) == ["errors"]
    assert document["errors"], "a 400 must name at least one error"
    for error in document["errors"]:
        assert list(error) == ["field", "code", "message"]
        assert error["message"]
    return [(e["field"], e["code"]) for e in document["errors"]]


def result_of(request: dict[str, Any] | str | bytes) -> dict[str, Any]:
    status, out = run(body(request))
    assert status == 200, out.decode()
    return json.loads(out)
