"""The FINRA 4220 daily record (rows and the CSV command) and the end-of-day command."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from brokerage.scope import firm_scope
from margin.calls import policy, services
from margin.calls.record import rows_for
from margin.models import EndOfDayRun, MarginCall

from .conftest import T, margined_long

pytestmark = pytest.mark.django_db


def _call(desk) -> MarginCall:
    return services.issue_call(account=desk.account, kind="maintenance", amount=Decimal("5000"),
                               as_of=T, equity=Decimal("20000"), requirement=Decimal("25000"),
                               policy=policy.active_policy(desk.firm))


def test_each_day_a_call_existed_has_its_amount_and_how_it_was_met(in_desk_firm):
    call = _call(in_desk_firm)
    services.record_satisfaction(call=call, manner="securities", amount="2000",
                                 actor=in_desk_firm.margin_desk, received_on=date(2026, 11, 25))
    services.record_satisfaction(call=call, manner="other", amount="3000",
                                 actor=in_desk_firm.margin_desk, received_on=date(2026, 11, 30))
    assert rows_for(date(2026, 11, 23)) == []
    [issued] = rows_for(T)
    assert (issued["amount_required"], issued["amount_due"], issued["status"],
            issued["manner"]) == ("5000.00", "5000.00", "issued", "")
    [partial] = rows_for(date(2026, 11, 25))
    assert (partial["amount_due"], partial["manner"], partial["amount_received"]) == (
        "3000.00", "securities", "2000.00")
    [standing] = rows_for(date(2026, 11, 27))
    assert (standing["status"], standing["manner"]) == ("partially_met", "")
    [met] = rows_for(date(2026, 11, 30))
    assert (met["status"], met["met_on"], met["manner"]) == ("met", "2026-11-30", "other")
    assert rows_for(date(2026, 12, 1)) == []


def test_the_export_command_writes_the_day_as_csv(in_desk_firm, tmp_path):
    _call(in_desk_firm)
    out = io.StringIO()
    with firm_scope(None):
        call_command("export_margin_record", "--date", "2026-11-24", "--firm", "alpha",
                     stdout=out)
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (row["account"], row["kind"], row["amount_required"], row["due_date"]) == (
        in_desk_firm.account.number, "maintenance", "5000.00", "2026-12-16")
    with pytest.raises(CommandError, match="--date"), firm_scope(None):
        call_command("export_margin_record", "--date", "24/11/2026", "--firm", "alpha")
    with pytest.raises(CommandError, match="--firm"), firm_scope(None):
        call_command("export_margin_record", "--date", "2026-11-24", "--firm", "nope")


def test_run_end_of_day_values_the_close_and_issues_the_calls(
        in_desk_firm, django_capture_on_commit_callbacks):
    account = margined_long(in_desk_firm.account)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True), firm_scope(None):
        call_command("run_end_of_day", "--session", "2026-11-24", "--firm", "alpha",
                     stdout=out)
    assert "alpha: XNYS 2026-11-24" in out.getvalue()
    assert f"alpha {account.number} maintenance issued $5,000.00 due 2026-12-16" in out.getvalue()
    assert EndOfDayRun.objects.filter(session=T).count() == 1
    [call] = MarginCall.objects.filter(account=account)
    assert (call.kind, call.amount, call.due_date) == ("maintenance", Decimal("5000.00"),
                                                       date(2026, 12, 16))
    assert len(mail.outbox) == 1 and account.number in mail.outbox[0].subject


def test_the_daily_margin_report_per_account_as_csv(in_desk_firm, tmp_path,
                                                    django_capture_on_commit_callbacks):
    """Requirement, equity and excess as the day ended, and the calls open then: command and
    API, for compliance."""
    from django.test import Client
    from django.utils import timezone

    from brokerage.tokens import create_api_token
    from margin.calls.record import account_rows
    from margin.models import MarginSnapshot

    account = margined_long(in_desk_firm.account)
    with django_capture_on_commit_callbacks(execute=True), firm_scope(None):
        call_command("run_end_of_day", "--session", "2026-11-24", "--firm", "alpha",
                     stdout=io.StringIO())
    today = timezone.localdate()
    snapshot = MarginSnapshot.objects.filter(account=account).latest("computed_at", "pk")
    [row] = [r for r in account_rows(today) if r["account"] == account.number]
    assert (row["requirement"], row["equity"], row["excess"]) == (
        str(snapshot.requirement), str(snapshot.equity), str(snapshot.excess))
    assert Decimal(row["excess"]) < 0 and row["snapshot"] == str(snapshot.pk)
    [call] = MarginCall.objects.filter(account=account)
    assert (row["open_calls"], row["open_amount_due"], row["calls"]) == (
        "1", "5000.00", f"{call.pk}:maintenance:issued")
    [before] = [r for r in account_rows(date(2026, 11, 23)) if r["account"] == account.number]
    assert (before["snapshot"], before["requirement"], before["open_calls"]) == ("", "", "0")

    out = tmp_path / "report.csv"
    with firm_scope(None):
        call_command("export_margin_report", "--date", today.isoformat(), "--firm", "alpha",
                     "--output", str(out))
    assert row in list(csv.DictReader(out.open()))
    secret = create_api_token(user=in_desk_firm.compliance, actor=None).secret
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    with firm_scope(None):
        response = client.get(f"/api/v1/margin-report/?date={today.isoformat()}")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert row in list(csv.DictReader(io.StringIO(response.content.decode())))
        assert client.get("/api/v1/margin-report/").status_code == 400
