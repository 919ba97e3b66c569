"""The audit trail: hash chain per firm, serialised appends, tamper detection."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction

from brokerage import audit
from brokerage.models import AuditEvent
from tests.factories import log_in, make_firm


@pytest.mark.django_db
def test_services_write_a_verifiable_chain_per_firm(world):
    a_events = audit.events_for(world.firm_a)
    assert a_events.count() >= 7  # memberships, client, account
    assert [e.seq for e in a_events] == list(range(1, a_events.count() + 1))
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None
    assert audit.verify_chain(audit.chain_key(world.firm_b)) is None
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    assert "BROKEN" not in out.getvalue()
    assert f"firm:{world.firm_a.pk}: OK" in out.getvalue()


@pytest.mark.django_db
def test_events_cannot_be_updated_or_deleted_through_the_orm(world):
    event = audit.events_for(world.firm_a).first()
    event.event_type = "forged"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()


@pytest.mark.django_db
def test_the_database_refuses_raw_updates(world):
    from django.db.utils import DatabaseError

    event = audit.events_for(world.firm_a).first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE brokerage_auditevent SET event_type='x' WHERE id=%s",
                           [event.pk])


@pytest.mark.django_db
def test_tampering_with_a_row_is_detected_by_the_command(world):
    events = list(audit.events_for(world.firm_a))
    victim = events[2]
    with connection.cursor() as cursor:
        # The attacker is a DBA: disable the protective trigger, then rewrite history.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE brokerage_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE brokerage_auditevent SET after = '{\"role\": \"firm_admin\"}' "
                       "WHERE id = %s", [victim.pk])
        cursor.execute("ALTER TABLE brokerage_auditevent ENABLE TRIGGER USER")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", "--firm", world.firm_a.slug, stdout=out)
    assert f"BROKEN at event #{victim.seq}" in out.getvalue()
    assert audit.verify_chain(audit.chain_key(world.firm_b)) is None


@pytest.mark.django_db
def test_deleting_the_newest_rows_is_detected(world):
    last = audit.events_for(world.firm_a).last()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE brokerage_auditevent DISABLE TRIGGER USER")
        cursor.execute("DELETE FROM brokerage_auditevent WHERE id = %s", [last.pk])
        cursor.execute("ALTER TABLE brokerage_auditevent ENABLE TRIGGER USER")
    broken = audit.verify_chain(audit.chain_key(world.firm_a))
    assert broken is not None and "head" in broken.reason


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_from_two_connections_keep_one_chain():
    firm = make_firm("gamma").firm
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            start.wait()
            for i in range(15):
                with transaction.atomic():
                    audit.record(firm=firm, actor=None, event_type=f"test.{name}",
                                 object_type="test", object_id=i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    key = audit.chain_key(firm)
    seqs = list(AuditEvent.objects.filter(chain=key).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert AuditEvent.objects.filter(chain=key, event_type__startswith="test.").count() == 30
    assert audit.verify_chain(key) is None


@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError):
        audit.record(firm=None, actor=None, event_type="x")


@pytest.mark.django_db
def test_staff_login_is_audited_and_client_login_is_not(client, world):
    from tests.factories import PASSWORD

    before = audit.events_for(world.firm_a).filter(event_type="staff.login").count()
    assert log_in(client, "alpha_margin_desk", password=PASSWORD)
    assert log_in(client, "alpha_client", password=PASSWORD)
    logins = audit.events_for(world.firm_a).filter(event_type="staff.login")
    assert logins.count() == before + 1
    assert logins.last().actor_role == "margin_desk"
