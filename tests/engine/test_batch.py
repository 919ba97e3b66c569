"""The chunk batch path (``margin.engine.batch``) gives every account the numbers the
calculator's portfolio-margin block gives for the account's own portfolio: random books from
the synthetic generator, with the house components the live snapshots apply."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from margin.bench.book import account_holdings, account_portfolio, make_book
from margin.engine.batch import ChunkBook, reprice_universe, value_chunk, value_universe
from margin.engine.portfolio_margin import calculate_block
from margin.engine.series import LINEAR
from margin.engine.valuation import value_positions

HOUSE = {"vol_shift": True, "concentration": True, "stress_range": True}


def _chunk(seed: int, n_accounts: int, house: dict | None):
    sb = make_book(seed=seed, n_accounts=n_accounts, n_positions=n_accounts * 12,
                   n_series=600, n_underlyings=40)
    holdings = [account_holdings(sb, a) for a in range(n_accounts)]
    contracts = np.unique(np.concatenate([ser for ser, _ in holdings]))
    # the universe: one contract each, quantity 1 (an option's 100 units, a stock's 1)
    per_contract = np.where(sb.series.kind[contracts] == LINEAR, 1.0, 100.0)
    universe = dataclasses.replace(account_portfolio(sb, contracts, per_contract), house=house)
    index = {int(c): k for k, c in enumerate(contracts)}
    account, contract, quantity = [], [], []
    for a, (ser, units) in enumerate(holdings):
        for s, u in zip(ser.tolist(), units.tolist(), strict=True):
            account.append(a)
            contract.append(index[s])
            quantity.append(u / (1.0 if sb.series.kind[s] == LINEAR else 100.0))
    book = ChunkBook(universe, n_accounts, np.array(account), np.array(contract),
                     np.array(quantity))
    return sb, holdings, book


def _one(sb, ser, units, house):
    order = np.argsort(ser, kind="stable")  # the universe's order, as the sweep's symbols are
    portfolio = dataclasses.replace(account_portfolio(sb, ser[order], units[order]),
                                    house=house)
    valued = value_positions(portfolio, sb.params, need_model=True)
    return calculate_block(portfolio, sb.params, valued), valued.net_liquidation_value


@pytest.mark.parametrize(("seed", "house"), [(7, HOUSE), (11, HOUSE), (13, None)])
def test_every_account_matches_the_calculator(seed: int, house: dict | None) -> None:
    sb, holdings, book = _chunk(seed, 60, house)
    figures = value_chunk(book, sb.params)
    assert figures.valued.all()
    for a, (ser, units) in enumerate(holdings):
        block, nlv = _one(sb, ser, units, house)
        assert figures.net_liquidation_value[a] == pytest.approx(nlv, rel=1e-12, abs=1e-6)
        assert figures.regulatory[a] == pytest.approx(block["regulatory_requirement"],
                                                      rel=1e-12, abs=1e-6)
        assert figures.requirement[a] == pytest.approx(block["requirement"], rel=1e-12,
                                                       abs=1e-6)
        assert figures.minimum_charge[a] == pytest.approx(block["minimum_charge"], abs=1e-6)
        assert figures.components(a) == pytest.approx(block["house_components"], rel=1e-12,
                                                      abs=1e-6)
        expected = {g["class_group"]: g["pnl"] for g in block["class_groups"]}
        assert figures.risk_arrays[a].keys() == expected.keys()
        for name, pnl in expected.items():
            np.testing.assert_allclose(figures.risk_arrays[a][name], pnl, rtol=1e-12,
                                       atol=1e-6)


def test_an_account_holding_a_contract_the_batch_does_not_cover_is_left_to_the_calculator(
) -> None:
    sb, _, book = _chunk(7, 10, HOUSE)
    first = book.contract[book.account == 3][0]
    positions = list(book.universe.positions)
    positions[first] = dataclasses.replace(positions[first], kind="crypto")
    figures = value_chunk(dataclasses.replace(
        book, universe=dataclasses.replace(book.universe, positions=tuple(positions))), sb.params)
    holders = set(book.account[book.contract == first].tolist())
    assert 3 in holders
    assert [a for a in range(10) if not figures.valued[a]] == sorted(holders)


def test_a_contract_the_valuation_refuses_leaves_only_its_holders_out() -> None:
    sb, _, book = _chunk(7, 10, HOUSE)
    option = next(k for k in book.contract[book.account == 2].tolist()
                  if book.universe.positions[k].kind == "option")
    positions = list(book.universe.positions)
    # a mark far above any no-arbitrage bound: the calculator refuses the book
    positions[option] = dataclasses.replace(positions[option], price=1e9, implied_vol=None)
    figures = value_chunk(dataclasses.replace(
        book, universe=dataclasses.replace(book.universe, positions=tuple(positions))), sb.params)
    holders = set(book.account[book.contract == option].tolist())
    assert set(np.flatnonzero(~figures.valued).tolist()) == holders
    assert figures.refused[option].code == "outside_no_arbitrage_bounds"


def test_every_refused_mark_is_found_in_one_pass(monkeypatch) -> None:
    """Stale marks (quotes older than a move, a day rolled over) are refused together: the
    universe is valued once more to find them all, not once per mark."""
    from margin.engine import batch

    sb, _, book = _chunk(11, 30, HOUSE)
    options = [k for k, p in enumerate(book.universe.positions) if p.kind == "option"][:6]
    positions = list(book.universe.positions)
    for k in options:
        positions[k] = dataclasses.replace(positions[k], price=1e9, implied_vol=None)
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("need_model"))
        return value_positions(*args, **kwargs)

    monkeypatch.setattr(batch, "value_positions", counted)
    figures = value_chunk(dataclasses.replace(
        book, universe=dataclasses.replace(book.universe, positions=tuple(positions))), sb.params)
    assert sorted(figures.refused) == options
    assert {e.code for e in figures.refused.values()} == {"outside_no_arbitrage_bounds"}
    assert calls == [True, False, True]  # refused, every refusal found, valued
    holders = set(book.account[np.isin(book.contract, options)].tolist())
    assert set(np.flatnonzero(~figures.valued).tolist()) == holders


def test_a_universe_repriced_in_part_values_as_one_valued_whole_at_the_new_prices() -> None:
    """``reprice_universe``: the contracts on a moved underlying valued again on their own and
    put in the kept universe's run give every account the figures a whole valuation gives; a
    mark refused before the move and after stays refused."""
    sb, _, book = _chunk(13, 40, HOUSE)
    universe = book.universe
    option = next(k for k, p in enumerate(universe.positions) if p.kind == "option")
    root = universe.positions[option].root
    positions = list(universe.positions)
    positions[option] = dataclasses.replace(positions[option], price=1e9, implied_vol=None)
    universe = dataclasses.replace(universe, positions=tuple(positions))
    kept = value_universe(universe, sb.params)
    value_chunk(dataclasses.replace(book, universe=universe), sb.params, kept)  # grids priced
    assert kept.pnl and option in kept.refused

    moved = dataclasses.replace(universe.underlyings[root],
                                price=universe.underlyings[root].price * 0.93)
    after = dataclasses.replace(universe, underlyings={**universe.underlyings, root: moved})
    at = np.array([k for k, p in enumerate(after.positions) if p.root == root])
    part = dataclasses.replace(after, positions=tuple(
        dataclasses.replace(after.positions[k], index=j) for j, k in enumerate(at.tolist())),
        underlyings={root: moved})
    repriced = reprice_universe(kept, value_universe(part, sb.params), at)
    assert repriced is not None and option in repriced.refused
    assert repriced.universe.underlyings[root].price == moved.price
    got = value_chunk(dataclasses.replace(book, universe=repriced.universe), sb.params, repriced)
    want = value_chunk(dataclasses.replace(book, universe=after), sb.params)
    np.testing.assert_array_equal(got.valued, want.valued)
    for name in ("net_liquidation_value", "regulatory", "requirement", "minimum_charge"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12,
                                   atol=1e-6, err_msg=name)
    assert kept.universe.underlyings[root].price != moved.price  # the kept run left as it was


def test_a_warm_series_cache_gives_the_same_figures() -> None:
    """A worker values chunk after chunk of one market state: the second chunk's series come
    from the cache, with the figures computing them again gives."""
    from margin.engine.batch import SERIES_PNL

    sb, _, book = _chunk(17, 40, HOUSE)
    SERIES_PNL.rows.clear()
    misses = SERIES_PNL.misses
    cold = value_chunk(book, sb.params)
    hits, computed = SERIES_PNL.hits, SERIES_PNL.misses - misses
    warm = value_chunk(book, sb.params)
    assert SERIES_PNL.hits - hits == computed > 0  # every row of the second from the cache
    assert SERIES_PNL.misses - misses == computed
    for name in ("net_liquidation_value", "regulatory", "requirement", "house_requirement"):
        np.testing.assert_array_equal(getattr(cold, name), getattr(warm, name))
