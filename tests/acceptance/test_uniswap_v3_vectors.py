"""Every case of the published Uniswap v3 reference vectors (../shared/vectors/uniswap_v3.json),
matched exactly. The numbers are read from the vectors file, never copied into the repo; a
missing folder or file fails at collection (``load_vectors`` raises)."""

from __future__ import annotations

import pytest

from margin.engine.defi import uniswap_v3 as u
from tests.vectors import load_vectors

V = load_vectors("uniswap_v3.json")

SECTIONS = {
    "get_sqrt_ratio_at_tick", "get_sqrt_ratio_at_tick_rejects", "get_tick_at_sqrt_ratio",
    "get_tick_at_sqrt_ratio_rejects", "amount_deltas", "liquidity_amounts", "fee_growth_inside",
}


def _pair(value: list | None) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def _ids(cases: list, key: str) -> list[str]:
    return [f"{i}:{case[key]}" for i, case in enumerate(cases)]


def test_every_section_is_exercised() -> None:
    # a new section in the vectors file must get a test here, not be skipped silently
    assert set(V) - {"about"} == SECTIONS


# TickMath both ways: function -> (the case's input key, its output key, the revert message)
TICK_MATH = {"get_sqrt_ratio_at_tick": ("tick", "sqrt_price_x96", "T"),
             "get_tick_at_sqrt_ratio": ("sqrt_price_x96", "tick", "R")}


@pytest.mark.parametrize(("function", "case"),
                         [(name, case) for name in TICK_MATH for case in V[name]],
                         ids=[f"{name}-{i}:{case['tick']}" for name in TICK_MATH
                              for i, case in enumerate(V[name])])
def test_tick_math(function: str, case: dict) -> None:
    given, expected, _ = TICK_MATH[function]
    assert getattr(u, function)(int(case[given])) == int(case[expected])


@pytest.mark.parametrize(("function", "value"),
                         [(name, value) for name in TICK_MATH for value in V[f"{name}_rejects"]])
def test_tick_math_rejects(function: str, value: int | str) -> None:
    with pytest.raises(ValueError, match=f"^{TICK_MATH[function][2]}$"):
        getattr(u, function)(int(value))


@pytest.mark.parametrize("case", V["amount_deltas"],
                         ids=[f"{c['function']}-{'up' if c['round_up'] else 'down'}"
                              for c in V["amount_deltas"]])
def test_amount_deltas(case: dict) -> None:
    function = {"amount0_delta": u.get_amount0_delta,
                "amount1_delta": u.get_amount1_delta}[case["function"]]
    got = function(int(case["sqrt_a"]), int(case["sqrt_b"]), int(case["liquidity"]),
                   bool(case["round_up"]))
    assert got == int(case["amount"])


LA = V["liquidity_amounts"]


@pytest.mark.parametrize("case", LA["cases"], ids=_ids(LA["cases"], "sqrt_price_x96"))
def test_get_liquidity_for_amounts(case: dict) -> None:
    liquidity = u.get_liquidity_for_amounts(int(case["sqrt_price_x96"]), int(LA["sqrt_a"]),
                                            int(LA["sqrt_b"]), int(LA["amount0"]),
                                            int(LA["amount1"]))
    assert liquidity == int(case["liquidity_for_amounts"])


@pytest.mark.parametrize("case", LA["cases"], ids=_ids(LA["cases"], "sqrt_price_x96"))
def test_get_amounts_for_liquidity(case: dict) -> None:
    amounts = u.get_amounts_for_liquidity(int(case["sqrt_price_x96"]), int(LA["sqrt_a"]),
                                          int(LA["sqrt_b"]), int(case["liquidity_for_amounts"]))
    assert list(amounts) == [int(a) for a in case["amounts_for_liquidity"]]


FG = V["fee_growth_inside"]


@pytest.mark.parametrize("case", FG["cases"], ids=[str(i) for i in range(len(FG["cases"]))])
def test_fee_growth_inside(case: dict) -> None:
    inside = u.get_fee_growth_inside(
        int(FG["tick_lower"]), int(FG["tick_upper"]), int(case["tick_current"]),
        int(FG["global0"]), int(FG["global1"]),
        _pair(case["lower_outside"]), _pair(case["upper_outside"]))
    assert list(inside) == [int(x) for x in case["inside"]]
