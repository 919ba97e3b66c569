"""The desk's compliance section through the test client: the trail's search (the firm's own
events only, in words, bad dates named), the export (the service's bytes and its signed
manifest, audited; bad input exports nothing), the chain's verification (recorded; a tampered
row named where it breaks), the daily margin-call record and report (the commands' CSV), the
home items, and who may open what (403 by role, 404 for another firm's export)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.services import post_ledger_entry
from brokerage import audit
from brokerage.audit_keys import public_key_pem
from brokerage.export_check import check_export, load_public_key
from brokerage.models import AuditEvent
from brokerage.roles import Role
from brokerage.scope import firm_scope
from margin.calls.record import account_csv, csv_for
from tests.factories import log_in

pytestmark = pytest.mark.django_db

TRAIL = reverse("desk-compliance-trail")
EXPORT = reverse("desk-compliance-export")
CHAIN = reverse("desk-compliance-chain")


def _as(client, world, role: str, firm: str = "a"):
    client.logout()
    assert log_in(client, getattr(world, firm).users[role])
    return client


def _exports(firm) -> int:
    return audit.events_for(firm).filter(event_type=audit.EXPORTED).count()


def test_the_trail_shows_the_firms_own_events_in_words(client, world):
    _as(client, world, Role.COMPLIANCE)
    response = client.get(TRAIL)
    assert response.status_code == 200
    page = response.content.decode()
    ours = audit.events_for(world.firm_a).count()
    assert f"{ours} events" in page
    assert "Account opened" in page and "Account ALPHA-0001" in page  # words and number
    assert "Client created" in page and "name: Client of alpha" in page  # the summary
    assert "Firm admin" in page  # who, with their role
    assert "BETA-0001" not in page and "Client of beta" not in page  # never another firm's
    assert "{&#x27;" not in page and '{"' not in page  # details as key/value, no JSON dumps
    assert "<dl class=\"kv\">" in page


def test_the_trail_filters_by_date_user_object_and_event(client, world):
    _as(client, world, Role.COMPLIANCE)
    today = timezone.localdate()
    admin = world.a.users[Role.FIRM_ADMIN]
    rows = client.get(TRAIL, {"since": today, "until": today, "actor": admin.username,
                              "event_type": "account.opened", "object_type": "accounts.account",
                              "object_id": "alpha-0001"})
    assert rows.status_code == 200
    assert len(rows.context["rows"]) == 1
    event = rows.context["rows"][0].event
    assert (event.event_type, event.object_id, event.actor) == (
        "account.opened", str(world.a.account.pk), admin)
    # yesterday holds nothing of this world; another firm's account number finds nothing here
    assert client.get(TRAIL, {"until": today - timedelta(days=1)}).context["rows"] == []
    # the account's number finds its children's events too (as the account's audit tab does)
    with firm_scope(world.firm_a):
        post_ledger_entry(account=world.a.account, kind="deposit", amount=Decimal("1000"),
                          actor=admin)
    everything = client.get(TRAIL, {"object_type": "accounts.account", "object_id": "ALPHA-0001"})
    seen = {row.event.object_type for row in everything.context["rows"]}
    assert {"accounts.account", "accounts.ledgerentry"} <= seen, seen
    other = client.get(TRAIL, {"object_type": "accounts.account", "object_id": "BETA-0001"})
    assert other.context["rows"] == []
    # another firm's user is not a choice: refused by name, nothing listed
    refused = client.get(TRAIL, {"actor": world.b.users[Role.FIRM_ADMIN].username})
    assert refused.status_code == 400 and refused.context["rows"] is None


def test_the_trail_pages_through_many_events(client, world):
    _as(client, world, Role.COMPLIANCE)
    with transaction.atomic():
        for n in range(60):
            audit.record(firm=world.firm_a, actor=None, event_type="test.noted",
                         object_type="accounts.account", object_id=n, after={"n": n})
    first = client.get(TRAIL, {"event_type": "test.noted"})
    assert first.context["page"].paginator.count == 60 and len(first.context["rows"]) == 50
    second = client.get(TRAIL, {"event_type": "test.noted", "page": 2})
    assert len(second.context["rows"]) == 10
    assert "event_type=test.noted&amp;page=2" in first.content.decode()


@pytest.mark.parametrize(("query", "message"), [
    ({"since": "2026-13-01"}, "From: &#x27;2026-13-01&#x27; is not a date (YYYY-MM-DD)"),
    ({"since": "2026-12-05", "until": "2026-12-01"}, "From (2026-12-05) is after To (2026-12-01)"),
    ({"object_id": "7"}, "choose the object&#x27;s type as well"),
])
def test_bad_search_input_is_named(client, world, query, message):
    _as(client, world, Role.FIRM_ADMIN)
    response = client.get(TRAIL, query)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "Nothing was searched" in response.content.decode()


def test_the_export_is_the_services_file_with_its_signed_manifest(client, world):
    _as(client, world, Role.COMPLIANCE)
    today = timezone.localdate()
    before = _exports(world.firm_a)
    made = client.post(EXPORT, {"since": today, "until": today, "file_format": "csv"})
    assert made.status_code == 302
    export = audit.events_for(world.firm_a).filter(event_type=audit.EXPORTED).latest("seq")
    assert _exports(world.firm_a) == before + 1  # the export is itself an audited event
    assert export.actor == world.a.users[Role.COMPLIANCE]
    assert made.url == reverse("desk-compliance-export-detail", args=[export.seq])
    page = client.get(made.url).content.decode()
    assert "Verified" in page and "Download audit-alpha-" in page
    file = client.get(reverse("desk-compliance-export-file", args=[export.seq]))
    body = b"".join(file.streaming_content)
    assert body == b"".join(audit.export_lines(export))  # the API's and the command's bytes
    assert file["Content-Disposition"] == f'attachment; filename="{audit.export_file_name(export)}"'
    manifest = client.get(reverse("desk-compliance-export-manifest", args=[export.seq]))
    assert manifest.content.decode() == audit.export_manifest_text(export)
    signed = json.loads(manifest.content)
    assert check_export(body, signed, load_public_key(public_key_pem())) == []
    assert signed["range"]["since"] == signed["range"]["until"] == today.isoformat()
    assert signed["file"]["rows"] == body.count(b"\n") - 1 > 0
    # the API's manifest of the same export is the same document
    api = client.get(reverse("audit-export-manifest", kwargs={"seq": export.seq}))
    assert api.json() == signed


@pytest.mark.parametrize(("form", "message"), [
    ({"since": "2026-12-05", "until": "2026-12-01", "file_format": "csv"},
     "since (2026-12-05) is after until (2026-12-01)"),
    ({"since": "5 Dec", "file_format": "csv"}, "From: &#x27;5 Dec&#x27; is not a date"),
    ({"file_format": "xlsx"}, "&#x27;xlsx&#x27; is not a file format: csv or jsonl"),
])
def test_a_bad_export_is_named_and_exports_nothing(client, world, form, message):
    _as(client, world, Role.COMPLIANCE)
    before = AuditEvent.objects.count()
    response = client.post(EXPORT, form)
    assert response.status_code == 400
    assert "Nothing was exported: " + message in response.content.decode()
    assert AuditEvent.objects.count() == before


def test_another_firms_export_is_a_404(client, world):
    with firm_scope(world.firm_b):
        theirs = audit.start_firm_export(firm=world.firm_b, actor=world.b.users[Role.COMPLIANCE],
                                         request=audit.ExportRequest())
    _as(client, world, Role.COMPLIANCE)
    for name in ("desk-compliance-export-detail", "desk-compliance-export-file",
                 "desk-compliance-export-manifest"):
        assert client.get(reverse(name, args=[theirs.seq])).status_code == 404, name
        assert client.get(reverse(name, args=[2**70])).status_code == 404, name
    # an event of our own chain that is not an export is not one either
    assert client.get(reverse("desk-compliance-export-detail", args=[1])).status_code == 404


def test_the_verification_is_recorded_and_shows_the_checkpoint(client, world):
    _as(client, world, Role.COMPLIANCE)
    assert audit.checkpoint_all(reason="test")
    head = audit.events_for(world.firm_a).count()
    response = client.post(CHAIN, follow=True)
    page = response.content.decode()
    assert f"Verified {head} events, #1 to #{head}" in page
    verified = audit.events_for(world.firm_a).latest("seq")
    assert verified.event_type == audit.VERIFIED and verified.after["verified"] is True
    assert verified.after["checkpoints"][0]["seq"] == head
    status = response.context["status"]
    assert status["checkpoint"].seq == head and status["checkpoint_key"] == "test"
    assert f"#{head}" in page and ">test<" in page  # the checkpoint's seq and its row key


def test_a_tampered_row_is_named_where_the_chain_breaks(client, world):
    assert audit.checkpoint_all(reason="test")
    target = audit.events_for(world.firm_a).get(seq=3)
    with connection.cursor() as cursor:  # as a database administrator could (test_audit_tamper)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE brokerage_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE brokerage_auditevent SET object_id = 'forged' WHERE id = %s",
                       [target.pk])
        cursor.execute("ALTER TABLE brokerage_auditevent ENABLE TRIGGER USER")
    _as(client, world, Role.COMPLIANCE)
    page = client.post(CHAIN, follow=True).content.decode()
    assert "The chain breaks at event #3: content does not match its hash (altered)" in page
    assert "events #1 to #2 hold" in page
    home = client.get(reverse("desk-home")).content.decode()
    assert "The audit trail failed its last verification" in home


def test_home_asks_compliance_to_verify_the_days_trail(client, world):
    _as(client, world, Role.COMPLIANCE)
    count = audit.events_for(world.firm_a).count()
    home = client.get(reverse("desk-home")).content.decode()
    assert f"{count} audit events not verified today" in home and "never verified" in home
    client.post(CHAIN)
    assert "not verified today" not in client.get(reverse("desk-home")).content.decode()
    # the firm admin and the risk officer are not asked
    _as(client, world, Role.FIRM_ADMIN)
    assert "not verified" not in client.get(reverse("desk-home")).content.decode()


def test_the_daily_record_and_report_are_the_commands_csv(client, world):
    _as(client, world, Role.RISK_OFFICER)
    day = date(2026, 12, 4)
    with firm_scope(world.firm_a):
        record, report = csv_for(day), account_csv(day)
    got = client.get(reverse("desk-compliance-margin-record"), {"date": day})
    assert got.status_code == 200 and got.content.decode() == record
    assert got["Content-Disposition"] == 'attachment; filename="margin-record-alpha-2026-12-04.csv"'
    got = client.get(reverse("desk-compliance-margin-report"), {"date": day})
    assert got.content.decode() == report and "ALPHA-0001" in report and "BETA" not in report
    bad = client.get(reverse("desk-compliance-margin-report"), {"date": "2026-02-30"})
    assert bad.status_code == 400
    assert "&#x27;2026-02-30&#x27; is not a date (YYYY-MM-DD): no file was made" in (
        bad.content.decode())


@pytest.mark.parametrize("role", [Role.MARGIN_DESK, Role.CLIENT])
def test_the_wrong_role_is_refused_every_compliance_page(client, world, role):
    with firm_scope(world.firm_a):
        ours = audit.start_firm_export(firm=world.firm_a, actor=world.a.users[Role.COMPLIANCE],
                                       request=audit.ExportRequest())
    _as(client, world, role)
    before = AuditEvent.objects.count()
    for name in ("desk-compliance", "desk-compliance-trail", "desk-compliance-export",
                 "desk-compliance-chain", "desk-compliance-margin-record",
                 "desk-compliance-margin-report"):
        assert client.get(reverse(name)).status_code == 403, name
    for name in ("desk-compliance-export-detail", "desk-compliance-export-file",
                 "desk-compliance-export-manifest"):
        assert client.get(reverse(name, args=[ours.seq])).status_code == 403, name
    assert client.post(EXPORT, {"file_format": "csv"}).status_code == 403
    assert client.post(CHAIN).status_code == 403
    assert AuditEvent.objects.count() == before  # nothing exported, nothing verified


def test_the_risk_officer_reads_the_daily_records_not_the_trail(client, world):
    _as(client, world, Role.RISK_OFFICER)
    page = client.get(reverse("desk-compliance")).content.decode()
    assert "Download the margin report" in page and "Audit trail</a>" not in page
    for url in (TRAIL, EXPORT, CHAIN):
        assert client.get(url).status_code == 403, url
    assert client.post(EXPORT, {"file_format": "csv"}).status_code == 403


def test_a_change_reads_as_before_and_after_with_money_formatted(client, world):
    with transaction.atomic():
        audit.record(firm=world.firm_a, actor=None, event_type="margin_call.overdue",
                     object_type="margin.margincall", object_id=7,
                     before={"status": "issued", "amount_due": "5000"},
                     after={"account": "ALPHA-0001", "status": "overdue", "kind": "maintenance",
                            "amount_due": "5000.00", "rows": {"due_days": {"value": "3"}}})
    _as(client, world, Role.COMPLIANCE)
    row = client.get(TRAIL, {"event_type": "margin_call.overdue"}).context["rows"][0]
    assert (row.words, row.who, row.role) == ("Margin call overdue", "System", "System")
    assert row.object_label == "Margin call #7 (ALPHA-0001)"
    # 5000 and 5000.00 are one amount: not a change; a key the record did not have is shown
    assert row.summary == "status: issued → overdue; account: ALPHA-0001"
    fields = {f.name: f for f in row.fields}
    assert fields["amount due"].after == "$5,000.00" and not fields["amount due"].changed
    assert fields["status"].changed and fields["rows.due days"].after == "value: 3"


def test_a_page_of_the_trail_costs_the_same_whoever_acted(client, world):
    from django.test.utils import CaptureQueriesContext

    _as(client, world, Role.COMPLIANCE)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(TRAIL).status_code == 200
        return len(captured)

    before = queries()
    with transaction.atomic():
        for n, role in enumerate(("firm_admin", "risk_officer", "margin_desk", "client") * 10):
            audit.record(firm=world.firm_a, actor=world.a.users[role], event_type="test.noted",
                         object_type="accounts.account" if n % 2 else "auth.user",
                         object_id=world.a.account.pk if n % 2 else world.a.users[role].pk)
    assert queries() == before


def test_every_compliance_page_complies_with_the_csp(client, world):
    from tests.security.test_pages_csp import _complies

    _as(client, world, Role.COMPLIANCE)
    client.post(EXPORT, {"file_format": "jsonl"})
    client.post(CHAIN)
    export = audit.events_for(world.firm_a).filter(event_type=audit.EXPORTED).latest("seq")
    for url in (reverse("desk-compliance"), TRAIL, f"{TRAIL}?event_type=audit.verified", EXPORT,
                CHAIN, reverse("desk-compliance-export-detail", args=[export.seq])):
        _complies(client.get(url), url)
