"""``pre_trade``: the pre-trade check (``margin.pretrade.check``) on a 50-position portfolio-
margin account, called in a warm process with its database reads, as the API calls it.

The book: 10 underlyings, each held as stock with two puts and two calls on it (50 positions),
priced, with vols and a rate; the account's current margin written by the sweep (in this
process), so the check reads "before" from the clean row and values only the book after the
order on the account's cached risk arrays (``margin.pretrade_arrays``: a warm process keeps
them). Beside it the same check without the cached arrays (``use_cache=False``: the book after
the order valued as the sweep values it), the buying power's search (``buying_power=True``)
both ways, the queries per check, the CPU time per check (the machine is shared: wall time
carries the neighbours' load), the rebuild of the arrays on a miss, and the same book in a
Reg T account (not cached: its book after the order is valued whole).

The database: when another database bench of this process has already set Django up, its
database gets the bench's own firm; otherwise the bench creates its own small database on
PostgreSQL at 127.0.0.1:5432 (user postgres), migrates it, and drops it at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from .runs import BENCHES, BenchContext

N_CALLS = 1000
N_UNCACHED = 100
N_WARM = 10
N_BUYING_POWER = 50
N_BUYING_POWER_UNCACHED = 3
UNDERLYINGS = 10  # x (stock, 2 puts, 2 calls) = 50 positions


def _django(ctx: BenchContext) -> None:
    from django.conf import settings

    if settings.configured:
        return  # another database bench set up its own database: the firm below is ours
    from .database import PG_SERVER, _server, _setup_django

    name = f"pmargin_bench_pretrade_{os.getpid()}"
    _server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _server(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        _server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    ctx.closers.append(drop)
    _setup_django(f"{PG_SERVER}/{name}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _book() -> tuple[Any, list[Any]]:
    """The firm, its 50-position PM account (valued by the sweep) and an order per
    underlying."""
    from django.utils import timezone

    from accounts import services as book
    from accounts.models import Instrument
    from brokerage.scope import firm_scope
    from brokerage.tenancy import create_firm
    from margin.market_data import exchange_date, load_implied_vols, load_prices, set_risk_free_rate
    from margin.pretrade import Order
    from margin.tasks import recompute_accounts

    firm = create_firm(name="Pre-trade bench", slug=f"pretrade-bench-{os.getpid()}")
    today, now = exchange_date(), timezone.now() - timedelta(minutes=1)
    rng = np.random.default_rng(13)
    holdings: list[tuple[Instrument, int]] = []
    prices, vols, orders = [], [], []
    for k in range(UNDERLYINGS):
        symbol = f"PTB{os.getpid() % 1000}{k}"
        price = float(rng.uniform(20, 400))
        stock = book.create_instrument(symbol=symbol, kind="stock", actor=None,
                                       product_class="equity", class_group=symbol,
                                       product_group=f"G{k % 4}")
        prices.append({"symbol": symbol, "price": f"{price:.2f}", "observed_at": now})
        holdings.append((stock, int(rng.integers(1, 20)) * 10))
        for right, moneyness in (("put", 0.9), ("put", 0.95), ("call", 1.05), ("call", 1.1)):
            expiry = today + timedelta(days=int(rng.choice([30, 60, 120])))
            strike = Decimal(f"{price * moneyness:.0f}")
            option = book.create_instrument(
                symbol=f"{symbol} {expiry:%y%m%d}{right[0].upper()}{strike}",
                kind="equity_option", actor=None, underlying=stock, product_class="equity",
                class_group=symbol, product_group=stock.product_group,
                multiplier=Decimal(100), strike=strike, right=right, expiry=expiry,
                exercise_style="american")
            vols.append({"symbol": option.symbol, "observed_at": now,
                         "volatility": f"{rng.uniform(0.2, 0.6):.4f}"})
            holdings.append((option, int(rng.integers(1, 10)) * int(rng.choice([-1, 1]))))
        orders.append(Order(holdings[-2][0], "sell", Decimal(2)))
    load_prices(observations=prices, source="vendor", actor=None)
    load_implied_vols(observations=vols, source="vendor", actor=None)
    set_risk_free_rate(rate="0.04", observed_on=today, actor=None)
    with firm_scope(firm):
        client = book.create_client(
            firm=firm, actor=None, kind="person", name="Bench Client",
            email="bench@example.com", born_or_incorporated_on=today.replace(year=1970),
            investment_objective="speculation", options_approval_level=4,
            annual_income=Decimal(1), net_worth=Decimal(1), liquid_net_worth=Decimal(1))
        account = book.open_account(client=client, number="PTB-1", registration="individual",
                                    margin_type="portfolio_margin", actor=None)
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("5000000"),
                               actor=None)
        for instrument, quantity in holdings:
            book.set_position(account=account, instrument=instrument,
                              quantity=Decimal(quantity), actor=None)
        # the same book in a Reg T account (its check values the book after the order whole)
        reg_t = book.open_account(client=client, number="PTB-2", registration="individual",
                                  margin_type="reg_t", actor=None)
        book.post_ledger_entry(account=reg_t, kind="deposit", amount=Decimal("5000000"),
                               actor=None)
        for instrument, quantity in holdings:
            book.set_position(account=reg_t, instrument=instrument,
                              quantity=Decimal(quantity), actor=None)
    recompute_accounts(firm.pk, [account.pk, reg_t.pk])
    return account, reg_t, orders


def _timed(fn, n: int) -> dict[str, float]:
    """p50 and p99 of wall time, and the CPU time per call (the machine is shared: the wall
    time carries the neighbours' load, the CPU time this process's own work)."""
    samples = np.empty(n)
    cpu = time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples[i] = time.perf_counter() - t0
    cpu = time.process_time() - cpu
    return {"p50_us": round(float(np.percentile(samples, 50)) * 1e6, 1),
            "p99_us": round(float(np.percentile(samples, 99)) * 1e6, 1),
            "cpu_us": round(cpu / n * 1e6, 1)}


def _queries(fn) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        fn(0)
    return len(queries)


def bench_pre_trade(ctx: BenchContext) -> Iterable[dict]:
    _django(ctx)
    from brokerage.scope import firm_scope
    from margin import pretrade_arrays
    from margin.models import AccountMargin
    from margin.pretrade import check

    account, reg_t, orders = _book()
    with firm_scope(account.firm):
        row = AccountMargin.objects.get(account=account)
        assert not row.is_dirty and not row.flag, row.flag
        positions = account.positions.count()

        def run(cached: bool, buying_power: bool = False, on=account):
            def call(i: int):
                return check(account=on, orders=[orders[i % len(orders)]],
                             buying_power=buying_power, use_cache=cached)
            return call

        for i in range(N_WARM):
            run(True)(i)
            run(False)(i)
        warm = _timed(run(True), N_CALLS)
        uncached = _timed(run(False), N_UNCACHED)
        with_bp = _timed(run(True, buying_power=True), N_BUYING_POWER)
        uncached_bp = _timed(run(False, buying_power=True), N_BUYING_POWER_UNCACHED)
        queries, uncached_queries = _queries(run(True)), _queries(run(False))
        for i in range(N_WARM):
            run(True, on=reg_t)(i)
        reg_t_timed = _timed(run(True, on=reg_t), N_UNCACHED)
        reg_t_queries = _queries(run(True, on=reg_t))
        # a miss: the account's arrays rebuilt from one valuation of the book
        pretrade_arrays.clear()
        t0 = time.perf_counter()
        run(True)(0)
        rebuild_us = round((time.perf_counter() - t0) * 1e6, 1)
        assert pretrade_arrays.ACCOUNTS.misses == 1 and pretrade_arrays.ACCOUNTS.rows
        decision = run(True)(0)
        same = run(False)(0)
        assert (decision.before, decision.after) == (same.before, same.after)
    yield {"bench": "pre_trade", "positions": positions, "calls": N_CALLS,
           "p50_us": warm["p50_us"], "p99_us": warm["p99_us"], "cpu_us": warm["cpu_us"],
           "queries": queries,
           "without_cache_p50_us": uncached["p50_us"], "without_cache_p99_us": uncached["p99_us"],
           "without_cache_cpu_us": uncached["cpu_us"], "without_cache_queries": uncached_queries,
           "with_buying_power_p50_us": with_bp["p50_us"],
           "with_buying_power_p99_us": with_bp["p99_us"],
           "with_buying_power_cpu_us": with_bp["cpu_us"],
           "with_buying_power_without_cache_p50_us": uncached_bp["p50_us"],
           "with_buying_power_without_cache_cpu_us": uncached_bp["cpu_us"],
           "cache_miss_rebuild_us": rebuild_us,
           "reg_t_p50_us": reg_t_timed["p50_us"], "reg_t_p99_us": reg_t_timed["p99_us"],
           "reg_t_cpu_us": reg_t_timed["cpu_us"], "reg_t_queries": reg_t_queries,
           "revalues_only_changed_positions": True,
           "target_p99_us": 5000, "decision": decision.decision,
           "requirement_before": str(decision.before.requirement),
           "requirement_after": str(decision.after.requirement)}


BENCHES.append(bench_pre_trade)
