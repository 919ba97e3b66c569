"""Margin snapshots from the book: the engine on stored positions and prices, flagged when a
price is missing or an oracle round is rejected, written once per input state."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from brokerage import audit
from brokerage.models import AuditEvent
from brokerage.scope import firm_scope
from margin.engine.errors import OracleRejected
from margin.market_data import load_oracle_round, load_prices
from margin.models import MarginSnapshot, OracleRejection, PriceObservation
from margin.reproduce import explanation
from margin.snapshots import compute_snapshots, latest_snapshot
from margin.tasks import recompute_accounts
from tests.factories import shared_instrument

pytestmark = pytest.mark.django_db


def _stock_book(world, quantity=100, price="100"):
    stock = shared_instrument("ACME")
    load_prices(observations=[{"symbol": "ACME", "price": price,
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    with firm_scope(world.firm_a):
        desk = world.a.users["margin_desk"]
        book.post_ledger_entry(account=world.a.account, kind="deposit",
                               amount=Decimal("20000"), actor=desk)
        book.set_position(account=world.a.account, instrument=stock,
                          quantity=Decimal(quantity), actor=desk)
    return stock


def test_a_snapshot_holds_equity_requirements_and_the_risk_array(world):
    _stock_book(world)
    result = recompute_accounts(world.firm_a.pk, [world.a.account.pk])
    assert result == {"computed": 1, "flagged": {}}
    with firm_scope(world.firm_a):
        snapshot = latest_snapshot(world.a.account)
    assert snapshot.equity == Decimal("30000.00")  # 20,000 cash + 100 x $100
    pm = explanation(snapshot)["portfolio_margin"]
    assert pm["regulatory_requirement"] == 1500.0  # -15 % on $10,000 (FINRA 4210(g))
    # The firm's house layer is on for snapshots: the concentration overlay stresses the
    # riskiest class group +/-30 %, which is the larger requirement here.
    assert pm["house_components"]["concentration"] == 3000.0
    assert snapshot.pm_requirement == Decimal("3000.00")
    assert snapshot.regt_maintenance == Decimal("2500.00")  # 25 % of $10,000
    assert snapshot.requirement == snapshot.regt_maintenance  # a Reg T account
    assert snapshot.excess == Decimal("27500.00")
    groups = explanation(snapshot)["portfolio_margin"]["class_groups"]
    assert groups[0]["class_group"] == "ACME" and min(groups[0]["pnl"]) == -1500.0
    assert audit.events_for(world.firm_a).filter(event_type="margin.snapshot_chunk").exists()


def test_a_book_is_valued_on_the_exchanges_date_whatever_zone_is_active(world):
    """In-process sweeps (the demo's eager Celery) run inside a viewer's request: a firm shown
    in Kiritimati (UTC+14) or Pago Pago (UTC-11) still values its book on New York's date."""
    _stock_book(world)
    new_york = timezone.localdate(timezone=zoneinfo.ZoneInfo("America/New_York"))
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        with timezone.override(zoneinfo.ZoneInfo(zone)), firm_scope(world.firm_a):
            (outcome,) = compute_snapshots(accounts=[world.a.account])
        assert outcome.snapshot.valuation_date == new_york


def test_the_same_inputs_are_written_once(world):
    _stock_book(world)
    recompute_accounts(world.firm_a.pk, [world.a.account.pk])
    recompute_accounts(world.firm_a.pk, [world.a.account.pk])  # a redelivered task
    with firm_scope(world.firm_a):
        assert MarginSnapshot.objects.filter(account=world.a.account).count() == 1


def test_another_firm_cannot_see_the_snapshot(world):
    _stock_book(world)
    recompute_accounts(world.firm_a.pk, [world.a.account.pk])
    with firm_scope(world.firm_b):
        assert not MarginSnapshot.objects.exists()


def test_an_account_with_a_missing_price_is_flagged_not_valued(world):
    stock = shared_instrument("NOPX")
    with firm_scope(world.firm_a):
        book.set_position(account=world.a.account, instrument=stock, quantity=Decimal(5),
                          actor=world.a.users["margin_desk"])
        outcome = compute_snapshots(accounts=[world.a.account])[0]
        assert outcome.snapshot is None and "NOPX" in outcome.flag
        assert not MarginSnapshot.objects.exists()


def _round(answer: int, updated, previous: int = 300_000_000_000, round_id: int = 101):
    return {"round_id": str(round_id), "answer": str(answer), "decimals": 8,
            "started_at": updated.isoformat(), "updated_at": updated.isoformat(),
            "answered_in_round": str(round_id), "heartbeat_s": 3600,
            "previous_answer": str(previous)}


def test_a_stale_oracle_round_is_refused_and_the_account_keeps_its_last_good_snapshot(world):
    eth = shared_instrument("ETH", kind="crypto", product_class="crypto")
    now = timezone.now()
    load_oracle_round(symbol="ETH", round=_round(300_500_000_000, now - timedelta(minutes=1)),
                      reference_price=3000.0, actor=None, valuation_time=now)
    with firm_scope(world.firm_a):
        book.set_position(account=world.a.account, instrument=eth, quantity=Decimal(2),
                          actor=world.a.users["margin_desk"])
        good = compute_snapshots(accounts=[world.a.account])[0].snapshot
        assert good is not None and good.net_liquidation_value == Decimal("6010.00")

    with pytest.raises(OracleRejected) as refused:
        load_oracle_round(symbol="ETH", round=_round(310_000_000_000, now - timedelta(hours=3),
                                                     round_id=102),
                          reference_price=3000.0, actor=None, valuation_time=now)
    assert refused.value.check == "stale" and "ETH" in refused.value.message
    assert PriceObservation.objects.filter(instrument=eth).count() == 1  # nothing stored
    assert OracleRejection.objects.get().failed_check == "stale"
    assert AuditEvent.objects.filter(chain="platform", event_type="oracle.rejected").exists()

    with firm_scope(world.firm_a):
        outcome = compute_snapshots(accounts=[world.a.account])[0]
        assert outcome.snapshot is None and outcome.flag.startswith("oracle_rejected: ETH")
        assert latest_snapshot(world.a.account) == good


def test_a_pumped_round_is_refused_by_the_jump_check(world):
    shared_instrument("THIN", kind="crypto", product_class="crypto")
    now = timezone.now()
    with pytest.raises(OracleRejected) as refused:
        # Mango Markets, Oct 2022: a thin token pumped ~20x within minutes.
        load_oracle_round(symbol="THIN", round=_round(2_000_000_000, now, previous=100_000_000),
                          reference_price=0.03, actor=None, valuation_time=now)
    assert refused.value.check == "jump"
    assert not PriceObservation.objects.exists()
