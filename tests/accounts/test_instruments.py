"""Listing instruments: shared reference data on the platform chain, a firm's own on its chain."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts import services as book
from accounts.models import Instrument
from brokerage import audit
from brokerage.models import AuditEvent
from brokerage.scope import firm_scope

pytestmark = pytest.mark.django_db


def _platform_events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(chain=audit.PLATFORM_CHAIN, event_type=event_type)
                .order_by("seq"))


def test_a_shared_instrument_is_listed_once_and_audited_on_the_platform_chain(world) -> None:
    stock = book.create_instrument(symbol="ACME", kind="stock", actor=None,
                                   product_class="equity", class_group="ACME",
                                   product_group="ACME")
    option = book.create_instrument(symbol="ACME 270115C100", kind="equity_option", actor=None,
                                    underlying=stock, product_class="equity",
                                    class_group="ACME", product_group="ACME",
                                    multiplier=Decimal(100), strike=Decimal(100), right="call",
                                    expiry="2027-01-15", exercise_style="american")
    assert stock.firm is None and option.underlying == stock
    events = _platform_events("instrument.created")
    assert [e.after["symbol"] for e in events] == ["ACME", "ACME 270115C100"]
    assert events[1].after["underlying"] == "ACME" and events[1].after["strike"] == "100"
    assert audit.verify_chain(audit.PLATFORM_CHAIN) is None
    for fw in (world.a, world.b):  # both firms trade the same contract
        with firm_scope(fw.firm):
            assert Instrument.objects.filter(symbol="ACME").count() == 1


def test_a_symbol_listed_twice_is_refused_and_nothing_is_written(world) -> None:
    book.create_instrument(symbol="ACME", kind="stock", actor=None, product_class="equity",
                           class_group="ACME", product_group="ACME")
    with pytest.raises(book.BookError) as refused:
        book.create_instrument(symbol="ACME", kind="etf", actor=None, product_class="equity",
                               class_group="ACME", product_group="ACME")
    assert refused.value.field == "symbol"
    shared = Instrument.cross_firm.for_compliance(reason="test").filter(symbol="ACME")
    assert shared.get().kind == "stock"
    assert len(_platform_events("instrument.created")) == 1


def test_a_firms_own_instrument_is_audited_on_its_chain_and_unseen_by_others(world) -> None:
    admin = world.a.users["firm_admin"]
    with firm_scope(world.firm_a):
        book.create_instrument(symbol="LP-1", kind="uniswap_v3_lp", firm=world.firm_a,
                               actor=admin, product_class="crypto", class_group="ETH",
                               product_group="ETH", liquidity="1000")
    event = audit.events_for(world.firm_a).get(event_type="instrument.created")
    assert event.actor == admin and event.after["symbol"] == "LP-1"
    assert _platform_events("instrument.created") == []
    with firm_scope(world.firm_b):
        assert not Instrument.objects.filter(symbol="LP-1").exists()
        # the same symbol is free in another firm (unique per firm, not across)
        book.create_instrument(symbol="LP-1", kind="uniswap_v3_lp", firm=world.firm_b,
                               actor=world.b.users["firm_admin"], product_class="crypto",
                               class_group="ETH", product_group="ETH", liquidity="1000")
