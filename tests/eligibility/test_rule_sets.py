"""Rule sets as versioned data: defaults, proposals approved by a second person, floors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from brokerage.models import AuditEvent
from eligibility import services
from eligibility.errors import (
    Conflict,
    FourEyesViolation,
    InvalidRequest,
    InvalidRuleSet,
    NotPermitted,
)
from eligibility.models import Evaluation, RuleSet

from .conftest import WEDNESDAY_BEFORE_THANKSGIVING, funded_account


def test_version_one_is_the_house_defaults_adopted_once(in_desk_firm):
    desk = in_desk_firm
    first = services.active_rule_set(firm=desk.firm)
    again = services.active_rule_set(firm=desk.firm)
    assert first.pk == again.pk and first.version == 1 and first.status == "active"
    assert first.opening_equity_minimum == Decimal("125000.00")
    assert first.unlisted_derivatives_equity_minimum == Decimal("5000000.00")
    assert first.min_options_approval_level == 4
    assert "retirement" not in first.allowed_registrations
    assert first.allowed_margin_types == ["reg_t"]
    assert AuditEvent.objects.filter(event_type="ruleset.defaults_adopted",
                                     object_id=str(first.pk)).count() == 1


def test_a_change_needs_a_second_person_and_the_old_version_stays(in_desk_firm):
    desk = in_desk_firm
    v1 = services.active_rule_set(firm=desk.firm)
    proposal = services.propose_rule_set(firm=desk.firm, proposer=desk.risk,
                                         reason="raise the opening bar",
                                         opening_equity_minimum=Decimal("175000"))
    assert proposal.status == "proposed" and proposal.version == 2
    assert services.active_rule_set(firm=desk.firm).pk == v1.pk  # not in force until approved

    with pytest.raises(FourEyesViolation, match="proposed rule set v2 and so cannot approve"):
        services.approve_rule_set(rule_set=proposal, approver=desk.risk)
    proposal.refresh_from_db()
    assert proposal.status == "proposed"

    approved = services.approve_rule_set(rule_set=proposal, approver=desk.admin, reason="agreed")
    assert approved.status == "active" and approved.decided_by == desk.admin
    v1.refresh_from_db()
    assert v1.status == "superseded" and v1.superseded_at is not None
    assert v1.opening_equity_minimum == Decimal("125000.00")  # the record is unchanged
    assert services.active_rule_set(firm=desk.firm).opening_equity_minimum == Decimal("175000.00")
    events = list(AuditEvent.objects.filter(event_type__startswith="ruleset.",
                                            firm=desk.firm).values_list("event_type", flat=True))
    assert events == ["ruleset.defaults_adopted", "ruleset.proposed", "ruleset.approved"]


@pytest.mark.parametrize(("changes", "field"), [
    ({"opening_equity_minimum": Decimal("99000")}, "opening_equity_minimum"),
    ({"unlisted_derivatives_equity_minimum": Decimal("1000000")},
     "unlisted_derivatives_equity_minimum"),
    ({"min_options_approval_level": 2}, "min_options_approval_level"),
    ({"allowed_margin_types": ["cash", "reg_t"]}, "allowed_margin_types"),
    ({"deficiency_restriction_day": 3}, "deficiency_restriction_day"),  # call policy now
])
def test_the_floor_cannot_be_undercut_by_a_proposal(in_desk_firm, changes, field):
    desk = in_desk_firm
    with pytest.raises(InvalidRuleSet) as refused:
        services.propose_rule_set(firm=desk.firm, proposer=desk.admin, reason="cut", **changes)
    assert field in {e["field"] for e in refused.value.errors}
    assert RuleSet.objects.filter(status="proposed").count() == 0


def test_the_floor_holds_in_the_database_too(in_desk_firm):
    desk = in_desk_firm
    v1 = services.active_rule_set(firm=desk.firm)
    for column, value in (("opening_equity_minimum", Decimal("99999")),
                          ("unlisted_derivatives_equity_minimum", Decimal("100000"))):
        with pytest.raises(IntegrityError), transaction.atomic():
            RuleSet.objects.filter(pk=v1.pk).update(**{column: value})
    v1.refresh_from_db()
    assert v1.opening_equity_minimum == Decimal("125000.00")


def test_a_version_is_never_edited(in_desk_firm):
    v1 = services.active_rule_set(firm=in_desk_firm.firm)
    v1.min_net_worth = Decimal("1")
    with pytest.raises(PermissionError, match="never edited"):
        v1.save()


@pytest.mark.parametrize(("proposer", "reason", "change", "refusal", "match"), [
    # who may propose: risk officers and firm admins of the firm, no one else
    ("margin_desk", "x", {"min_net_worth": "600000"}, NotPermitted, None),
    ("compliance", "x", {"min_net_worth": "600000"}, NotPermitted, None),
    ("client_user", "x", {"min_net_worth": "600000"}, NotPermitted, None),
    ("other_firm_admin", "x", {"min_net_worth": "600000"}, NotPermitted, "not a member"),
    # a proposal must change something and say why
    ("admin", "same", {"opening_equity_minimum": "125000"}, InvalidRequest,
     "changes no threshold"),
    ("admin", " ", {"opening_equity_minimum": "150000"}, InvalidRequest, "say why"),
])
def test_a_proposal_refused(in_desk_firm, proposer, reason, change, refusal, match):
    desk = in_desk_firm
    with pytest.raises(refusal, match=match):
        services.propose_rule_set(firm=desk.firm, proposer=getattr(desk, proposer),
                                  reason=reason,
                                  **{name: Decimal(value) for name, value in change.items()})


def test_a_proposal_drafted_against_an_old_version_cannot_be_approved(in_desk_firm):
    desk = in_desk_firm
    first = services.propose_rule_set(firm=desk.firm, proposer=desk.risk, reason="a",
                                      min_net_worth=Decimal("600000"))
    second = services.propose_rule_set(firm=desk.firm, proposer=desk.risk, reason="b",
                                       min_liquid_net_worth=Decimal("300000"))
    services.approve_rule_set(rule_set=first, approver=desk.admin)
    with pytest.raises(Conflict, match="propose the change again"):
        services.approve_rule_set(rule_set=second, approver=desk.admin)


def test_a_proposal_can_be_rejected_and_stays_on_record(in_desk_firm):
    desk = in_desk_firm
    proposal = services.propose_rule_set(firm=desk.firm, proposer=desk.risk, reason="a",
                                         min_net_worth=Decimal("600000"))
    with pytest.raises(InvalidRequest):
        services.reject_rule_set(rule_set=proposal, approver=desk.admin, reason="")
    rejected = services.reject_rule_set(rule_set=proposal, approver=desk.admin, reason="no")
    assert rejected.status == "rejected"
    with pytest.raises(Conflict):
        services.approve_rule_set(rule_set=rejected, approver=desk.admin)
    assert RuleSet.objects.count() == 2


def test_retirement_accounts_only_if_the_firm_says_so(in_desk_firm):
    desk = in_desk_firm
    ira = funded_account(desk, number="ALPHA-IRA", registration="retirement",
                         margin_type="reg_t", cash="300000")
    application = services.create_application(account=ira, actor=desk.client_user, submit=True)
    assert application.evaluations.get().results["passed"] is False
    proposal = services.propose_rule_set(
        firm=desk.firm, proposer=desk.risk, reason="offer PM on IRAs",
        allowed_registrations=["individual", "joint", "entity", "retirement"])
    services.approve_rule_set(rule_set=proposal, approver=desk.admin)
    reviewed = services.review_application(application=application, reviewer=desk.risk,
                                           recommendation="approve")
    approved = services.approve_application(application=reviewed, approver=desk.admin)
    assert approved.state == "approved"


def test_every_application_records_the_version_it_was_judged_by(in_desk_firm):
    desk = in_desk_firm
    application = services.create_application(account=desk.account, actor=desk.client_user,
                                              submit=True, today=WEDNESDAY_BEFORE_THANKSGIVING)
    assert application.rule_set.version == 1
    application = services.review_application(application=application, reviewer=desk.risk,
                                               recommendation="approve")
    proposal = services.propose_rule_set(firm=desk.firm, proposer=desk.risk, reason="stricter",
                                         min_years_options_experience=3)
    services.approve_rule_set(rule_set=proposal, approver=desk.admin)
    approved = services.approve_application(application=application, approver=desk.risk2,
                                            today=WEDNESDAY_BEFORE_THANKSGIVING)
    assert approved.rule_set.version == 2  # judged at approval by the version then in force
    stages = list(Evaluation.objects.filter(application=approved).order_by("evaluated_at", "pk")
                  .values_list("stage", "rule_set__version"))
    assert stages == [("submission", 1), ("review", 1), ("approval", 2)]
