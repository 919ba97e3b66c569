"""check_overrides: what a firm may change in its own parameter set, and how it is refused."""

from __future__ import annotations

import pytest

from margin.engine.parameters import check_overrides, load_parameter_set

BASE = load_parameter_set()


@pytest.mark.parametrize("changes", [
    {},
    {"defi": {"haircut_tiers": {"other": [[500000, 0.3], [None, 0.7]]}}},
    {"defi": {"crypto_grid": [-0.8, -0.5, 0.5, 1.0], "large_caps": ["BTC", "ETH", "SOL"]}},
    {"house": {"overrides": {"symbols": {"GME": {"range": 0.5, "eligible": False}},
                             "ineligible_range": 0.8}}},
    {"house": {"snapshot_components": {"vol_shift": False}}, "var": {"horizons": [1, 2, 5]}},
    {"span": {"price_scan": 2500.0}},
])
def test_valid_firm_changes(changes) -> None:
    assert check_overrides(BASE, changes) == []


@pytest.mark.parametrize("changes, expected", [
    ([], [("", "the overrides must be a JSON object")]),
    ({"portfolio_margin": {"minimum_per_contract": 0.1}}, [("portfolio_margin", "regulatory")]),
    ({"name": "mine"}, [("name", "is not a field")]),
    ({"house": {"vol_shift": "0.3"}}, [("house.vol_shift", "must be a number")]),
    ({"house": {"vol_shift": True}}, [("house.vol_shift", "must be a number")]),
    ({"house": {"vol_shift": float("inf")}}, [("house.vol_shift", "finite")]),
    ({"house": {"stress_range": -0.1}}, [("house.stress_range", "negative")]),
    ({"house": {"overrides": {"symbols": {"GME": {"rnage": 0.5}}}}},
     [("house.overrides.symbols.GME.rnage", "unknown field")]),
    ({"defi": {"liquidation_threshold": {"large_cap": 1.2}}},
     [("defi.liquidation_threshold.large_cap", "at most 1")]),
    ({"defi": {"haircut_tiers": {"large_cap": [[1000000, 0.05], [5000000, 0.1]]}}},
     [("defi.haircut_tiers.large_cap", "only the last tier is open-ended")]),
    ({"defi": {"haircut_tiers": {"large_cap": [[0.05], [None, 0.1]]}}},
     [("defi.haircut_tiers.large_cap", "pairs")]),
    ({"var": {"horizons": [1, -2]}}, [("var.horizons[1]", "negative")]),
])
def test_refused_changes_name_the_field(changes, expected) -> None:
    errors = check_overrides(BASE, changes)
    assert [path for path, _ in errors] == [path for path, _ in expected]
    for (_, message), (_, fragment) in zip(errors, expected, strict=True):
        assert fragment in message
