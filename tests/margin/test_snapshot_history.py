"""History only where a decision rests on it (DESIGN.md "Scale"): every valued account's
current row is written, a history snapshot only for the account's first valuation, an excess
changing sign, a requirement moving past the threshold and floor, or on request; each chunk's
snapshots are bulk-written with one audit event (count and digest), which the audit verifier
checks against the stored snapshots."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import Account
from brokerage import audit
from margin.models import AccountMargin, MarginSnapshot
from margin.snapshots import CHUNK_EVENT, content_hash
from margin.sweep import sweep_now
from margin.tasks import recompute_accounts
from tests.margin.history import price_tick, set_price

pytestmark = pytest.mark.django_db


def _current(account: Account) -> AccountMargin:
    return AccountMargin.cross_firm.for_compliance(reason="test").get(account=account)


def _snapshots(account: Account | None = None):
    rows = MarginSnapshot.cross_firm.for_compliance(reason="test")
    return rows.filter(account=account) if account is not None else rows


def _chunk_events(firm):
    return audit.events_for(firm).filter(event_type=CHUNK_EVENT)


def test_the_first_valuation_of_every_account_is_kept(four):
    result = sweep_now()
    assert (result.computed, result.written, result.snapshots) == (4, 4, 4)
    for account in four.values():
        row = _current(account)
        assert row.snapshot.reason == "first" and row.snapshot.content_hash
        assert (row.equity, row.requirement, row.excess) == (
            row.snapshot.equity, row.snapshot.requirement, row.snapshot.excess)
    assert _current(four["thin"]).excess == Decimal("100.00")


def test_intraday_only_a_sign_change_or_a_requirement_move_is_kept(four):
    sweep_now()
    first = {name: _current(a).snapshot_id for name, a in four.items()}

    # 2 %: every holder's current row moves; only thin's excess turns negative.
    result = price_tick("98")
    assert (result.computed, result.written, result.snapshots) == (3, 3, 1)
    thin = _current(four["thin"])
    assert thin.excess == Decimal("-50.00") and thin.snapshot.reason == "excess_sign"
    big = _current(four["big"])
    assert big.snapshot_id == first["big"] and big.requirement == Decimal("2450.00")
    assert big.equity == Decimal("29800.00")  # the latest valuation, no snapshot written

    # 20 % from big's last snapshot: past the threshold; tiny moves $5, under the floor.
    result = price_tick("80")
    assert result.snapshots == 2
    assert _current(four["big"]).snapshot.reason == "requirement_move"
    assert _current(four["thin"]).snapshot.reason == "requirement_move"  # 2,450 -> 2,000
    tiny = _current(four["tiny"])
    assert tiny.snapshot_id == first["tiny"] and tiny.equity == Decimal("1080.00")
    assert _current(four["cash"]).snapshot_id == first["cash"]  # not a holder: not valued
    assert {name: _snapshots(a).count() for name, a in four.items()} == {
        "big": 2, "tiny": 1, "thin": 3, "cash": 1}


def test_slow_drift_adds_up_to_a_move(four):
    """The threshold compares with the last snapshot, so steps under it add up."""
    sweep_now()
    for price, kept in (("98", 0), ("96", 0), ("94", 1)):  # 2,500 -> 2,350: 6 %
        price_tick(price)
        assert _snapshots(four["big"]).count() == 1 + kept


def test_the_threshold_is_a_setting(four, settings):
    sweep_now()
    settings.MARGIN_SNAPSHOT_REQUIREMENT_MOVE = "0.01"
    settings.MARGIN_SNAPSHOT_REQUIREMENT_FLOOR = "1"
    # big's $50 (2 %) now counts, thin's sign changes; tiny's $0.50 is still under the floor.
    assert price_tick("98").snapshots == 2
    assert _current(four["big"]).snapshot.reason == "requirement_move"
    assert _snapshots(four["tiny"]).count() == 1


def test_a_snapshot_on_request(four):
    sweep_now()
    set_price("99")  # nothing a decision rests on for tiny
    recompute_accounts(four["tiny"].firm_id, [four["tiny"].pk])
    row = _current(four["tiny"])
    assert row.snapshot.reason == "forced" and row.snapshot.equity == Decimal("1099.00")
    assert _snapshots(four["tiny"]).count() == 2


def test_one_audit_event_per_chunk_with_count_and_digest(world, four, settings):
    settings.MARGIN_SWEEP_CHUNK = 3
    before = _chunk_events(world.firm_a).count()
    sweep_now()
    events = list(_chunk_events(world.firm_a).order_by("seq"))[before:]
    assert [e.after["count"] for e in events] == [3, 1]
    assert not audit.events_for(world.firm_a).filter(event_type="margin.snapshot").exists()
    for event in events:
        rows = _snapshots().in_bulk(event.after["snapshots"])
        hashes = [rows[pk].content_hash for pk in event.after["snapshots"]]
        assert hashes == [content_hash(rows[pk]) for pk in event.after["snapshots"]]
        assert event.after["digest"] == hashlib.sha256("".join(hashes).encode()).hexdigest()
    # A sweep that keeps nothing appends nothing to the chain.
    count = _chunk_events(world.firm_a).count()
    price_tick("99.5")
    assert _chunk_events(world.firm_a).count() == count
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None


def _edit_snapshot(snapshot_id: int, sql_set: str, params: list) -> None:
    """Change a stored snapshot behind the ORM's back, inside the test's transaction (rolled
    back with it): the append-only trigger is lifted first, as someone with the database's
    keys could."""
    table = MarginSnapshot._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Triggers off for this transaction only (ALTER TABLE ... DISABLE TRIGGER is
            # refused while the test's deferred foreign-key checks are pending).
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(f"UPDATE {table} SET {sql_set} WHERE id = %s", [*params, snapshot_id])
            cursor.execute("SET LOCAL session_replication_role = origin")
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            cursor.execute(f"UPDATE {table} SET {sql_set} WHERE id = %s", [*params, snapshot_id])


def test_the_verifier_flags_an_edited_snapshot(world, four):
    sweep_now()
    chain = audit.chain_key(world.firm_a)
    assert audit.verify_chain(chain) is None
    victim = _current(four["thin"]).snapshot
    _edit_snapshot(victim.pk, "excess = %s", [Decimal("1000000.00")])

    broken = audit.verify_chain(chain)
    assert broken is not None and f"snapshot {victim.pk}" in broken.reason
    assert broken.seq == _chunk_events(world.firm_a).get(
        after__snapshots__contains=victim.pk).seq
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", "--firm", world.firm_a.slug)


def test_the_verifier_flags_a_snapshot_rehashed_after_an_edit(world, four):
    sweep_now()
    victim = _current(four["big"]).snapshot
    _edit_snapshot(victim.pk, "excess = %s", [Decimal("1000000.00")])
    edited = _snapshots().get(pk=victim.pk)
    _edit_snapshot(victim.pk, "content_hash = %s", [content_hash(edited)])

    broken = audit.verify_chain(audit.chain_key(world.firm_a))
    assert broken is not None and "digest" in broken.reason


def test_asking_again_for_the_same_inputs_writes_and_audits_nothing(world, four):
    sweep_now()
    tiny = four["tiny"]
    events = _chunk_events(world.firm_a).count()
    recompute_accounts(tiny.firm_id, [tiny.pk])  # forced, but the inputs are the first's
    recompute_accounts(tiny.firm_id, [tiny.pk])  # a redelivered task
    assert _snapshots(tiny).count() == 1 and _chunk_events(world.firm_a).count() == events
    assert _current(tiny).snapshot.reason == "first"
