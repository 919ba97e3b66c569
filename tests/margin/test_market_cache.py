"""A sweep worker's kept market data (margin.market_cache): the triggers log each changed
instrument with its writing transaction, and kept rows are read again exactly when a
transaction the kept snapshot could not see changed them, whatever order transactions commit in.

These tests commit (``transaction=True``): the cache keeps nothing inside a transaction."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts import services as book
from brokerage.scope import firm_scope
from margin.market_cache import MARKET, prune_market_changes
from margin.market_data import load_implied_vols, load_prices, newest_price_rows
from margin.models import AccountMargin, MarketChange, PriceObservation
from margin.sweep import sweep_now
from tests.factories import make_firm, shared_instrument

pytestmark = pytest.mark.django_db(transaction=True)


def _price(symbol: str, value: str) -> None:
    load_prices(observations=[{"symbol": symbol, "price": value,
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)


def _other_connection() -> psycopg.Connection:
    """A second session on the test database: a transaction the test's connection does not see
    until it commits."""
    settings = connection.settings_dict
    return psycopg.connect(dbname=settings["NAME"], user=settings["USER"] or "postgres",
                           host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432,
                           password=settings["PASSWORD"] or None)


def test_the_triggers_log_each_change_with_its_transaction():
    acme = shared_instrument("MCLOG")
    with transaction.atomic():
        _price("MCLOG", "100")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            txid = cursor.fetchone()[0]
    load_implied_vols(observations=[{"symbol": "MCLOG", "volatility": "0.3",
                                     "observed_at": timezone.now().isoformat()}],
                      source="vendor", actor=None)
    acme.multiplier = Decimal(10)
    acme.save()
    logged = list(MarketChange.objects.filter(instrument_id=acme.pk).order_by("id")
                  .values_list("kind", "txid"))
    assert [kind for kind, _ in logged] == ["instrument", "price", "vol", "instrument"]
    assert logged[1][1] == txid
    assert len({t for _, t in logged}) == 4  # one transaction each


def test_kept_rows_are_read_again_when_a_change_commits_after_the_snapshot():
    """The late commit: a transaction in progress when the cache synced (so its id is below
    ids seen since) commits afterwards; the next sync reads its instrument again."""
    acme, othr = shared_instrument("MCLATE"), shared_instrument("MCOTHR")
    _price("MCLATE", "100")
    _price("MCOTHR", "50")
    MARKET.clear()
    MARKET.sync()
    first = MARKET.price_rows([acme.pk, othr.pk])
    assert first[acme.pk].price == Decimal("100")
    with _other_connection() as late:
        late.execute("INSERT INTO margin_priceobservation (instrument_id, price, source, "
                     "observed_at, loaded_at, oracle_round_id) VALUES (%s, 101, 'vendor', "
                     "now(), now(), '')", [acme.pk])  # in progress: its id is taken
        _price("MCOTHR", "51")  # begun later, committed first
        MARKET.sync()
        generation = MARKET.generation
        now = MARKET.price_rows([acme.pk, othr.pk])
        assert (now[acme.pk].price, now[othr.pk].price) == (Decimal("100"), Decimal("51"))
        late.commit()
    MARKET.sync()
    assert MARKET.generation > generation
    assert MARKET.price_rows([acme.pk])[acme.pk].price == Decimal("101")
    assert MARKET.price_rows([othr.pk])[othr.pk].pk == now[othr.pk].pk  # kept, not read again


def test_nothing_is_kept_inside_a_transaction():
    acme = shared_instrument("MCATOM")
    _price("MCATOM", "100")
    MARKET.clear()
    with transaction.atomic():
        MARKET.sync()
        assert not MARKET.keeping
        assert MARKET.price_rows([acme.pk])[acme.pk].price == Decimal("100")
        _price("MCATOM", "90")  # this transaction's own write: a snapshot cannot tell it apart
        MARKET.sync()
        assert MARKET.price_rows([acme.pk])[acme.pk].price == Decimal("90")
        assert not MARKET.prices


def test_instrument_changes_drop_the_contracts_resting_on_it():
    und = shared_instrument("MCUND")
    opt = shared_instrument("MCUND C", kind="equity_option", underlying=und,
                            strike=Decimal(100), right="call",
                            expiry=timezone.now().date() + timedelta(days=30),
                            multiplier=Decimal(100))
    fw = make_firm("mcinst")
    MARKET.clear()
    MARKET.sync()
    with firm_scope(fw.firm):  # instruments are read in a firm's scope (shared ones and its own)
        kept = MARKET.instruments_with_related([opt.pk, und.pk])
    assert kept[opt.pk].underlying is kept[und.pk]
    und.multiplier = Decimal(2)
    und.save()
    MARKET.sync()
    assert MARKET.instruments == {}
    with firm_scope(fw.firm):
        again = MARKET.instruments_with_related([opt.pk])
    assert again[opt.pk].underlying.multiplier == Decimal(2)


def test_pruning_past_a_kept_snapshot_makes_it_start_afresh():
    acme = shared_instrument("MCPRUNE")
    _price("MCPRUNE", "100")
    MARKET.clear()
    MARKET.sync()
    MARKET.price_rows([acme.pk])
    with _other_connection() as late:  # a change the kept snapshot cannot see ...
        late.execute("INSERT INTO margin_priceobservation (instrument_id, price, source, "
                     "observed_at, loaded_at, oracle_round_id) VALUES (%s, 120, 'vendor', "
                     "now(), now(), '')", [acme.pk])
        late.commit()
    # ... pruned before the cache synced again: it cannot know what the rows said
    assert prune_market_changes(before=timezone.now() + timedelta(seconds=1)) >= 1
    assert not MarketChange.objects.filter(instrument_id=acme.pk).exists()
    MARKET.sync()
    assert MARKET.prices == {}
    assert MARKET.price_rows([acme.pk])[acme.pk].price == Decimal("120")


def test_the_sweep_on_kept_market_data_follows_each_price_load(settings):
    """Sweeps outside a transaction (as a worker runs them) keep the market and the valued
    universe between runs; each price load reaches the holders' current margin."""
    settings.MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = 1
    fw = make_firm("mcsweep")
    acme = shared_instrument("MCSWP")
    _price("MCSWP", "100")
    with firm_scope(fw.firm):
        book.set_position(account=fw.account, instrument=acme, quantity=Decimal(100),
                          actor=fw.users["margin_desk"])
    MARKET.clear()
    sweep_now()

    def current() -> AccountMargin:
        return AccountMargin.cross_firm.for_compliance(reason="test").get(account=fw.account)

    cash = current().equity - Decimal("10000.00")
    for price in ("88", "91.5", "88"):
        _price("MCSWP", price)
        assert sweep_now().computed == 1
        assert current().equity == cash + Decimal(price) * 100
    assert MARKET.syncs >= 4 and MARKET.reread >= 3
    assert newest_price_rows([acme.pk])[acme.pk].pk == PriceObservation.objects.filter(
        instrument=acme).latest("id").pk


def test_the_hourly_prune_keeps_recent_changes(settings):
    from margin.tasks import prune_market_changes as task

    shared_instrument("MCHOUR")
    _price("MCHOUR", "100")
    MarketChange.objects.update(logged_at=timezone.now() - timedelta(hours=2))
    _price("MCHOUR", "101")
    assert settings.CELERY_BEAT_SCHEDULE["margin-prune-market-changes"]["task"] == task.name
    assert task() >= 2  # the instrument's and the first price's
    assert list(MarketChange.objects.values_list("kind", flat=True)) == ["price"]
