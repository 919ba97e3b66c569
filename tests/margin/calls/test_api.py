"""The calls' API: accounts and their current margin, restrictions, margin calls (fields,
filters, detail, actions), the 4220 rows; scoped to the firm and role."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import partial

import pytest
from rest_framework.test import APIClient

from accounts import services as book
from brokerage.scope import firm_scope
from margin.calls import policy, restrictions, services
from tests.api_body import decide, the_error
from tests.eligibility.conftest import logged_in, someone_elses_account

from .conftest import T, close, margined_long

pytestmark = pytest.mark.django_db
as_user = partial(logged_in, client_class=APIClient)
CALLS = "/api/v1/margin-calls/"


def _call(account, kind="maintenance", amount="5000", as_of=T, trade_date=None):
    return services.issue_call(account=account, kind=kind, amount=Decimal(amount), as_of=as_of,
                               trade_date=trade_date, equity=Decimal("20000"),
                               requirement=Decimal("25000"),
                               policy=policy.active_policy(account.firm))


@pytest.fixture
def calls(desk):
    with firm_scope(desk.firm):
        other = someone_elses_account(desk, name="Other", email="other@example.com")
        return {"own": _call(desk.account), "reg_t": _call(desk.account, kind="reg_t",
                                                            trade_date=T, amount="2500"),
                "other": _call(other, kind="house", as_of=date(2026, 11, 25))}


def test_the_desk_lists_calls_by_due_date_with_the_issue_s_fields(desk, calls):
    listed = as_user(desk.margin_desk).get(CALLS).json()["results"]
    assert [(c["account"], c["kind"], c["due_date"]) for c in listed] == [
        ("ALPHA-0001", "reg_t", "2026-11-30"), ("ALPHA-0002", "house", "2026-12-01"),
        ("ALPHA-0001", "maintenance", "2026-12-16")]
    first = listed[0]
    assert {"id", "account", "kind", "status", "amount", "due_date", "as_of", "rule"} <= set(first)
    assert (first["status"], first["amount"], first["as_of"]) == ("issued", "2500.00",
                                                                  "2026-11-24")


@pytest.mark.parametrize(("query", "expected"), [
    ({"account": "ALPHA-0002"}, ["house"]), ({"kind": "maintenance"}, ["maintenance"]),
    ({"status": "issued"}, ["reg_t", "house", "maintenance"]),
    ({"due_date": "2026-12-01"}, ["house"]), ({"due_before": "2026-12-01"}, ["reg_t", "house"]),
])
def test_calls_filter_by_account_kind_status_and_due_date(desk, calls, query, expected):
    listed = as_user(desk.compliance).get(CALLS, query).json()["results"]
    assert [c["kind"] for c in listed] == expected


def test_a_client_reads_their_own_calls_and_cannot_act(desk, calls):
    client = as_user(desk.client_user)
    with firm_scope(desk.firm):
        book.grant_account_access(account=desk.account, user=desk.client_user, actor=desk.admin)
    listed = client.get(CALLS).json()["results"]
    assert {c["account"] for c in listed} == {"ALPHA-0001"}
    assert client.get(f"{CALLS}{calls['other'].pk}/").status_code == 404
    refused = client.post(f"{CALLS}{calls['own'].pk}/cancel/", {"reason": "de_minimis"},
                          format="json")
    assert refused.status_code == 403


def test_another_firm_s_call_is_a_404(desk, calls):
    assert as_user(desk.other_firm_admin).get(f"{CALLS}{calls['own'].pk}/").status_code == 404


def test_detail_and_actions_satisfaction_extension_cancel(desk, calls):
    desk_api = as_user(desk.margin_desk)
    url = f"{CALLS}{calls['own'].pk}/"
    paid = desk_api.post(f"{url}satisfactions/", {"manner": "securities", "amount": "1500",
                                                  "note": "100 XYZ delivered"}, format="json")
    assert paid.status_code == 200, paid.json()
    body = paid.json()
    assert (body["status"], body["amount_due"]) == ("partially_met", "3500.00")
    assert [(s["manner"], s["amount"]) for s in body["satisfactions"]] == [
        ("securities", "1500.00")]
    cash = desk_api.post(f"{url}satisfactions/", {"manner": "cash", "amount": "1"},
                         format="json")
    assert cash.status_code == 400 and the_error(cash)["field"] == "manner"
    from margin import business_days

    with firm_scope(desk.firm):
        running = _call(desk.account, kind="house", as_of=business_days.today())
    house = f"{CALLS}{running.pk}/"
    asked = desk_api.post(f"{house}extensions/", {"days": 2, "reason_code": "CLIENT"},
                          format="json")
    assert asked.status_code == 200 and asked.json()["extensions"][0]["state"] == "proposed"
    own = decide(desk_api, f"{house}extension-decision/", {"approve": True}, format="json")
    assert own.status_code == 403 and the_error(own)["code"] == "four_eyes"
    cancel = desk_api.post(f"{url}cancel/", {"reason": "lapsed"}, format="json")
    assert cancel.status_code == 409 and the_error(cancel)["field"] == "reason"
    assert desk_api.get(url).json()["notices"][0]["event"] == "issued"


def test_accounts_their_current_margin_and_restrictions(desk):
    with firm_scope(desk.firm):
        margined_long(desk.account)
        close(desk.firm, T)
        restrictions.impose(account=desk.account, kind="funds_on_hand_90d", starts_on=T,
                            ends_on=date(2027, 2, 22), cause="practice",
                            policy=policy.active_policy(desk.firm))
    staff = as_user(desk.compliance)
    assert [a["number"] for a in staff.get("/api/v1/accounts/").json()["results"]] == [
        "ALPHA-0001"]
    margin = staff.get("/api/v1/accounts/ALPHA-0001/margin").json()
    assert (margin["equity"], margin["requirement"], margin["excess"]) == (
        "20000.00", "25000.00", "-5000.00")
    assert margin["computed_at"] and margin["warnings"] == []  # the call covers the deficit
    [row] = staff.get("/api/v1/accounts/ALPHA-0001/restrictions/").json()
    assert (row["kind"], row["state"], row["ends_on"]) == ("funds_on_hand_90d", "active",
                                                           "2027-02-22")
    assert as_user(desk.other_firm_admin).get(
        "/api/v1/accounts/ALPHA-0001/margin").status_code == 404


def test_the_4220_rows_through_the_api(desk, calls):
    staff = as_user(desk.compliance)
    rows = staff.get("/api/v1/margin-record/", {"date": "2026-11-24"}).json()
    assert sorted(r["kind"] for r in rows) == ["maintenance", "reg_t"]
    bad = staff.get("/api/v1/margin-record/", {"date": "yesterday"})
    assert bad.status_code == 400 and the_error(bad)["field"] == "date"
    assert as_user(desk.client_user).get("/api/v1/margin-record/",
                                         {"date": "2026-11-24"}).status_code == 403
