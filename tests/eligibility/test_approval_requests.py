"""The eligibility workflow on the one maker-checker: an application under review and a rule-set
proposal are requests in brokerage.approvals, closed when their subject moves on; the data
migration gives the rows pending before it their requests."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps

from brokerage import approvals
from brokerage.errors import Conflict
from brokerage.models import ApprovalDecision, ApprovalRequest
from eligibility import services
from eligibility.models import Application

from .conftest import reviewed_application


def _request(application: Application) -> ApprovalRequest:
    return approvals.request_for(kind=services.APPLICATION_KIND, subject=application)


def test_review_asks_a_second_person_and_the_decision_is_recorded(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk, submitter=desk.admin)
    request = _request(application)
    assert request.state == "pending" and request.drafted_on == application.version
    assert request.requested_by == desk.risk
    assert request.makers == {str(desk.admin.pk): ["drafted", "submitted"],
                              str(desk.risk.pk): ["reviewed"]}
    assert list(approvals.pending()) == [request]
    services.approve_application(application=application, approver=desk.risk2)
    request.refresh_from_db()
    assert request.state == "approved" and request.decided_by == desk.risk2
    assert list(ApprovalDecision.objects.filter(request=request)
                .values_list("user__username", "approve")) == [("alpha_risk_officer_2", True)]
    assert not approvals.pending().exists()


def test_an_account_that_fails_at_approval_leaves_the_request_pending(in_desk_firm):
    from .conftest import withdraw

    desk = in_desk_firm
    application = reviewed_application(desk)
    withdraw(desk.account, "150000")
    with pytest.raises(services.NotEligible):
        services.approve_application(application=application, approver=desk.admin)
    request = _request(application)
    assert request.state == "pending" and not request.decisions.exists()


@pytest.mark.parametrize("move", ["stale", "withdrawn"])
def test_a_request_closes_when_its_application_moves_on(in_desk_firm, move):
    desk = in_desk_firm
    application = reviewed_application(desk)
    if move == "stale":
        services.mark_stale(application=application, reason="client data changed")
    else:
        services.withdraw_application(application=application, actor=desk.client_user)
    request = _request(application)
    assert request.state == "closed" and move in request.reason
    assert not approvals.pending().exists()
    with pytest.raises(Conflict, match="already closed"):  # the desk's door, straight at it
        approvals.decide(request=request, decider=desk.admin, approve=True)


def test_a_re_review_after_a_stale_round_is_a_new_request(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    stale = services.mark_stale(application=application, reason="x")
    again = services.review_application(
        application=services.submit_application(application=stale, actor=desk.client_user),
        reviewer=desk.risk2, recommendation="approve")
    requests = ApprovalRequest.objects.filter(subject_id=application.pk,
                                              kind=services.APPLICATION_KIND)
    assert sorted(requests.values_list("state", flat=True)) == ["closed", "pending"]
    assert _request(again).drafted_on == again.version


def test_a_rule_set_proposal_is_a_request_drafted_on_the_active_version(in_desk_firm):
    desk = in_desk_firm
    proposal = services.propose_rule_set(firm=desk.firm, proposer=desk.risk, reason="a",
                                         min_net_worth=Decimal("600000"))
    request = approvals.request_for(kind=services.RULE_SET_KIND, subject=proposal)
    assert request.drafted_on == 1 and request.makers == {str(desk.risk.pk): ["proposed"]}
    withdrawn = services.reject_rule_set(rule_set=proposal, approver=desk.risk, reason="mine")
    request.refresh_from_db()
    assert withdrawn.status == "rejected" and request.state == "withdrawn"


def test_the_data_migration_gives_pending_rows_their_requests(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk, submitter=desk.admin)
    proposal = services.propose_rule_set(firm=desk.firm, proposer=desk.risk, reason="a",
                                         min_net_worth=Decimal("600000"))
    made = {r.kind: (r.drafted_on, r.makers, r.requested_by_id)
            for r in ApprovalRequest.objects.all()}
    ApprovalRequest.objects.all().delete()  # as before the migration
    migration = importlib.import_module("eligibility.migrations.0002_approval_requests")
    migration.pending_to_requests(apps, None)
    again = {r.kind: (r.drafted_on, r.makers, r.requested_by_id)
             for r in ApprovalRequest.objects.all()}
    assert again == made
    assert {r.subject_id for r in ApprovalRequest.objects.all()} == {application.pk, proposal.pk}
