"""The REST doors: scoping (another firm's id is a 404), object permissions, the same services."""

from __future__ import annotations

from functools import partial

import pytest
from rest_framework.test import APIClient

from brokerage.scope import firm_scope
from brokerage.tokens import create_api_token
from eligibility import services
from eligibility.models import Application, RuleSet
from tests.api_body import decide, errors_of, the_error

from .conftest import logged_in, reviewed_application, someone_elses_account, state_of, withdraw

APPLICATIONS = "/api/v1/applications/"
RULE_SETS = "/api/v1/rule-sets/"


as_user = partial(logged_in, client_class=APIClient)


@pytest.fixture
def reviewed(desk):
    with firm_scope(desk.firm):
        return reviewed_application(desk)


def test_a_client_applies_and_submits_in_one_call(desk):
    response = as_user(desk.client_user).post(APPLICATIONS, {"account": desk.account.pk,
                                                             "submit": True}, format="json")
    assert response.status_code == 201, response.data
    body = response.data
    assert body["state"] == "submitted" and body["account_number"] == "ALPHA-0001"
    assert body["rule_set_version"] == 1
    assert body["latest_evaluation"]["passed"] is True
    assert {r["rule"] for r in body["latest_evaluation"]["results"]["rules"]} >= {
        "opening_equity", "pm_disclosure_acknowledged", "options_approval_level"}
    assert "review_notes" not in body and "submitted_by" not in body  # the desk's own notes
    assert body["allowed_actions"] == ["review", "withdraw"]


def test_a_client_sees_only_their_own_applications(desk):
    with firm_scope(desk.firm):
        other_account = someone_elses_account(desk, name="Other", email="o@alpha.example")
        theirs = services.create_application(account=other_account, actor=desk.margin_desk)
        mine = services.create_application(account=desk.account, actor=desk.client_user)
    client = as_user(desk.client_user)
    listed = client.get(APPLICATIONS).data["results"]
    assert [a["id"] for a in listed] == [mine.pk]
    assert client.get(f"{APPLICATIONS}{theirs.pk}/").status_code == 404
    assert client.post(f"{APPLICATIONS}{theirs.pk}/withdraw/", {}, format="json").status_code == 404
    refused = client.post(APPLICATIONS, {"account": other_account.pk}, format="json")
    assert refused.status_code == 400 and the_error(refused)["field"] == "account"
    # Staff of the firm see both.
    assert len(as_user(desk.compliance).get(APPLICATIONS).data["results"]) == 2


def test_another_firms_application_is_a_404_through_every_door_of_the_api(desk, reviewed):
    outsider = as_user(desk.other_firm_admin)
    assert outsider.get(f"{APPLICATIONS}{reviewed.pk}/").status_code == 404
    for action in ("submit", "review", "approve", "reject", "withdraw", "eligibility"):
        method = outsider.get if action == "eligibility" else outsider.post
        response = method(f"{APPLICATIONS}{reviewed.pk}/{action}/",
                          {"reasons": "x", "recommendation": "approve"}, format="json")
        assert response.status_code == 404, action
    assert outsider.get(APPLICATIONS).data["results"] == []
    assert state_of(reviewed.pk) == "under_review"
    with firm_scope(desk.firm):
        alpha_rules = services.active_rule_set(firm=desk.firm)
    assert outsider.get(f"{RULE_SETS}{alpha_rules.pk}/").status_code == 404
    assert decide(outsider, f"{RULE_SETS}{alpha_rules.pk}/approve/", {}, format="json").status_code == 404


def test_review_then_approval_by_a_second_person(desk):
    client_api = as_user(desk.client_user)
    created = client_api.post(APPLICATIONS, {"account": desk.account.pk, "submit": True},
                              format="json").data
    reviewed = as_user(desk.risk).post(f"{APPLICATIONS}{created['id']}/review/",
                                       {"recommendation": "approve", "notes": "fine"},
                                       format="json")
    assert reviewed.status_code == 200 and reviewed.data["state"] == "under_review"
    assert reviewed.data["reviewed_by"] == "alpha_risk_officer"
    approved = decide(as_user(desk.admin), f"{APPLICATIONS}{created['id']}/approve/",
                                        {"reasons": "ok", "version": reviewed.data["version"]},
                                        format="json")
    assert approved.status_code == 200, approved.data
    assert approved.data["state"] == "approved" and approved.data["decided_by"] == "alpha_firm_admin"
    assert approved.data["effective_on"] is not None


