"""Every published reference case, driven through the calculator's one entry point.

Each case's ``request`` goes to ``margin.calculator.run`` as the bytes an integrator would send;
each ``expect`` path of the response must be within the case's ``tolerance``. The numbers live
in ../shared/vectors only (MARGIN_VECTORS_DIR); nothing is copied here.
"""

from __future__ import annotations

import json

import pytest

from margin.calculator import run
from tests.vectors import dig, load_vectors

FILES = ("pricing.json", "regt.json", "portfolio_margin.json", "span.json")


def _cases() -> list:
    params = []
    for name in FILES:
        for case in load_vectors(name)["cases"]:
            params.append(pytest.param(name, case, id=f"{name}::{case['name']}"))
    return params


@pytest.mark.parametrize("file, case", _cases())
def test_reference_case(file: str, case: dict) -> None:
    status, out = run(json.dumps(case["request"]).encode())
    assert status == 200, out.decode()
    document = json.loads(out)
    tolerance = case["tolerance"]
    misses = {}
    for path, expected in case["expect"].items():
        got = dig(document, path)
        if got is None or abs(got - expected) > tolerance:
            misses[path] = {"expected": expected, "got": got, "tolerance": tolerance}
    assert not misses, f"{file} / {case['name']}: {misses}"
