"""The API doors of the two call changes that need two people (``brokerage.approvals``):
``/api/v1/call-policies/`` (propose a version, approve or reject it) and
``/api/v1/restrictions/`` (ask for a waiver, approve or reject it). Four eyes, the roles, the
firm (another firm's row is a 404) and bad input (a 400 naming the field, nothing written)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from rest_framework.test import APIClient

from brokerage.models import ApprovalRequest
from brokerage.scope import firm_scope
from margin.calls.policy import active_policy
from margin.calls.restrictions import impose
from margin.models import CallPolicy, Restriction
from tests.api_body import decide, errors_of, the_error
from tests.factories import log_in

pytestmark = pytest.mark.django_db

POLICIES = "/api/v1/call-policies/"
RESTRICTIONS = "/api/v1/restrictions/"
T = date(2026, 11, 24)


def as_user(user) -> APIClient:
    client = APIClient()
    log_in(client, user)
    return client


# Call policy ----------------------------------------------------------------------------------

def test_a_policy_change_is_proposed_by_one_and_approved_by_another(world):
    risk, admin = world.a.users["risk_officer"], world.a.users["firm_admin"]
    listed = as_user(risk).get(POLICIES)
    assert listed.status_code == 200
    [default] = listed.json()["results"]
    assert (default["version"], default["status"]) == (1, "active")
    assert default["rows"]["reg_t_due_days"]["source"] == "P"
    made = as_user(risk).post(POLICIES, {"values": {"house_due_days": 2, "house_cushion": "0.1"},
                                         "reason": "tighter house calls"}, format="json")
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["version"], body["status"], body["created_by"]) == (2, "proposed",
                                                                     risk.username)
    assert body["rows"]["house_due_days"] == {
        "value": "2", "source": "H", "citation": body["rows"]["house_due_days"]["citation"]}
    url = f"{POLICIES}{body['id']}/"
    own = decide(as_user(risk), f"{url}approve/", {}, format="json")
    assert own.status_code == 403 and the_error(own)["code"] == "four_eyes"
    desk = decide(as_user(world.a.users["margin_desk"]), f"{url}approve/", {}, format="json")
    assert desk.status_code == 403  # the margin desk does not decide policy
    approved = decide(as_user(admin), f"{url}approve/", {"reason": "agreed"}, format="json")
    assert approved.status_code == 200, approved.json()
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("active",
                                                                          admin.username)
    with firm_scope(world.firm_a):
        assert active_policy(world.firm_a).version == 2
        assert CallPolicy.objects.get(version=1).status == "superseded"


def test_a_policy_proposal_is_rejected_with_a_reason(world):
    risk, compliance = world.a.users["risk_officer"], world.a.users["compliance_officer"]
    made = as_user(risk).post(POLICIES, {"values": {"house_due_days": 2}, "reason": "r"},
                              format="json").json()
    url = f"{POLICIES}{made['id']}/reject/"
    no_reason = as_user(compliance).post(url, {}, format="json")
    assert no_reason.status_code == 400 and the_error(no_reason)["field"] == "reason"
    rejected = decide(as_user(compliance), url, {"reason": "not now"}, format="json")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"


@pytest.mark.parametrize(("body", "field", "code"), [
    ({"values": {"reg_t_due_days": 5}, "reason": "r"}, "values.reg_t_due_days",
     "looser_than_regulation"),
    ({"values": {"no_such_row": 1}, "reason": "r"}, "values.no_such_row", "unknown_field"),
    ({"values": {"house_due_days": "two"}, "reason": "r"}, "values.house_due_days", "invalid"),
    ({"values": {"house_due_days": 2}}, "reason", "required"),
    ({"values": "2", "reason": "r"}, "values", None),
    ({"values": {"house_due_days": 2}, "reason": "r", "approve": True}, "approve",
     "unknown_field"),
])
def test_bad_policy_input_is_a_400_naming_the_field_and_writes_nothing(world, body, field, code):
    response = as_user(world.a.users["risk_officer"]).post(POLICIES, body, format="json")
    assert response.status_code == 400, response.json()
    [error] = [e for e in errors_of(response) if e["field"] == field]
    assert code is None or error["code"] == code
    with firm_scope(world.firm_a):
        assert not CallPolicy.objects.filter(version__gt=1).exists()
        assert not ApprovalRequest.objects.exists()


def test_another_firms_policy_is_a_404_and_clients_are_refused(world):
    made = as_user(world.a.users["risk_officer"]).post(
        POLICIES, {"values": {"house_due_days": 2}, "reason": "r"}, format="json").json()
    outsider = as_user(world.b.users["firm_admin"])
    assert outsider.get(f"{POLICIES}{made['id']}/").status_code == 404
    foreign = decide(outsider, f"{POLICIES}{made['id']}/approve/", {}, format="json")
    assert foreign.status_code == 404 and the_error(foreign)["code"] == "not_found"
    assert [p["version"] for p in outsider.get(POLICIES).json()["results"]] == [1]  # its own
    client = as_user(world.a.users["client"]).get(POLICIES)
    assert client.status_code == 403


# Restriction waivers --------------------------------------------------------------------------

@pytest.fixture
def restriction(world) -> Restriction:
    with firm_scope(world.firm_a):
        return impose(account=world.a.account, kind=Restriction.Kind.FUNDS_ON_HAND_90D,
                      starts_on=T, ends_on=T + timedelta(days=90),
                      cause="3 calls met by liquidation in 12 months",
                      policy=active_policy(world.firm_a))


def test_a_waiver_is_asked_by_one_officer_and_granted_by_another(world, restriction):
    compliance, admin = world.a.users["compliance_officer"], world.a.users["firm_admin"]
    url = f"{RESTRICTIONS}{restriction.pk}/"
    assert as_user(compliance).get(url).json()["waiver"] is None
    asked = as_user(compliance).post(f"{url}waiver/", {"reason": "hardship, on file"},
                                     format="json")
    assert asked.status_code == 200, asked.json()
    waiver = asked.json()["waiver"]
    assert (waiver["state"], waiver["requested_by"], waiver["reason"]) == (
        "pending", compliance.username, "hardship, on file")
    again = as_user(admin).post(f"{url}waiver/", {"reason": "x"}, format="json")
    assert again.status_code == 409  # one waiver awaiting a second officer at a time
    own = decide(as_user(compliance), f"{url}approve/", {}, format="json")
    assert own.status_code == 403 and the_error(own)["code"] == "four_eyes"
    risk = decide(as_user(world.a.users["risk_officer"]), f"{url}approve/", {}, format="json")
    assert risk.status_code == 403  # only firm admins and compliance officers waive
    granted = decide(as_user(admin), f"{url}approve/", {"reason": "second officer"},
                                  format="json")
    assert granted.status_code == 200, granted.json()
    assert granted.json()["state"] == "waived"
    assert granted.json()["waiver"]["state"] == "approved"
    assert f"{compliance.username} and {admin.username}" in granted.json()["closed_reason"]


def test_a_waiver_is_turned_down_with_a_reason_and_the_restriction_stands(world, restriction):
    compliance, admin = world.a.users["compliance_officer"], world.a.users["firm_admin"]
    url = f"{RESTRICTIONS}{restriction.pk}/"
    as_user(compliance).post(f"{url}waiver/", {"reason": "hardship"}, format="json")
    no_reason = decide(as_user(admin), f"{url}reject/", {}, format="json")
    assert no_reason.status_code == 400 and the_error(no_reason)["field"] == "reason"
    rejected = decide(as_user(admin), f"{url}reject/", {"reason": "no"}, format="json")
    assert rejected.status_code == 200, rejected.json()
    assert (rejected.json()["state"], rejected.json()["waiver"]["state"]) == ("active",
                                                                              "rejected")


@pytest.mark.parametrize(("body", "field"), [
    ({}, "reason"), ({"reason": ""}, "reason"), ({"reason": "x", "approve": True}, "approve"),
])
def test_bad_waiver_input_is_a_400_naming_the_field_and_asks_nothing(world, restriction, body,
                                                                     field):
    response = as_user(world.a.users["compliance_officer"]).post(
        f"{RESTRICTIONS}{restriction.pk}/waiver/", body, format="json")
    assert response.status_code == 400
    assert the_error(response)["field"] == field
    with firm_scope(world.firm_a):
        assert not ApprovalRequest.objects.exists()


def test_another_firms_restriction_is_a_404_and_the_list_filters(world, restriction):
    outsider = as_user(world.b.users["firm_admin"])
    for url in (f"{RESTRICTIONS}{restriction.pk}/", ):
        assert outsider.get(url).status_code == 404
    foreign = outsider.post(f"{RESTRICTIONS}{restriction.pk}/waiver/", {"reason": "x"},
                            format="json")
    assert foreign.status_code == 404 and the_error(foreign)["code"] == "not_found"
    assert outsider.get(RESTRICTIONS).json()["results"] == []
    staff = as_user(world.a.users["margin_desk"])
    listed = staff.get(RESTRICTIONS, {"account": world.a.account.number, "state": "active"})
    assert [r["id"] for r in listed.json()["results"]] == [restriction.pk]
    assert staff.get(RESTRICTIONS, {"state": "waived"}).json()["results"] == []
    assert as_user(world.a.users["client"]).get(RESTRICTIONS).status_code == 403
