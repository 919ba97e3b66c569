"""What a database administrator can do to the audit trail, and the verifier seeing each: every
change is made with raw SQL after disabling the protective triggers explicitly (ALTER TABLE ...
DISABLE TRIGGER USER), as such a person can; the verifier checks each row against the HMAC
key (from the environment) and each chain against its latest signed checkpoint (outside the
database)."""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from brokerage import audit
from brokerage.audit_anchors import latest_checkpoint
from brokerage.audit_keys import hmac_keyring
from brokerage.models import AuditChainHead, AuditEvent

pytestmark = pytest.mark.django_db
TABLES = ("brokerage_auditevent", "brokerage_auditchainhead")


def as_dba(*statements: tuple[str, list]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for sql, params in statements:
            cursor.execute(sql, params)
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def verify(firm=None) -> str:
    out = StringIO()
    args = ["--firm", firm.slug] if firm is not None else []
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def checkpointed(world):
    assert audit.checkpoint_all(reason="test")
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    assert "BROKEN" not in out.getvalue() and "checkpoint #" in out.getvalue()
    return world


def _events(firm) -> list[AuditEvent]:
    return list(audit.events_for(firm))


def test_an_edited_row_is_detected(checkpointed):
    victim = _events(checkpointed.firm_a)[3]
    as_dba(("UPDATE brokerage_auditevent SET actor_role = 'firm_admin' WHERE id = %s",
            [victim.pk]))
    assert f"BROKEN at event #{victim.seq}: content does not match its hash" in verify()


def _rewrite_from(firm, start: int, row_hash) -> list[tuple[str, list]]:
    """Change event #start and re-hash it and every later one with `row_hash`, head too."""
    statements, prev = [], None
    for event in _events(firm):
        if event.seq < start:
            prev = event.hash
            continue
        if event.seq == start:
            event.actor_role = "forged"
        event.prev_hash = prev
        event.hash = row_hash(event)
        statements.append(("UPDATE brokerage_auditevent SET actor_role = %s, prev_hash = %s, "
                           "hash = %s WHERE id = %s",
                           [event.actor_role, event.prev_hash, event.hash, event.pk]))
        prev = event.hash
    statements.append(("UPDATE brokerage_auditchainhead SET last_hash = %s WHERE chain = %s",
                       [prev, audit.chain_key(firm)]))
    return statements


def test_a_chain_rewritten_from_the_middle_without_the_key_is_detected(checkpointed):
    import hashlib

    firm = checkpointed.firm_a
    as_dba(*_rewrite_from(firm, 4, lambda e: hashlib.sha256(
        (e.prev_hash + e.canonical()).encode()).hexdigest()))
    assert "BROKEN at event #4: content does not match its hash" in verify(firm)


def test_a_chain_rewritten_with_the_key_itself_is_caught_by_its_checkpoint(checkpointed):
    firm = checkpointed.firm_a
    as_dba(*_rewrite_from(firm, 4, lambda e: e.compute_hash()))
    assert audit.verify_chain(audit.chain_key(firm)) is None  # every link holds by itself...
    last = _events(firm)[-1].seq
    assert (f"BROKEN at event #{last}: event #{last} is not the one its signed checkpoint"
            in verify(firm))  # ...but not against the checkpoint


def test_a_truncated_tail_with_its_head_rolled_back_is_detected(checkpointed):
    firm = checkpointed.firm_a
    events = _events(firm)
    kept = events[-4]
    as_dba(("DELETE FROM brokerage_auditevent WHERE chain = %s AND seq > %s",
            [kept.chain, kept.seq]),
           ("UPDATE brokerage_auditchainhead SET seq = %s, last_hash = %s WHERE chain = %s",
            [kept.seq, kept.hash, kept.chain]))
    assert audit.verify_chain(kept.chain) is None  # consistent with its head...
    report = verify(firm)
    assert (f"BROKEN at event #{kept.seq + 1}: the latest signed checkpoint" in report
            and f"is at #{events[-1].seq} but the chain ends at #{kept.seq}" in report)


def test_a_deleted_chain_is_detected(checkpointed):
    chain = audit.chain_key(checkpointed.firm_b)
    as_dba(("DELETE FROM brokerage_auditevent WHERE chain = %s", [chain]),
           ("DELETE FROM brokerage_auditchainhead WHERE chain = %s", [chain]))
    report = verify()
    assert f"{chain}: BROKEN at event #1" in report and "the chain was deleted" in report
    assert f"firm:{checkpointed.firm_a.pk}: OK" in report


def test_a_firm_without_a_chain_is_detected_even_before_its_first_checkpoint(world):
    chain = audit.chain_key(world.firm_b)
    as_dba(("DELETE FROM brokerage_auditevent WHERE chain = %s", [chain]),
           ("DELETE FROM brokerage_auditchainhead WHERE chain = %s", [chain]))
    assert f"{chain}: BROKEN at event #1: the firm has no audit chain" in verify()


def test_a_checkpoint_whose_signature_fails_is_detected(checkpointed, settings):
    anchor = next(Path(settings.AUDIT_ANCHOR_DIR).glob("*.json"))
    document = json.loads(anchor.read_text())
    document["heads"][0]["seq"] -= 1  # an earlier head, to hide a truncation
    os.chmod(anchor, 0o644)
    anchor.write_text(json.dumps(document))
    assert f"anchor {anchor.name}: BROKEN: its signature does not verify" in verify()


def test_the_chain_head_is_protected_like_the_events(world):
    head = AuditChainHead.objects.get(chain=audit.chain_key(world.firm_a))
    for sql in ("UPDATE brokerage_auditchainhead SET seq = seq - 1 WHERE id = %s",
                "UPDATE brokerage_auditchainhead SET last_hash = 'x' WHERE id = %s",
                "DELETE FROM brokerage_auditchainhead WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [head.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO brokerage_auditchainhead (chain, seq, last_hash) "
                           "VALUES ('firm:999', 5, %s)", [head.last_hash])
    with transaction.atomic():  # the one move allowed: to the next event, by record()
        audit.record(firm=world.firm_a, actor=None, event_type="test.next")
    head.refresh_from_db()
    assert head.seq == _events(world.firm_a)[-1].seq


def test_rows_record_their_key_and_keys_rotate(world, settings):
    old_id = hmac_keyring().current_id
    old_key = hmac_keyring().keys[old_id].hex()
    assert {e.key_id for e in _events(world.firm_a)} == {old_id}
    settings.AUDIT_HMAC_KEY, settings.AUDIT_HMAC_KEY_ID = "ab" * 32, "k2"
    settings.AUDIT_HMAC_RETIRED_KEYS = f"{old_id}:{old_key}"
    with transaction.atomic():
        event = audit.record(firm=world.firm_a, actor=None, event_type="test.rotated")
    assert event.key_id == "k2"
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None
    settings.AUDIT_HMAC_RETIRED_KEYS = ""  # the old key forgotten: its rows cannot be vouched for
    broken = audit.verify_chain(audit.chain_key(world.firm_a))
    assert broken.seq == 1 and f"key {old_id!r}, which this installation does not hold" in (
        broken.reason)


def test_beat_checkpoints_every_chain(world, settings):
    from brokerage.tasks import checkpoint_audit_chains

    assert settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]["task"] == (
        "brokerage.tasks.checkpoint_audit_chains")
    assert checkpoint_audit_chains.apply().get() == AuditChainHead.objects.filter(
        seq__gt=0).count()
    result = audit.verify_all()
    assert result.ok and set(result.checkpoints) == set(
        AuditChainHead.objects.filter(seq__gt=0).values_list("chain", flat=True))