def test_four_eyes_cannot_be_bypassed_through_the_api(desk, reviewed):
    response = decide(as_user(desk.risk), f"{APPLICATIONS}{reviewed.pk}/approve/", {"reasons": "me"},
                                       format="json")
    assert response.status_code == 403
    assert the_error(response)["code"] == "four_eyes"
    assert "reviewed application" in the_error(response)["message"]
    response = decide(as_user(desk.risk), f"{APPLICATIONS}{reviewed.pk}/reject/", {"reasons": "me"},
                                       format="json")
    assert response.status_code == 403 and the_error(response)["code"] == "four_eyes"
    assert state_of(reviewed.pk) == "under_review"


def test_roles_without_approval_rights_get_403(desk, reviewed):
    for user in (desk.margin_desk, desk.compliance, desk.client_user):
        response = decide(as_user(user), f"{APPLICATIONS}{reviewed.pk}/approve/", {}, format="json")
        assert response.status_code == 403, user.username
        assert the_error(response)["code"] == "not_permitted"
    assert state_of(reviewed.pk) == "under_review"


def test_a_second_approval_is_a_409_conflict(desk, reviewed):
    first = decide(as_user(desk.admin), f"{APPLICATIONS}{reviewed.pk}/approve/", {}, format="json")
    assert first.status_code == 200
    second = decide(as_user(desk.risk2), f"{APPLICATIONS}{reviewed.pk}/approve/", {}, format="json")
    assert second.status_code == 409
    assert the_error(second)["code"] == "conflict"
    assert "already approved by alpha_firm_admin" in the_error(second)["message"]


def test_a_stale_version_in_the_request_is_a_409(desk, reviewed):
    response = decide(as_user(desk.admin), f"{APPLICATIONS}{reviewed.pk}/approve/",
                                        {"version": reviewed.version - 1}, format="json")
    assert response.status_code == 409 and the_error(response)["field"] == "version"


def test_an_illegal_transition_is_a_409_with_the_reason(desk):
    with firm_scope(desk.firm):
        draft = services.create_application(account=desk.account, actor=desk.client_user)
    response = decide(as_user(desk.admin), f"{APPLICATIONS}{draft.pk}/approve/", {}, format="json")
    assert response.status_code == 409
    assert the_error(response)["code"] == "illegal_transition"
    assert "it is draft" in the_error(response)["message"]


def test_not_eligible_at_approval_is_a_422_listing_the_failed_rules(desk, reviewed):
    with firm_scope(desk.firm):
        withdraw(desk.account, "190000")
    response = decide(as_user(desk.admin), f"{APPLICATIONS}{reviewed.pk}/approve/", {}, format="json")
    assert response.status_code == 422, response.content
    refused = the_error(response)  # one entry per failed rule, in the rule's own words
    assert (refused["field"], refused["code"]) == ("rules.opening_equity", "not_eligible")
    assert "opening minimum" in refused["message"]
    assert state_of(reviewed.pk) == "under_review"


def test_reject_needs_reasons_and_withdraw_by_the_client(desk, reviewed):
    missing = decide(as_user(desk.admin), f"{APPLICATIONS}{reviewed.pk}/reject/", {}, format="json")
    assert missing.status_code == 400
    assert the_error(missing) == {"field": "reasons", "code": "required",
                                  "message": "This field is required."}
    withdrawn = as_user(desk.client_user).post(f"{APPLICATIONS}{reviewed.pk}/withdraw/",
                                               {"reason": "not now"}, format="json")
    assert withdrawn.status_code == 200 and withdrawn.data["state"] == "withdrawn"


def test_the_eligibility_preview_writes_nothing(desk, reviewed):
    response = as_user(desk.client_user).get(f"{APPLICATIONS}{reviewed.pk}/eligibility/")
    assert response.status_code == 200 and response.data["passed"] is True
    with firm_scope(desk.firm):
        assert Application.objects.get(pk=reviewed.pk).evaluations.count() == 2  # submit, review


