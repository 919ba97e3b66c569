"""Typed parameter sets: built once from the stored JSON, validated there, read by attribute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from margin.engine import parameters
from margin.engine.parameters import (
    ParameterSet,
    ParameterSetError,
    check_overrides,
    load_parameter_mapping,
    load_parameter_set,
    overlay,
)

SHIPPED = Path(parameters.__file__).with_name("data") / "default-2026.1.json"


def test_the_typed_set_holds_the_stored_numbers() -> None:
    stored = json.loads(SHIPPED.read_text())
    params = load_parameter_set()
    assert params.name == stored["name"] == "default-2026.1"
    assert params.reg_t.minimum_equity == stored["reg_t"]["minimum_equity"] == 2000.0
    assert params.portfolio_margin.points["equity"] == tuple(
        stored["portfolio_margin"]["points"]["equity"])
    assert params.portfolio_margin.minimum_per_contract == 0.375  # Cboe Rule 10.4
    assert params.house.concentration.top_class_groups == 2
    assert params.defi.haircut_tiers["large_cap"][-1] == (None, 0.2)
    assert params.defi.perp_margin["mid_cap"].maintenance == 0.05
    assert params.var.horizons == (1, 2) and params.var.min_history == 251
    assert params.span.price_scan is None  # optional: the class's widest point stands in
    assert params.as_mapping() == stored


def test_the_set_is_frozen_and_loaded_once() -> None:
    params = load_parameter_set()
    assert load_parameter_set() is params
    with pytest.raises(AttributeError):
        params.reg_t.minimum_equity = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        params.portfolio_margin.points["equity"] = (0.1,)  # type: ignore[index]
    params.as_mapping()["reg_t"]["minimum_equity"] = 0.0  # a copy: the set is untouched
    assert load_parameter_set().reg_t.minimum_equity == 2000.0


def test_offsets_and_tiers_are_read_by_method() -> None:
    pm = load_parameter_set().portfolio_margin
    assert pm.offset_for("SPX", "broad_index_high_cap") == 0.9
    assert pm.offset_for("IBM", "equity") == 0.0
    assert pm.offset_for("IBM", "equity", {"IBM": 0.4}) == 0.4
    defi = load_parameter_set().defi
    assert [defi.tier_of(s) for s in ("ETH", "SOL", "PEPE")] == [
        "large_cap", "mid_cap", "long_tail"]


def test_with_overrides_merges_over_the_stored_mapping() -> None:
    firm = load_parameter_set().with_overrides({"var": {"confidence": 0.95},
                                                "house": {"overrides": {"symbols": {
                                                    "GME": {"range": 0.5}}}}})
    assert firm.var.confidence == 0.95 and firm.var.es_confidence == 0.975
    assert firm.house.overrides.symbols["GME"].range == 0.5
    assert firm.house.overrides.symbols["GME"].eligible is None
    assert load_parameter_set().var.confidence == 0.99


@pytest.mark.parametrize("changes, expected", [
    ({"reg_t": {"minimum_equity": "2000"}}, ("reg_t.minimum_equity", "must be a number")),
    ({"reg_t": {"minimum_equity": float("nan")}}, ("reg_t.minimum_equity", "finite")),
    ({"reg_t": {"minimum_equity": -1.0}}, ("reg_t.minimum_equity", "negative")),
    ({"var": {"confidnce": 0.95}}, ("var.confidnce", "unknown field")),
    ({"var": {"horizons": [1, 2.5]}}, ("var.horizons[1]", "must be an integer")),
    ({"defi": {"max_ltv": 1.5}}, ("defi.max_ltv", "at most 1")),
    ({"defi": {"haircut_tiers": {"other": [[None, 0.5], [1000, 0.6]]}}},
     ("defi.haircut_tiers.other", "open-ended")),
    ({"house": {"concentration": {"top_move": 0.3, "other_move": 0.05}}}, None),
    ({"house": {"stress_range": 1.5}}, ("house.stress_range", "at most 1")),
    ({"house": {"overrides": {"symbols": {"GME": {"down": 2.0}}}}},
     ("house.overrides.symbols.GME.down", "at most 1")),
])
def test_a_set_is_validated_once_at_load(changes, expected) -> None:
    mapping = overlay(load_parameter_mapping(), changes)
    if expected is None:
        assert ParameterSet.from_mapping(mapping).house.concentration.top_move == 0.3
        return
    with pytest.raises(ParameterSetError) as caught:
        ParameterSet.from_mapping(mapping)
    (path, message), *_ = caught.value.problems
    assert path == expected[0] and expected[1] in message


def test_a_missing_field_is_named() -> None:
    mapping = load_parameter_mapping()
    del mapping["reg_t"]["minimum_equity"]
    with pytest.raises(ParameterSetError) as caught:
        ParameterSet.from_mapping(mapping)
    assert caught.value.problems == [("reg_t.minimum_equity", "is required")]


def test_firm_overrides_must_also_build_a_typed_set() -> None:
    assert check_overrides(load_parameter_set(), {"var": {"horizons": [1, 2.5]}}) == [
        ("var.horizons[1]", "must be an integer")]