def test_production_refuses_to_start_without_the_audit_keys():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 50)
    started = subprocess.run([sys.executable, "-c", "import brokerage.settings"], env=env,
                             capture_output=True, text=True, check=False)
    assert started.returncode != 0 and "AUDIT_HMAC_KEY must be set" in started.stderr
    env["AUDIT_HMAC_KEY"] = "ab" * 32
    started = subprocess.run([sys.executable, "-c", "import brokerage.settings"], env=env,
                             capture_output=True, text=True, check=False)
    assert started.returncode != 0 and "AUDIT_SIGNING_KEY must be set" in started.stderr


def test_the_firms_verification_is_recorded_with_what_it_vouches_for(checkpointed):
    firm, other = checkpointed.firm_a, checkpointed.firm_b
    officer = checkpointed.a.users["compliance_officer"]
    head = _events(firm)[-1].seq
    # another firm's export checkpoints only its own chain: the newest file covering ours wins
    audit.start_firm_export(firm=other, actor=checkpointed.b.users["compliance_officer"],
                            request=audit.ExportRequest())
    checkpoint = latest_checkpoint(audit.chain_key(firm))
    assert checkpoint is not None and checkpoint.seq == head
    made = audit.verify_firm_chain(firm=firm, actor=officer)
    assert (made.event_type, made.seq, made.actor) == (audit.VERIFIED, head + 1, officer)
    assert made.after["verified"] is True and made.after["broken"] == {}
    assert made.after["through"] == {audit.chain_key(firm): head}
    assert made.after["checkpoints"] == [checkpoint.as_dict()]


def test_a_truncated_tail_is_recorded_as_where_the_verification_broke(checkpointed):
    firm = checkpointed.firm_a
    kept = _events(firm)[-3]
    as_dba(("DELETE FROM brokerage_auditevent WHERE chain = %s AND seq > %s",
            [kept.chain, kept.seq]),
           ("UPDATE brokerage_auditchainhead SET seq = %s, last_hash = %s WHERE chain = %s",
            [kept.seq, kept.hash, kept.chain]))
    made = audit.verify_firm_chain(firm=firm, actor=None)
    assert made.after["verified"] is False
    assert made.after["through"] == {kept.chain: kept.seq}
    assert made.after["broken"][kept.chain].startswith(f"#{kept.seq + 1}: the latest signed")
