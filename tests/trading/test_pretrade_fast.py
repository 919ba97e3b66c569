"""The pre-trade check on cached risk arrays (``margin.pretrade_arrays``): the same figures,
reasons and buying power as valuing both books, and never stale: a price move or a position
change (each raises the account's margin version) rebuilds the account's arrays."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as book
from brokerage.scope import firm_scope
from margin import pretrade, pretrade_arrays
from margin.calls.models import Restriction
from margin.calls.policy import active_policy
from margin.market_data import exchange_date, load_prices
from margin.tasks import recompute_accounts
from tests.trading.conftest import pm_account
from tests.trading.test_pretrade import order

pytestmark = pytest.mark.django_db


def both(account, orders, buying_power=False):
    """The check on the cached arrays, and valuing both books (no cache, no current row)."""
    fast = pretrade.check(account=account, orders=orders, buying_power=buying_power)
    full = pretrade.check(account=account, orders=orders, buying_power=buying_power,
                          use_cache=False, use_current_margin=False)
    return fast, full


def cached_books() -> list:
    return [b for b in pretrade_arrays.ACCOUNTS.rows.values()
            if b is not pretrade_arrays.NOT_COVERED]


def same(fast, full) -> None:
    assert fast.before == full.before
    assert fast.after == full.after
    assert fast.reasons == full.reasons
    assert fast.buying_power == full.buying_power


@pytest.mark.parametrize("seed", [4, 5])
def test_the_cached_check_equals_valuing_both_books_on_random_books(world, market, seed):
    rng = np.random.default_rng(seed)
    keys = sorted(market)
    holdings = {keys[int(k)]: int(rng.integers(1, 20)) * int(rng.choice([-1, 1]))
                for k in rng.choice(len(keys), size=6, replace=False)}
    account = pm_account(world, market, cash="300000", holdings=holdings)
    held = [k for k in keys if k in holdings]
    other = [k for k in keys if k not in holdings]
    # a held contract closed out, another moved, and a contract not held (a new class group
    # or a new contract of a held one)
    orders = [order(market, held[0], "sell" if holdings[held[0]] > 0 else "buy",
                    abs(holdings[held[0]])),
              order(market, held[1], str(rng.choice(["buy", "sell"])), int(rng.integers(1, 9))),
              order(market, other[int(rng.integers(len(other)))], "sell", 2)]
    pretrade_arrays.clear()
    with firm_scope(world.firm_a):
        fast, full = both(account, orders, buying_power=True)
    assert pretrade_arrays.ACCOUNTS.misses == 1 and len(cached_books()) == 1
    assert len(pretrade_arrays.CONTRACTS.rows) == 1
    same(fast, full)


def test_the_cache_misses_after_a_price_move_and_after_a_position_change(world, market):
    account = pm_account(world, market, cash="200000",
                         holdings={"AAA put 0.9": -20, "AAA": 300, "BBB call 1.1": 15,
                                   "CCC put 1.0": -4})
    recompute_accounts(world.firm_a.pk, [account.pk])
    orders = [order(market, "AAA put 0.9", "sell", 6), order(market, "CCC", "buy", 20)]
    pretrade_arrays.clear()
    cache = pretrade_arrays.ACCOUNTS
    with firm_scope(world.firm_a):
        first = pretrade.check(account=account, orders=orders, buying_power=False)
        assert (cache.misses, cache.hits) == (1, 0) and len(cached_books()) == 1
        again = pretrade.check(account=account, orders=orders, buying_power=False)
        assert (cache.misses, cache.hits) == (1, 1)
        same(again, first)
        same(first, pretrade.check(account=account, orders=orders, buying_power=False,
                                   use_cache=False))

    load_prices(observations=[{"symbol": "AAA", "price": "126.00",
                               "observed_at": timezone.now() - timedelta(seconds=5)}],
                source="vendor", actor=None)
    with firm_scope(world.firm_a):
        moved, full = both(account, orders)
        assert cache.misses == 2
        same(moved, full)
        assert moved.after.requirement != first.after.requirement

        book.set_position(account=account, instrument=market["BBB call 1.1"],
                          quantity=Decimal(-5), actor=world.a.users["margin_desk"])
        changed, full = both(account, orders)
        assert cache.misses == 3
        same(changed, full)
        assert changed.before.requirement != moved.before.requirement


def test_a_cached_check_reads_one_row_and_the_restrictions_only_when_one_is_active(
        world, market):
    account = pm_account(world, market)
    recompute_accounts(world.firm_a.pk, [account.pk])
    orders = [order(market, "AAA put 0.9", "sell", 2)]  # raises the requirement
    with firm_scope(world.firm_a):
        pretrade.check(account=account, orders=orders, buying_power=False)
        with CaptureQueriesContext(connection) as queries:
            quiet = pretrade.check(account=account, orders=orders)
        # the current margin row with its version, an active restriction, the call policy
        # and a past-due PM deficiency, in one query
        assert len(queries) == 1, [q["sql"] for q in queries]
        Restriction.objects.create(firm=world.firm_a, account=account, kind="closing_only",
                                   starts_on=exchange_date(), cause="test",
                                   policy=active_policy(world.firm_a))
        with CaptureQueriesContext(connection) as queries:
            restricted = pretrade.check(account=account, orders=orders)
        assert len(queries) == 2
    assert [r.code for r in restricted.reasons] == ["restricted", *[r.code for r in
                                                                    quiet.reasons]]
