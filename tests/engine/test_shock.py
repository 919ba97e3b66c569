"""The firm-wide simulator's batch path (``margin.engine.shock.ShockableBook``: the prepared
chunk revalued on a shifted series table, only the moved contracts' holders aggregated again)
gives every account what the batch path gives for the same book valued from scratch at the
shocked market (``shock_portfolio`` of its universe), which the calculator's block equals
account by account (tests/engine/test_batch.py): one underlying, a class group, a named
scenario with an implied-vol shift."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from margin.engine.batch import prepare_chunk, value_chunk
from margin.engine.errors import EngineInputError
from margin.engine.shock import (
    ShockableBook,
    check_move,
    named_shock,
    shock_portfolio,
    symbol_shock,
)
from tests.engine.test_batch import HOUSE, _chunk


@pytest.mark.parametrize("ask", ["one", "group", "2020-03-16", "2008-10"])
def test_the_shifted_series_table_equals_a_revaluation_from_scratch(ask: str) -> None:
    sb, _, book = _chunk(17, 80, HOUSE)
    shockable = ShockableBook(prepare_chunk(book, sb.params), book.n_accounts)
    now = shockable.figures(None)
    base = value_chunk(book, sb.params)
    np.testing.assert_allclose(now.requirement, base.requirement, rtol=1e-12, atol=1e-6)
    unds = book.universe.underlyings
    held = sorted(p.root for p in book.universe.positions)
    if ask == "one":
        shock = symbol_shock(held[len(held) // 2], -0.10, unds)
    elif ask == "group":
        shock = symbol_shock(unds[held[0]].class_group, 0.07, unds)
    else:
        shock = named_shock(ask, unds)
    assert shock.moves and (bool(shock.vol_shifts) == (ask == "2020-03-16"))
    after = shockable.figures(shock)
    moved = dataclasses.replace(book, universe=shock_portfolio(book.universe, shock, sb.params))
    scratch = value_chunk(moved, sb.params)
    assert scratch.valued.all()
    np.testing.assert_allclose(after.net_liquidation_value, scratch.net_liquidation_value,
                               rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(after.requirement, scratch.requirement, rtol=1e-10, atol=1e-6)
    changed = after.requirement != now.requirement
    assert changed.any() and (ask != "one" or not changed.all())


@pytest.mark.parametrize(("move", "words"), [
    (float("nan"), "finite"), (float("inf"), "finite"), (-1.5, "between"), (11.0, "between"),
    ("ten", "not a number")])
def test_a_move_out_of_range_is_refused_in_words(move, words) -> None:
    with pytest.raises(EngineInputError, match=words):
        check_move(move)


def test_an_unknown_symbol_or_scenario_is_named() -> None:
    sb, _, book = _chunk(17, 5, HOUSE)
    with pytest.raises(EngineInputError, match="'NOPE'"):
        symbol_shock("NOPE", -0.1, book.universe.underlyings)
    with pytest.raises(EngineInputError, match="named ones are 1987-10-19"):
        named_shock("1929-10", book.universe.underlyings)