def test_designating_an_approver_through_the_api(desk, reviewed):
    admin = as_user(desk.admin)
    response = admin.post(f"{APPLICATIONS}{reviewed.pk}/designate-approver/",
                          {"approver": desk.risk2.pk}, format="json")
    assert response.status_code == 200
    refused = decide(admin, f"{APPLICATIONS}{reviewed.pk}/approve/", {}, format="json")
    assert refused.status_code == 403 and "designated approvers" in the_error(refused)["message"]
    outsider = admin.post(f"{APPLICATIONS}{reviewed.pk}/designate-approver/",
                          {"approver": desk.other_firm_admin.pk}, format="json")
    assert outsider.status_code == 400 and the_error(outsider)["field"] == "approver"
    assert decide(as_user(desk.risk2), f"{APPLICATIONS}{reviewed.pk}/approve/", {},
                                    format="json").status_code == 200


def test_token_users_are_scoped_too(desk, reviewed):
    client = APIClient()
    token = create_api_token(user=desk.admin, actor=None).secret
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(f"{APPLICATIONS}{reviewed.pk}/").status_code == 200
    outsider = APIClient()
    token = create_api_token(user=desk.other_firm_admin, actor=None).secret
    outsider.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert outsider.get(f"{APPLICATIONS}{reviewed.pk}/").status_code == 404


def test_filter_by_state(desk, reviewed):
    staff = as_user(desk.compliance)
    assert [a["id"] for a in staff.get(APPLICATIONS, {"state": "under_review"}).data["results"]] \
        == [reviewed.pk]
    assert staff.get(APPLICATIONS, {"state": "approved"}).data["results"] == []


# Rule sets -------------------------------------------------------------------------------------

def test_rule_sets_are_staff_only(desk):
    assert as_user(desk.client_user).get(RULE_SETS).status_code == 403
    active = as_user(desk.compliance).get(f"{RULE_SETS}active/")
    assert active.status_code == 200 and active.data["version"] == 1
    assert active.data["opening_equity_minimum"] == "125000.00"
    assert "maintenance_equity_minimum" not in active.data  # call policy now


def test_propose_and_approve_a_rule_set_change_through_the_api(desk):
    proposed = as_user(desk.risk).post(f"{RULE_SETS}propose/", {
        "reason": "tighter opening", "opening_equity_minimum": "150000.00"}, format="json")
    assert proposed.status_code == 201, proposed.data
    assert proposed.data["status"] == "proposed" and proposed.data["based_on_version"] == 1
    own = decide(as_user(desk.risk), f"{RULE_SETS}{proposed.data['id']}/approve/", {}, format="json")
    assert own.status_code == 403 and the_error(own)["code"] == "four_eyes"
    approved = decide(as_user(desk.admin), f"{RULE_SETS}{proposed.data['id']}/approve/",
                                        {"reason": "agreed"}, format="json")
    assert approved.status_code == 200 and approved.data["status"] == "active"
    listed = as_user(desk.compliance).get(RULE_SETS).data["results"]
    assert [(r["version"], r["status"]) for r in listed] == [(2, "active"), (1, "superseded")]


def test_a_proposal_under_the_floor_is_a_400_naming_the_field(desk):
    response = as_user(desk.admin).post(f"{RULE_SETS}propose/", {
        "reason": "cheaper", "unlisted_derivatives_equity_minimum": "90000.00",
        "opening_equity_minimum": "95000.00"}, format="json")
    assert response.status_code == 400
    errors = {error["field"]: error for error in errors_of(response)}
    assert set(errors) == {"unlisted_derivatives_equity_minimum", "opening_equity_minimum"}
    assert "regulatory floor" in errors["opening_equity_minimum"]["message"]
    assert errors["opening_equity_minimum"]["code"] == "invalid_rule_set"
    with firm_scope(desk.firm):
        assert not RuleSet.objects.filter(status="proposed").exists()


def test_staff_without_rule_set_rights_cannot_propose(desk):
    response = as_user(desk.margin_desk).post(f"{RULE_SETS}propose/", {
        "reason": "x", "min_net_worth": "600000.00"}, format="json")
    assert response.status_code == 403
