"""Reproducible numbers: a snapshot records its inputs by reference, is append-only, and
`manage.py recompute_snapshot` recomputes it from what it recorded (never from today's book or
prices), field by field: exit 0 on a match, 1 naming each differing field."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts import services as book
from brokerage.scope import firm_scope
from margin import services as risk_parameters
from margin.engine import ENGINE_VERSION
from margin.figures import market_ids
from margin.market_data import load_implied_vols, load_prices, set_risk_free_rate
from margin.market_history import load_daily_closes
from margin.models import DailyClose, MarginSnapshot, PriceObservation
from margin.reproduce import explanation, recompute
from margin.risk_arrays import unpack, within_precision
from tests.factories import shared_instrument
from tests.margin.test_history import closes_rows, random_returns

pytestmark = pytest.mark.django_db


def _option_book(world):
    """Account A: 200 ACME, short 5 calls on it (an implied vol), a rate, cash, and 501
    closes of ACME (VaR's window), all stored before it is valued."""
    acme = shared_instrument("ACME")
    expiry = timezone.localdate() + timedelta(days=90)
    call = shared_instrument(f"ACME {expiry:%y%m%d}C110", kind="equity_option",
                             multiplier=Decimal(100), underlying=acme, strike=Decimal(110),
                             right="call", expiry=expiry)
    now = timezone.now().isoformat()
    load_prices(observations=[{"symbol": "ACME", "price": "100", "observed_at": now},
                              {"symbol": call.symbol, "price": "2.40", "observed_at": now}],
                source="vendor", actor=None)
    load_implied_vols(observations=[{"symbol": call.symbol, "volatility": "0.31",
                                     "observed_at": now}], source="vendor", actor=None)
    set_risk_free_rate(rate="0.043", observed_on=timezone.localdate(), actor=None)
    load_daily_closes(rows=closes_rows("ACME", random_returns(500)), source="vendor", actor=None)
    with firm_scope(world.firm_a):
        desk = world.a.users["margin_desk"]
        book.post_ledger_entry(account=world.a.account, kind="deposit",
                               amount=Decimal("50000"), actor=desk)
        book.set_position(account=world.a.account, instrument=acme, quantity=Decimal(200),
                          actor=desk, cost_basis=Decimal("19000"))
        book.set_position(account=world.a.account, instrument=call, quantity=Decimal(-5),
                          actor=desk)
    return acme, call


def _valued(world) -> MarginSnapshot:
    from margin.snapshots import compute_snapshots

    with firm_scope(world.firm_a):
        [outcome] = compute_snapshots(accounts=[world.a.account])
    assert outcome.snapshot is not None, outcome.flag
    return outcome.snapshot


def _recompute(snapshot_id: int) -> tuple[int, str]:
    """The command's exit status and what it printed."""
    out = StringIO()
    try:
        call_command("recompute_snapshot", str(snapshot_id), stdout=out)
    except CommandError as failed:
        return failed.returncode, out.getvalue()
    return 0, out.getvalue()


@contextmanager
def _trigger_disabled():
    """As a DBA could: the append-only trigger off inside the test's own transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE margin_marginsnapshot DISABLE TRIGGER USER")
        yield cursor
        cursor.execute("ALTER TABLE margin_marginsnapshot ENABLE TRIGGER USER")


def test_a_snapshot_records_its_inputs_by_reference_and_its_risk_arrays_compactly(world):
    acme, call = _option_book(world)
    snapshot = _valued(world)
    assert snapshot.positions == sorted([[acme.pk, "200.00000000", "19000.00"],
                                         [call.pk, "-5.00000000", "0.00"]])
    newest = {p.instrument_id: p.pk for p in PriceObservation.objects.order_by("id")}
    # the market rows by the chunk's state, recorded once for the chunk's snapshots
    assert snapshot.market_state is not None and snapshot.price_ids == snapshot.vol_ids == {}
    price_ids, vol_ids = market_ids(snapshot, [acme.pk, call.pk])
    assert price_ids == {str(acme.pk): newest[acme.pk], str(call.pk): newest[call.pk]}
    assert list(vol_ids) == [str(call.pk)]
    assert snapshot.rate.rate == Decimal("0.043000")
    assert snapshot.parameter_version is None and snapshot.parameter_set == "default-2026.1"
    assert snapshot.valuation_date == timezone.localdate()
    # The sweep values what the requirement rests on (portfolio margin for this Reg T
    # account's upgrade figure, Reg T its requirement): no method it ran reads daily closes.
    assert snapshot.methods == ["portfolio_margin", "reg_t"] and snapshot.history is None
    # the PM block's class-group array, float32, within float32's precision of the float64
    (group,) = explanation(snapshot)["portfolio_margin"]["class_groups"]
    stored = unpack(snapshot.risk_arrays["ACME"])
    assert stored.dtype == np.float64 and len(stored) == len(group["pnl"])
    assert within_precision(stored, group["pnl"])
    assert set(snapshot.add_ons) == {"vol_shift", "concentration", "extended_stress",
                                     "minimum_charge"}


def test_recompute_uses_the_recorded_inputs_not_todays_book_or_prices(world):
    acme, call = _option_book(world)
    snapshot = _valued(world)
    # After the snapshot: the price falls 12 %, the book changes, a new vol and rate arrive.
    now = timezone.now().isoformat()
    load_prices(observations=[{"symbol": "ACME", "price": "88", "observed_at": now}],
                source="vendor", actor=None)
    load_implied_vols(observations=[{"symbol": call.symbol, "volatility": "0.55",
                                     "observed_at": now}], source="vendor", actor=None)
    set_risk_free_rate(rate="0.05", observed_on=timezone.localdate() + timedelta(days=1),
                       actor=None)
    with firm_scope(world.firm_a):
        book.set_position(account=world.a.account, instrument=acme, quantity=Decimal(10),
                          actor=world.a.users["margin_desk"])
    later = _valued(world)
    assert later.requirement != snapshot.requirement

    status, printed = _recompute(snapshot.pk)
    assert status == 0, printed
    assert "MATCH" in printed and "DIFFERS" not in printed
    for field in ("equity", "requirement", "excess", "add_ons[vol_shift]", "risk_arrays[ACME]",
                  "inputs_hash"):
        assert f"  {field} " in printed, field
    assert "engine version differs" not in printed


def test_a_rate_corrected_in_place_is_said_and_the_recorded_rate_used(world):
    """`set_risk_free_rate` corrects a day's rate in the same row: the snapshot kept the rate
    it valued at beside the row's id, so it still reproduces, and the correction is said."""
    _option_book(world)
    snapshot = _valued(world)
    assert snapshot.rate_used == Decimal("0.043000")
    set_risk_free_rate(rate="0.20", observed_on=timezone.localdate(), actor=None)
    status, printed = _recompute(snapshot.pk)
    assert status == 0, printed
    assert (f"rate #{snapshot.rate_id} 0.043000 (the row holds 0.200000 now: corrected since)"
            in printed)


def test_a_parameter_version_approved_later_leaves_the_recomputation_alone(world):
    _option_book(world)
    with firm_scope(world.firm_a):
        proposal = risk_parameters.propose_parameters(
            firm=world.firm_a, actor=world.a.users["risk_officer"],
            overrides={"house": {"vol_shift": 0.3}}, reason="v1")
        risk_parameters.approve_parameters(proposal=proposal, actor=world.a.users["firm_admin"])
    first = _valued(world)
    assert first.parameter_version_id == proposal.pk
    with firm_scope(world.firm_a):
        second = risk_parameters.propose_parameters(
            firm=world.firm_a, actor=world.a.users["firm_admin"],
            overrides={"house": {"vol_shift": 0.6}}, reason="v2")
        risk_parameters.approve_parameters(proposal=second, actor=world.a.users["risk_officer"])
    assert _valued(world).parameter_version_id == second.pk
    status, printed = _recompute(first.pk)
    assert status == 0, printed
    assert "default-2026.1/firm-v1" in printed


def test_a_replaced_close_moves_the_explanations_var_not_the_stored_figures(world):
    """A vendor's correction of one close (a legitimate load): the stored figures rest on no
    close and still reproduce; the explanation's VaR is rendered on the closes as they are."""
    _option_book(world)
    snapshot = _valued(world)
    before = explanation(snapshot)["var"]
    last = DailyClose.objects.filter(instrument__symbol="ACME").order_by("-date").first()
    load_daily_closes(rows=[{"symbol": "ACME", "date": last.date.isoformat(), "close": "250"}],
                      source="vendor", actor=None)
    status, printed = _recompute(snapshot.pk)
    assert status == 0, printed
    assert explanation(snapshot)["var"] != before



@pytest.mark.parametrize(("edit", "named"), [
    # a stored input: the recorded position was 200 ACME
    ("UPDATE margin_marginsnapshot SET positions = replace(positions::text, '\"200.00000000\"',"
     " '\"300.00000000\"')::jsonb WHERE id = %s", ["net_liquidation_value", "equity", "excess"]),
    # a stored result: the requirement (and so the excess) the snapshot claims
    ("UPDATE margin_marginsnapshot SET requirement = requirement + 1 WHERE id = %s",
     ["requirement"]),
    # a stored risk array
    ("UPDATE margin_marginsnapshot SET risk_arrays = '{\"ACME\": \"AAAAAA==\"}'::jsonb "
     "WHERE id = %s", ["risk_arrays[ACME]"]),
])
def test_an_edited_snapshot_does_not_reproduce_and_the_field_is_named(world, edit, named):
    _option_book(world)
    snapshot = _valued(world)
    with _trigger_disabled() as cursor:
        cursor.execute(edit, [snapshot.pk])
    status, printed = _recompute(snapshot.pk)
    assert status == 1
    differing = printed.splitlines()[-1]
    assert differing.startswith("  DIFFERS: ")
    for field in named:
        assert field in differing, (field, differing)


def test_another_engine_version_is_said_and_the_numbers_still_compared(world):
    _option_book(world)
    snapshot = _valued(world)
    with _trigger_disabled() as cursor:
        cursor.execute("UPDATE margin_marginsnapshot SET engine_version = '2025.1.0' "
                       "WHERE id = %s", [snapshot.pk])
    with firm_scope(world.firm_a):
        stored = MarginSnapshot.objects.get(pk=snapshot.pk)
    # the hash was taken with the engine version in it: a different version, a different hash
    assert not recompute(stored).matches
    status, printed = _recompute(snapshot.pk)
    assert f"engine version differs: stored 2025.1.0, current {ENGINE_VERSION}" in printed
    assert status == 1 and printed.splitlines()[-1] == "  DIFFERS: inputs_hash"


def test_a_snapshot_without_recorded_inputs_cannot_be_recomputed(world):
    with firm_scope(world.firm_a):
        old = MarginSnapshot.objects.create(
            firm=world.firm_a, account=world.a.account, computed_at=timezone.now(),
            inputs_hash="a" * 64, engine_version="2026.1.0", parameter_set="default-2026.1",
            margin_type="reg_t", cash=Decimal(0), net_liquidation_value=Decimal(0),
            equity=Decimal(0), requirement=Decimal(0), excess=Decimal(0), result={})
    status, printed = _recompute(old.pk)
    assert status == 1 and "NOT REPRODUCIBLE" in printed and "before snapshots recorded" in printed
    assert _recompute(10**9)[1].strip() == f"snapshot {10**9}: no such snapshot"


def test_snapshots_are_append_only(world):
    _option_book(world)
    snapshot = _valued(world)
    for statement in ("UPDATE margin_marginsnapshot SET excess = 0 WHERE id = %s",
                      "DELETE FROM margin_marginsnapshot WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement, [snapshot.pk])
    with firm_scope(world.firm_a):
        stored = MarginSnapshot.objects.get(pk=snapshot.pk)
        snapshot.excess = Decimal(0)
        with pytest.raises(PermissionError, match="never updated"):
            snapshot.save()
        with pytest.raises(PermissionError, match="never deleted"):
            stored.delete()
        for rows in (MarginSnapshot.objects.all(),
                     MarginSnapshot.cross_firm.for_compliance(reason="test: bulk writes")):
            with pytest.raises(PermissionError, match="append-only"):
                rows.update(excess=0)
            with pytest.raises(PermissionError, match="append-only"):
                rows.delete()
        assert MarginSnapshot.objects.get(pk=snapshot.pk).excess == stored.excess
