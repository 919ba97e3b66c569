"""A worker's kept universe after a move of the market (margin.valuing.UniverseCache): only the
contracts resting on what moved are valued again (margin.engine.batch.reprice_universe), and
the universe that comes out values every account as the calculator does and is the one a
fresh build at the new state gives.

These tests commit (``transaction=True``): the kept market data, whose generations tell what
moved, is kept only outside a transaction (margin.market_cache)."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from accounts.models import Account, Instrument
from brokerage.scope import firm_scope
from margin.market_cache import MARKET
from margin.market_data import load_implied_vols, load_prices
from margin.valuing import UNIVERSES
from tests.factories import shared_instrument
from tests.margin.parity import assert_batch_equals_calculator
from tests.margin.test_batch_sweep import _random_book

pytestmark = pytest.mark.django_db(transaction=True)


def _listed(world, accounts: list[Account]) -> list[Account]:
    with firm_scope(world.firm_a):
        return list(Account.objects.filter(pk__in=[a.pk for a in accounts])
                    .select_related("firm").order_by("pk"))


def _valued(world, listed: list[Account]) -> int:
    """The accounts valued in batch, checked against the calculator, on the kept market."""
    MARKET.sync()
    with firm_scope(world.firm_a):
        return assert_batch_equals_calculator(listed, market=MARKET)


def _load(symbol: str, price: str) -> None:
    load_prices(observations=[{"symbol": symbol, "price": price, "observed_at": timezone.now()}],
                source="vendor", actor=None)


def test_a_move_values_again_only_the_contracts_resting_on_it(world, settings) -> None:
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    listed = _listed(world, _random_book(world, 25, 5))
    assert _valued(world, listed) == 25
    kept = UNIVERSES.kept
    before = kept.whole
    assert (UNIVERSES.builds, UNIVERSES.repriced) == (1, 0)

    _load("AAA", "105.60")  # AAA and its options move; the other underlyings' stay
    assert _valued(world, listed) == 25
    assert (UNIVERSES.builds, UNIVERSES.repriced) == (1, 1)
    assert UNIVERSES.kept is kept and kept.whole is not before
    after = kept.whole
    moved = {k for k, p in enumerate(after.universe.positions) if p.root == "AAA"}
    assert moved and all(
        (p is q) == (k not in moved) for k, (p, q) in enumerate(
            zip(before.universe.positions, after.universe.positions, strict=True)))
    assert after.universe.underlyings["AAA"].price == 105.60
    assert before.universe.underlyings["AAA"].price == 120.0  # the kept one left as it was

    # what a build from scratch at the new state gives, row for row
    UNIVERSES.clear()
    assert _valued(world, listed) == 25
    fresh = UNIVERSES.kept.whole
    assert [p.id for p in fresh.universe.positions] == [p.id for p in after.universe.positions]
    np.testing.assert_array_equal(fresh.index, after.index)
    np.testing.assert_array_equal(fresh.run.pos_series, after.run.pos_series)
    for name in ("spot", "mark", "vol", "t", "model", "min_unit", "class_group"):
        np.testing.assert_array_equal(getattr(fresh.run.series, name),
                                      getattr(after.run.series, name), err_msg=name)
    np.testing.assert_array_equal(fresh.valued.market_values, after.valued.market_values)
    assert fresh.pnl.keys() == after.pnl.keys() and fresh.pnl
    for name, pnl in fresh.pnl.items():
        np.testing.assert_array_equal(pnl, after.pnl[name], err_msg=name)


def test_a_vol_move_reprices_and_a_move_elsewhere_keeps_it_as_it_is(world, settings) -> None:
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    shared_instrument("ZZZ")  # held by no account
    listed = _listed(world, _random_book(world, 12, 3))
    assert _valued(world, listed) == 12
    kept = UNIVERSES.kept
    option = next(p for p in kept.whole.universe.positions if p.kind == "option")
    load_implied_vols(observations=[{"symbol": option.id, "volatility": "0.9100",
                                     "observed_at": timezone.now()}], source="vendor",
                      actor=None)
    assert _valued(world, listed) == 12
    assert (UNIVERSES.builds, UNIVERSES.repriced) == (1, 1)
    at = [k for k, p in enumerate(kept.whole.universe.positions) if p.id == option.id]
    assert kept.whole.universe.positions[at[0]].implied_vol == pytest.approx(0.91)

    # a price no contract of the universe rests on: the universe stands as it is
    whole = kept.whole
    _load("ZZZ", "12.00")
    assert _valued(world, listed) == 12
    assert kept.whole is whole and UNIVERSES.builds == 1


def test_a_small_chunk_builds_no_universe_after_a_move_the_kept_one_cannot_follow(
        world, settings) -> None:
    """A tick's small chunk is valued on the kept universe once brought up to date, but never
    builds the firm's: after an instrument itself changed it values its own contracts."""
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    listed = _listed(world, _random_book(world, 12, 9))
    assert _valued(world, listed) == 12
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 10
    _load("BBB", "47.00")
    assert _valued(world, listed[:4]) == 4  # repriced in part
    assert (UNIVERSES.builds, UNIVERSES.repriced) == (1, 1)
    Instrument.cross_firm.for_compliance(reason="test reference data").filter(
        symbol="CCC").update(dividend_yield="0.0125")
    assert _valued(world, listed[:4]) == 4  # on its own contracts
    assert UNIVERSES.builds == 1
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    assert _valued(world, listed) == 12
    assert UNIVERSES.builds == 2


def test_an_end_of_day_run_records_its_market_rows_once(world, settings) -> None:
    """Every chunk of an end-of-day run on a worker's kept market data names one market state
    (the rows of every instrument the kept universe rests on), stored once; each snapshot is
    reproduced from it."""
    from margin.models import MarginSnapshot, MarketState
    from margin.reproduce import recompute
    from margin.snapshots import History
    from margin.sweep import sweep_now

    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    settings.MARGIN_SWEEP_CHUNK = 4
    accounts = _random_book(world, 10, 7)  # marked dirty by their loads
    states = MarketState.objects.count()
    MARKET.sync()
    result = sweep_now(account_ids=[a.pk for a in accounts], history=History.END_OF_DAY)
    assert result.computed == 10
    snapshots = list(MarginSnapshot.cross_firm.for_compliance(reason="test").filter(
        account__in=accounts))
    assert len(snapshots) == 10 and len({s.market_state_id for s in snapshots}) == 1
    assert MarketState.objects.count() == states + 1
    assert all(s.price_ids == {} and s.vol_ids == {} for s in snapshots)
    assert all(recompute(s).matches for s in snapshots)
