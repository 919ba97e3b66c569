"""The sweep values portfolio-margin books through the engine's batch path, with the numbers the
calculator gives each account alone (the demo book is checked the same way in tests/demo)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.utils import timezone

from accounts import services as book
from accounts.models import Account, Instrument
from brokerage.scope import firm_scope
from margin.engine.batch import SERIES_PNL
from margin.market_data import exchange_date, load_implied_vols, load_prices, set_risk_free_rate
from margin.models import AccountMargin, MarginSnapshot
from margin.sweep import sweep_now
from margin.valuing import UNIVERSES, ChunkInputs, value_accounts, value_in_batch
from tests.factories import shared_instrument
from tests.margin.parity import assert_batch_equals_calculator

pytestmark = pytest.mark.django_db
#: symbol -> (kind, product class, product group, price, vol)
UNDERLYINGS = {
    "AAA": ("stock", "equity", "TECH", 120.0, 0.35), "BBB": ("stock", "equity", "TECH", 45.0, 0.5),
    "CCC": ("stock", "equity", "CCC", 310.0, 0.25), "DDD": ("etf", "equity", "DDD", 18.0, 0.6),
    "IDX": ("index", "broad_index", "IDX", 5000.0, 0.18),
}


def _random_book(world, n_accounts: int, seed: int) -> list[Account]:
    rng = np.random.default_rng(seed)
    today, now = exchange_date(), timezone.now()
    contracts, prices, vols = [], [], []
    for symbol, (kind, pclass, pgroup, price, vol) in UNDERLYINGS.items():
        under = shared_instrument(symbol, kind=kind, product_class=pclass, product_group=pgroup)
        if kind != "index":  # an index is priced, never held
            contracts.append(under)
        prices.append({"symbol": symbol, "price": f"{price:.2f}", "observed_at": now})
        for k in range(6):
            strike = Decimal(f"{price * rng.choice([0.8, 0.9, 1.0, 1.1, 1.2]):.0f}")
            right = "call" if k % 2 else "put"
            expiry = today + timedelta(days=int(rng.choice([9, 30, 95, 200])))
            option = shared_instrument(
                f"{symbol} {expiry:%y%m%d}{right[0].upper()}{strike}",
                kind="index_option" if kind == "index" else "equity_option",
                product_class=pclass, product_group=pgroup, underlying=under,
                multiplier=Decimal(100), strike=strike, right=right, expiry=expiry,
                exercise_style="european" if kind == "index" else "american")
            contracts.append(option)
            # no mark: valued at the model and the stored vol, as between quotes
            vols.append({"symbol": option.symbol, "observed_at": now,
                         "volatility": f"{vol * rng.uniform(0.9, 1.3):.4f}"})
    load_prices(observations=prices, source="vendor", actor=None)
    load_implied_vols(observations=vols, source="vendor", actor=None)
    set_risk_free_rate(rate="0.04", observed_on=today, actor=None)
    admin, desk = world.a.users["firm_admin"], world.a.users["margin_desk"]
    accounts = []
    with firm_scope(world.firm_a):
        for n in range(n_accounts):
            account = book.open_account(client=world.a.client, number=f"PM-{n:03d}",
                                        registration="individual",
                                        margin_type="portfolio_margin", actor=admin)
            book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("250000"),
                                   actor=desk)
            for k in rng.choice(len(contracts), size=int(rng.integers(1, 9)), replace=False):
                contract = contracts[int(k)]
                size = int(rng.integers(1, 30)) * (1 if contract.is_option else 10)
                book.set_position(account=account, instrument=contract, actor=desk,
                                  quantity=Decimal(size * int(rng.choice([-1, 1]))))
            accounts.append(account)
    return accounts


@pytest.mark.parametrize("seed", [3, 5])
def test_random_books_value_in_batch_as_the_calculator_values_each(world, seed: int) -> None:
    accounts = _random_book(world, 25, seed)
    with firm_scope(world.firm_a):
        listed = list(Account.objects.filter(pk__in=[a.pk for a in accounts])
                      .select_related("firm").order_by("pk"))
        assert assert_batch_equals_calculator(listed) == 25


def test_chunks_valued_on_the_kept_universe_match_the_calculator(world, settings) -> None:
    """A worker keeps the firm's universe across chunks (margin.valuing.UniverseCache): the
    first chunk builds it with every contract the firm's accounts hold, the next is valued on
    it, both with the calculator's numbers; a price load makes the next chunk build again."""
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    accounts = _random_book(world, 25, 5)
    with firm_scope(world.firm_a):
        listed = list(Account.objects.filter(pk__in=[a.pk for a in accounts])
                      .select_related("firm").order_by("pk"))
        assert assert_batch_equals_calculator(listed[:10]) == 10
        assert (UNIVERSES.builds, UNIVERSES.hits) == (1, 0)
        kept = UNIVERSES.kept
        held = {p.instrument_id for p in ChunkInputs.load(listed).positions.get(listed[0].pk)}
        assert held <= kept.contracts
        assert assert_batch_equals_calculator(listed[10:]) == 15
        assert (UNIVERSES.builds, UNIVERSES.hits) == (1, 1)
        # a small chunk (a tick's) is valued on the kept universe while it is current...
        settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 10
        assert assert_batch_equals_calculator(listed[:5]) == 5
        assert (UNIVERSES.builds, UNIVERSES.hits) == (1, 2)
        # ...and on its own contracts otherwise, their series P&L the universe's
        kept = UNIVERSES.kept
        UNIVERSES.kept = None
        misses, hits = SERIES_PNL.misses, SERIES_PNL.hits
        assert assert_batch_equals_calculator(listed[:5]) == 5
        assert SERIES_PNL.misses == misses and SERIES_PNL.hits > hits
        assert UNIVERSES.builds == 1  # a small chunk builds none
        UNIVERSES.kept = kept
        settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    load_prices(observations=[{"symbol": "AAA", "price": "105.60",
                               "observed_at": timezone.now()}], source="vendor", actor=None)
    with firm_scope(world.firm_a):
        assert assert_batch_equals_calculator(listed) == 25
        assert (UNIVERSES.builds, UNIVERSES.hits) == (2, 2)  # AAA moved: built again
        assert UNIVERSES.kept is not kept


