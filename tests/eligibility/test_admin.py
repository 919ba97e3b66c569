"""The staff desk (Django admin): the actions call the same services, so four eyes holds here too."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.test import Client

from brokerage.scope import firm_scope
from eligibility import services
from eligibility.models import Application, RuleSet

from .conftest import logged_in, reviewed_application, state_of

CHANGELIST = "/admin/eligibility/application/"
RULES_CHANGELIST = "/admin/eligibility/ruleset/"


def act(client: Client, url: str, action: str, pks: list[int], **extra):
    return client.post(url, {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in pks],
                             "index": "0", **extra}, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def reviewed(desk):
    with firm_scope(desk.firm):
        return reviewed_application(desk)


def test_the_reviewer_cannot_approve_through_an_admin_action(desk, reviewed):
    response = act(logged_in(desk.risk), CHANGELIST, "approve_selected", [reviewed.pk])
    assert response.status_code == 200
    assert any("cannot approve it: a second person decides (four eyes)" in m
               for m in messages_of(response))
    assert state_of(reviewed.pk) == "under_review"


def test_a_submitter_who_drafted_in_the_admin_cannot_approve_there(desk):
    admin = logged_in(desk.admin)
    added = admin.post("/admin/eligibility/application/add/", {"account": desk.account.pk})
    assert added.status_code == 302, added.content[:500]
    with firm_scope(desk.firm):
        application = Application.objects.get(account=desk.account)
    assert application.state == "draft" and application.created_by == desk.admin
    act(admin, CHANGELIST, "submit_selected", [application.pk])
    act(logged_in(desk.risk), CHANGELIST, "recommend_approval", [application.pk])
    assert state_of(application.pk) == "under_review"
    refused = act(admin, CHANGELIST, "approve_selected", [application.pk])
    assert any("alpha_firm_admin drafted and submitted" in m for m in messages_of(refused))
    assert state_of(application.pk) == "under_review"
    approved = act(logged_in(desk.risk2), CHANGELIST, "approve_selected", [application.pk])
    assert any("1 approved" in m for m in messages_of(approved))
    assert state_of(application.pk) == "approved"


def test_the_admin_add_form_reports_what_the_service_refuses(desk):
    admin = logged_in(desk.admin)
    assert admin.post("/admin/eligibility/application/add/",
                      {"account": desk.account.pk}).status_code == 302
    again = admin.post("/admin/eligibility/application/add/", {"account": desk.account.pk})
    assert again.status_code == 200  # the form again, with the error on the account field
    assert b"already has application" in again.content


def test_reject_action_asks_for_reasons_then_rejects(desk, reviewed):
    admin = logged_in(desk.admin)
    form = act(admin, CHANGELIST, "reject_selected", [reviewed.pk])
    assert form.status_code == 200 and b'name="reasons"' in form.content
    assert state_of(reviewed.pk) == "under_review"
    done = act(admin, CHANGELIST, "reject_selected", [reviewed.pk], apply="Reject",
               reasons="Not enough liquid net worth.")
    assert any("1 rejected" in m for m in messages_of(done))
    assert state_of(reviewed.pk) == "rejected"


def test_the_reviewer_cannot_reject_through_the_admin_either(desk, reviewed):
    done = act(logged_in(desk.risk), CHANGELIST, "reject_selected", [reviewed.pk], apply="Reject",
               reasons="mine")
    assert any("four eyes" in m for m in messages_of(done))
    assert state_of(reviewed.pk) == "under_review"


def test_margin_desk_may_not_approve_in_the_admin(desk, reviewed):
    response = act(logged_in(desk.margin_desk), CHANGELIST, "approve_selected", [reviewed.pk])
    assert any("may not approve" in m for m in messages_of(response))
    assert state_of(reviewed.pk) == "under_review"


def test_another_firms_staff_never_see_the_application(desk, reviewed):
    outsider = logged_in(desk.other_firm_admin)
    listing = outsider.get(CHANGELIST)
    assert listing.status_code == 200 and b"ALPHA-0001" not in listing.content
    act(outsider, CHANGELIST, "approve_selected", [reviewed.pk])
    assert state_of(reviewed.pk) == "under_review"
    assert outsider.get(f"{CHANGELIST}{reviewed.pk}/change/").status_code in (302, 404)


def test_rule_set_proposals_in_the_admin_need_a_second_person(desk):
    risk = logged_in(desk.risk)
    page = risk.get("/admin/eligibility/ruleset/add/")
    assert page.status_code == 200 and b"125000" in page.content  # starts from the active set
    with firm_scope(desk.firm):
        initial = services.active_rule_set(firm=desk.firm).thresholds()
    form = {k: v for k, v in initial.items() if k not in ("allowed_registrations",
                                                          "allowed_margin_types")}
    form.update(allowed_registrations='["individual", "joint", "entity"]',
                allowed_margin_types='["reg_t"]', change_reason="stricter income")
    undercut = risk.post("/admin/eligibility/ruleset/add/",
                         {**form, "opening_equity_minimum": "90000.00"})
    assert undercut.status_code == 200 and b"regulatory floor" in undercut.content
    created = risk.post("/admin/eligibility/ruleset/add/",
                        {**form, "min_annual_income": str(Decimal("150000.00"))})
    assert created.status_code == 302
    with firm_scope(desk.firm):
        proposal = RuleSet.objects.get(status="proposed")
    assert proposal.min_annual_income == Decimal("150000.00") and proposal.proposed_by == desk.risk
    refused = act(risk, RULES_CHANGELIST, "approve_selected", [proposal.pk])
    assert any("cannot approve it: a second person decides" in m for m in messages_of(refused))
    act(logged_in(desk.admin), RULES_CHANGELIST, "approve_selected", [proposal.pk])
    with firm_scope(desk.firm):
        assert services.active_rule_set(firm=desk.firm).pk == proposal.pk


def test_margin_desk_cannot_open_the_rule_set_add_form(desk):
    assert logged_in(desk.margin_desk).get("/admin/eligibility/ruleset/add/").status_code == 403


def test_the_desk_pages_render_for_staff(desk, reviewed):
    staff = logged_in(desk.compliance)
    for url in (CHANGELIST, f"{CHANGELIST}{reviewed.pk}/change/", RULES_CHANGELIST,
                "/admin/margin/margincall/"):
        assert staff.get(url).status_code == 200, url
    page = staff.get(f"{CHANGELIST}{reviewed.pk}/change/")
    assert b"submission" in page.content and b"review" in page.content  # the evaluations inline
    assert staff.get("/admin/eligibility/application/add/").status_code == 403  # reads only
