"""Equity has one definition, the engine's: eligibility reads it from the snapshot, and when
there is none (or the book moved since) margin values the book now by the same definition.

A future counts 0 (settled daily into cash), a perpetual its unrealised P&L: a notional sum
(quantity x multiplier x price) would give a futures account millions it does not have.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from accounts import services as book
from eligibility import equity
from margin.engine.errors import OracleRejected
from margin.market_data import load_oracle_round, load_prices
from margin.snapshots import compute_snapshots
from tests.factories import shared_instrument

from .conftest import deposit


def priced(symbol: str, price: str, **fields):
    instrument = shared_instrument(symbol, **fields)
    load_prices(observations=[{"symbol": symbol, "price": price,
                               "observed_at": timezone.now() - timedelta(minutes=5)}],
                source="exchange", actor=None)
    return instrument


def snapshot_equity(account) -> Decimal:
    [outcome] = compute_snapshots(accounts=[account])
    assert outcome.snapshot is not None, outcome.flag
    return outcome.snapshot.equity


def test_a_futures_account_has_the_same_equity_in_eligibility_as_in_its_snapshot(in_desk_firm):
    desk = in_desk_firm
    future = priced("ESZ", "6035", kind="future", product_class="future",
                    multiplier=Decimal(50), expiry=timezone.localdate() + timedelta(days=90))
    book.set_position(account=desk.account, instrument=future, quantity=Decimal(2),
                      actor=desk.margin_desk)
    before = equity.read_equity(desk.account)  # no snapshot yet: margin values the book
    assert before.source == "book"
    # Futures count 0: the notional 2 x 50 x 6,035 = 603,500 is not equity.
    assert before.amount == Decimal("200000.00")
    assert snapshot_equity(desk.account) == before.amount
    after = equity.read_equity(desk.account)
    assert (after.amount, after.source) == (before.amount, "margin_snapshot")


def test_a_perpetual_counts_its_unrealised_pnl_in_eligibility_and_in_its_snapshot(
        in_desk_firm):
    desk = in_desk_firm
    eth = priced("ETHX", "3000", kind="crypto", product_class="crypto")
    perp = priced("ETHX-PERP", "3000", kind="perpetual", product_class="crypto",
                  underlying=eth, class_group="ETHX", product_group="ETHX")
    # Short 5 entered at 2,950: (3,000 - 2,950) x -5 = -250 unrealised.
    book.set_position(account=desk.account, instrument=perp, quantity=Decimal(-5),
                      cost_basis=Decimal(-5 * 2950), actor=desk.margin_desk)
    before = equity.read_equity(desk.account)
    assert (before.amount, before.source) == (Decimal("199750.00"), "book")
    assert snapshot_equity(desk.account) == before.amount
    assert equity.read_equity(desk.account).source == "margin_snapshot"


def test_after_a_deposit_the_book_is_valued_by_the_same_definition(in_desk_firm):
    desk = in_desk_firm
    stock = priced("EQY", "40")
    option = priced("EQY 270115C45", "1.25", kind="equity_option", multiplier=Decimal(100),
                    underlying=stock, strike=Decimal(45), right="call",
                    expiry=timezone.localdate() + timedelta(days=45))
    book.set_position(account=desk.account, instrument=stock, quantity=Decimal(300),
                      actor=desk.margin_desk)
    book.set_position(account=desk.account, instrument=option, quantity=Decimal(-3),
                      actor=desk.margin_desk)
    snapshot = snapshot_equity(desk.account)
    assert snapshot == Decimal("211625.00")  # 200,000 + 300 x 40 - 3 x 100 x 1.25
    deposit(desk.account, "5000")  # booked after the snapshot: the engine has not caught up
    reading = equity.read_equity(desk.account)
    assert (reading.amount, reading.source) == (snapshot + 5000, "book")


def test_a_rejected_oracle_round_leaves_the_book_unvalued(in_desk_firm):
    desk = in_desk_firm
    coin = priced("CNX", "100", kind="crypto", product_class="crypto")
    book.set_position(account=desk.account, instrument=coin, quantity=Decimal(10),
                      actor=desk.margin_desk)
    stale = (timezone.now() - timedelta(hours=3)).isoformat()  # beyond its 1 h heartbeat
    with pytest.raises(OracleRejected):
        load_oracle_round(symbol="CNX", round={
            "round_id": "9", "answer": "10100000000", "decimals": 8, "started_at": stale,
            "updated_at": stale, "answered_in_round": "9", "heartbeat_s": 3600,
            "previous_answer": "10000000000"}, reference_price=100.0, actor=None)
    reading = equity.read_equity(desk.account)
    assert reading.source == "book_incomplete" and not reading.complete
    assert reading.unpriced[0].startswith("CNX (oracle round rejected")


def test_the_book_is_valued_on_the_exchanges_date_whatever_zone_the_viewer_sees(
        in_desk_firm, monkeypatch):
    # 15:00 in New York on Tuesday 24 Nov 2026 is already Wednesday at UTC+14: an option
    # expiring today on the exchange is live, and a far-east firm's staff read the same equity.
    desk = in_desk_firm
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
    stock = priced("EXD", "40")
    option = priced("EXD 261124C45", "0.05", kind="equity_option", multiplier=Decimal(100),
                    underlying=stock, strike=Decimal(45), right="call",
                    expiry=date(2026, 11, 24))
    book.set_position(account=desk.account, instrument=stock, quantity=Decimal(100),
                      actor=desk.margin_desk)
    book.set_position(account=desk.account, instrument=option, quantity=Decimal(-1),
                      actor=desk.margin_desk)
    in_new_york = equity.read_equity(desk.account)
    with timezone.override(ZoneInfo("Pacific/Kiritimati")):
        far_east = equity.read_equity(desk.account)
    assert in_new_york.complete, in_new_york.unpriced
    assert far_east == in_new_york


def test_equity_is_the_current_margin_when_the_sweep_kept_no_snapshot(in_desk_firm):
    """A tick under the history threshold writes no snapshot, only the current row: eligibility
    reads that newer valuation, not the snapshot of an older market."""
    from margin.dirty import mark_accounts
    from margin.models import AccountMargin
    from margin.sweep import sweep_now

    desk = in_desk_firm
    stock = priced("EQTK", "100")
    book.set_position(account=desk.account, instrument=stock, quantity=Decimal(100),
                      actor=desk.margin_desk)
    mark_accounts([desk.account.pk], request=False)
    sweep_now(account_ids=[desk.account.pk])
    first = equity.read_equity(desk.account)
    assert first.source == "current_margin" and first.amount == Decimal("210000.00")
    load_prices(observations=[{"symbol": "EQTK", "price": "100.5",
                               "observed_at": timezone.now()}], source="exchange", actor=None)
    mark_accounts([desk.account.pk], request=False)
    assert sweep_now(account_ids=[desk.account.pk]).snapshots == 0
    now = equity.read_equity(desk.account)
    current = AccountMargin.objects.get(account=desk.account)
    assert (now.amount, now.source) == (Decimal("210050.00"), "current_margin")
    assert now.amount == current.equity and now.snapshot_id == first.snapshot_id
    # A deposit booked after the sweep: the book moved, margin values it now.
    deposit(desk.account, "1000", actor=desk.margin_desk)
    assert equity.read_equity(desk.account).source == "book"