def test_the_sweep_writes_the_batch_figures(world) -> None:
    accounts = _random_book(world, 12, 9)  # the loads and the book marked them dirty
    result = sweep_now(account_ids=[a.pk for a in accounts])
    assert (result.computed, result.flagged) == (12, {})
    with firm_scope(world.firm_a):
        snapshots = MarginSnapshot.objects.filter(account__in=accounts)
        assert snapshots.count() == 12  # each account's first valuation is history
        assert {tuple(s.methods) for s in snapshots} == {("portfolio_margin",)}
        assert all(s.result is None and s.risk_arrays for s in snapshots)
        current = {m.account_id: m for m in AccountMargin.objects.filter(account__in=accounts)}
        for snapshot in snapshots:
            row = current[snapshot.account_id]
            assert (row.equity, row.requirement, row.snapshot_id) == \
                (snapshot.equity, snapshot.requirement, snapshot.pk)


@pytest.mark.parametrize("universe", [False, True])
def test_a_contract_the_validator_refuses_sends_only_its_holders_to_the_calculator(
        world, settings, universe: bool):
    """An option past its expiry (positions not yet removed): its holders are flagged with the
    calculator's own refusal; every other account of the chunk is still valued in batch,
    whether the chunk would be valued on a kept universe or on its own."""
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1 if universe else 10_000
    accounts = _random_book(world, 25, 3)
    with firm_scope(world.firm_a):
        listed = list(Account.objects.filter(pk__in=[a.pk for a in accounts])
                      .select_related("firm").order_by("pk"))
        inputs = ChunkInputs.load(listed)
        option = next(p.instrument for a in listed for p in inputs.held(a)
                      if p.instrument.is_option)
        holders = {a.pk for a in listed if any(p.instrument_id == option.pk
                                               for p in inputs.held(a))}
    Instrument.cross_firm.for_compliance(reason="test: an option past its expiry").filter(
        pk=option.pk).update(expiry=exchange_date() - timedelta(days=1))
    with firm_scope(world.firm_a):
        inputs = ChunkInputs.load(listed)
        batched, left = value_in_batch(inputs, listed)
        flagged, valued = value_accounts(listed)
    assert {a.pk for a in left} == holders and len(batched) == 25 - len(holders)
    assert {f.account_id for f in flagged} == holders
    assert all("expired" in f.flag for f in flagged)
    assert len(valued) == 25 - len(holders)
