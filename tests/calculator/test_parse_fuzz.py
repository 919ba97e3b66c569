"""Whatever the body, the parser returns a Portfolio or a CalculatorError, nothing else."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.calculator.parse import CalculatorError, parse_request
from margin.engine.portfolio import Portfolio

from .requests import BASE

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

PATHS = [
    ("valuation_date",), ("rate",), ("methods",), ("underlyings",), ("positions",),
    ("underlyings", "IBM"), ("underlyings", "IBM", "price"), ("underlyings", "IBM", "type"),
    ("underlyings", "SPY", "class_group"), ("positions", 0), ("positions", 1, "strike"),
    ("positions", 1, "expiry"), ("positions", 1, "kind"), ("positions", 1, "multiplier"),
    ("positions", 1, "quantity"), ("house",), ("offsets",), ("stress",), ("history",),
    ("span_parameters",), ("valuation_time",),
]


def _parse(raw: str) -> None:
    try:
        assert isinstance(parse_request(raw), Portfolio)
    except CalculatorError as exc:
        assert exc.errors and all(set(e) == {"field", "code", "message"} for e in exc.errors)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=JSON_VALUES)
def test_any_value_anywhere(path, value):
    request = copy.deepcopy(BASE)
    target = request
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _parse(json.dumps(request))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_any_text(text):
    _parse(text)
