"""The application workflow through the services: states, four eyes, roles, conversion, mail."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core import mail
from guardian.core import ObjectPermissionChecker

from accounts import services as book
from accounts.models import Account
from brokerage import audit
from brokerage.models import AuditEvent
from brokerage.scope import firm_scope
from eligibility import services
from eligibility.errors import (
    Conflict,
    FourEyesViolation,
    IllegalTransition,
    InvalidRequest,
    NotEligible,
    NotFound,
    NotPermitted,
)
from eligibility.models import Application, Evaluation

from .conftest import (
    WEDNESDAY_BEFORE_THANKSGIVING,
    funded_account,
    reviewed_application,
    someone_elses_account,
    withdraw,
)

FRIDAY_AFTER_THANKSGIVING = date(2026, 11, 27)


def test_the_whole_path_client_submits_officer_reviews_second_person_approves(
        in_desk_firm, django_capture_on_commit_callbacks):
    desk = in_desk_firm
    with django_capture_on_commit_callbacks(execute=True):
        draft = services.create_application(account=desk.account, actor=desk.client_user)
        assert draft.state == "draft" and draft.client == desk.client
        submitted = services.submit_application(application=draft, actor=desk.client_user,
                                                today=WEDNESDAY_BEFORE_THANKSGIVING)
        assert submitted.state == "submitted" and submitted.submitted_by == desk.client_user
        assert submitted.rule_set.version == 1
        reviewed = services.review_application(application=submitted, reviewer=desk.risk,
                                               recommendation="approve", notes="solid")
        assert reviewed.state == "under_review" and reviewed.reviewed_by == desk.risk
        approved = services.approve_application(application=reviewed, approver=desk.admin,
                                                reasons="meets every rule",
                                                today=WEDNESDAY_BEFORE_THANKSGIVING)
    assert approved.state == "approved" and approved.decided_by == desk.admin
    # Approved the day before Thanksgiving: effective the next XNYS session, Friday 27th.
    assert approved.effective_on == FRIDAY_AFTER_THANKSGIVING
    desk.account.refresh_from_db()
    assert desk.account.margin_type == "reg_t"  # not yet

    subjects = [m.subject for m in mail.outbox]
    assert any("received your portfolio-margin application" in s for s in subjects)
    approval_mail = next(m for m in mail.outbox if "portfolio margin approved" in m.subject)
    assert approval_mail.to == [desk.client.email]
    assert "Friday 27 November 2026" in approval_mail.body

    stages = list(Evaluation.objects.filter(application=approved).order_by("pk")
                  .values_list("stage", "passed"))
    assert stages == [("submission", True), ("review", True), ("approval", True)]
    trail = list(audit.events_for(desk.firm).filter(
        object_type="eligibility.application").values_list("event_type", flat=True))
    assert trail == ["pm_application.created", "pm_application.submitted",
                     "pm_application.reviewed", "pm_application.approved"]


def test_conversion_happens_on_the_effective_day_through_change_account(
        in_desk_firm, django_capture_on_commit_callbacks):
    desk = in_desk_firm
    approved = services.approve_application(application=reviewed_application(desk),
                                            approver=desk.admin,
                                            today=WEDNESDAY_BEFORE_THANKSGIVING)
    assert services.apply_due_conversions(today=date(2026, 11, 26), firm=desk.firm) == []
    with django_capture_on_commit_callbacks(execute=True):
        converted = services.apply_due_conversions(today=FRIDAY_AFTER_THANKSGIVING, firm=desk.firm)
    assert [a.pk for a in converted] == [approved.pk]
    desk.account.refresh_from_db()
    assert desk.account.margin_type == "portfolio_margin"
    assert converted[0].converted_at is not None
    assert AuditEvent.objects.filter(event_type="account.converted_to_portfolio_margin",
                                     object_id=str(desk.account.pk)).count() == 1
    assert any("is now on portfolio margin" in m.subject for m in mail.outbox)
    # Idempotent: the next day converts nothing again.
    assert services.apply_due_conversions(today=date(2026, 11, 30), firm=desk.firm) == []


def test_the_celery_task_converts_every_firm(in_desk_firm):
    from eligibility.tasks import apply_due_conversions

    desk = in_desk_firm
    approved = services.approve_application(application=reviewed_application(desk),
                                            approver=desk.admin,
                                            today=WEDNESDAY_BEFORE_THANKSGIVING)
    assert apply_due_conversions.apply(args=["2026-11-27"]).get() == [approved.pk]


# Illegal transitions ---------------------------------------------------------------------------

def test_illegal_transitions_are_refused_with_a_clear_error(in_desk_firm):
    desk = in_desk_firm
    draft = services.create_application(account=desk.account, actor=desk.client_user)
    with pytest.raises(IllegalTransition, match="cannot approve application #.*: it is draft, "
                                                "and approve applies only to under_review"):
        services.approve_application(application=draft, approver=desk.admin)
    with pytest.raises(IllegalTransition, match="review applies only to submitted"):
        services.review_application(application=draft, reviewer=desk.risk,
                                    recommendation="approve")
    submitted = services.submit_application(application=draft, actor=desk.client_user)
    with pytest.raises(IllegalTransition, match="it is submitted"):
        services.submit_application(application=submitted, actor=desk.client_user)
    with pytest.raises(IllegalTransition):
        services.reject_application(application=submitted, approver=desk.admin, reasons="no")
    withdrawn = services.withdraw_application(application=submitted, actor=desk.client_user,
                                              reason="changed my mind")
    assert withdrawn.state == "withdrawn"
    with pytest.raises(IllegalTransition, match="it is withdrawn"):
        services.submit_application(application=withdrawn, actor=desk.client_user)
    assert Application.objects.get(pk=draft.pk).state == "withdrawn"


def test_a_decided_application_is_a_conflict_for_a_second_decision(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    services.approve_application(application=application, approver=desk.admin)
    with pytest.raises(Conflict, match="already approved by alpha_firm_admin"):
        services.approve_application(application=application, approver=desk.risk2)
    with pytest.raises(Conflict):
        services.reject_application(application=application, approver=desk.risk2, reasons="x")
    with pytest.raises(Conflict):
        services.withdraw_application(application=application, actor=desk.client_user)


def test_a_stale_version_is_a_conflict(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    with pytest.raises(Conflict, match="changed since you read it"):
        services.approve_application(application=application, approver=desk.admin,
                                     expected_version=application.version - 1)
    approved = services.approve_application(application=application, approver=desk.admin,
                                            expected_version=application.version)
    assert approved.state == "approved"


def test_compare_and_swap_refuses_a_move_from_a_state_no_longer_current(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    seen_by_a = Application.objects.get(pk=application.pk)
    services.approve_application(application=application, approver=desk.admin)
    with pytest.raises(IllegalTransition):  # the lock re-reads; CAS is the second line
        services._move(seen_by_a, "reject", decision_reasons="late")
    Application.objects.filter(pk=application.pk).update(state="under_review")
    with pytest.raises(Conflict, match="changed while you were acting"):
        services._move(seen_by_a, "reject", decision_reasons="late")


# Four eyes -------------------------------------------------------------------------------------

def test_the_reviewer_can_never_approve_or_reject(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk, reviewer=desk.risk)
    with pytest.raises(FourEyesViolation, match="alpha_risk_officer reviewed application"):
        services.approve_application(application=application, approver=desk.risk)
    with pytest.raises(FourEyesViolation):
        services.reject_application(application=application, approver=desk.risk, reasons="no")
    assert Application.objects.get(pk=application.pk).state == "under_review"


def test_the_submitter_can_never_approve(in_desk_firm):
    desk = in_desk_firm
    # A firm admin submits on the client's behalf; a firm admin may approve, but not this one.
    application = reviewed_application(desk, submitter=desk.admin)
    with pytest.raises(FourEyesViolation, match="alpha_firm_admin drafted and submitted"):
        services.approve_application(application=application, approver=desk.admin)
    approved = services.approve_application(application=application, approver=desk.risk2)
    assert approved.decided_by == desk.risk2


def test_whoever_drafted_or_reviewed_before_a_stale_round_still_cannot_approve(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk, submitter=desk.admin, reviewer=desk.risk)
    stale = services.mark_stale(application=application, reason="test")
    resubmitted = services.submit_application(application=stale, actor=desk.client_user)
    rereviewed = services.review_application(application=resubmitted, reviewer=desk.risk2,
                                             recommendation="approve")
    for earlier in (desk.admin, desk.risk, desk.risk2):
        with pytest.raises(FourEyesViolation):
            services.approve_application(application=rereviewed, approver=earlier)


def test_roles_that_may_not_decide(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    for outsider in (desk.margin_desk, desk.compliance, desk.client_user):
        with pytest.raises(NotPermitted, match="may not approve"):
            services.approve_application(application=application, approver=outsider)
    with pytest.raises(NotPermitted, match="not a member of Firm ALPHA"):
        services.approve_application(application=application, approver=desk.other_firm_admin)
    with pytest.raises(NotPermitted, match="may not review"):  # a risk officer reviews
        services.review_application(application=application, reviewer=desk.admin,
                                    recommendation="approve")


def test_only_a_designated_approver_decides_once_one_is_named(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    with pytest.raises(FourEyesViolation):  # the reviewer cannot even be designated
        services.designate_approver(application=application, approver=desk.risk, actor=desk.admin)
    with pytest.raises(NotPermitted):
        services.designate_approver(application=application, approver=desk.margin_desk,
                                    actor=desk.admin)
    services.designate_approver(application=application, approver=desk.risk2, actor=desk.admin)
    assert ObjectPermissionChecker(desk.risk2).has_perm("approve_application", application)
    with pytest.raises(NotPermitted, match="designated approvers"):
        services.approve_application(application=application, approver=desk.admin)
    assert services.approve_application(application=application,
                                        approver=desk.risk2).state == "approved"


def test_approving_against_a_reject_recommendation_needs_reasons(in_desk_firm):
    desk = in_desk_firm
    with pytest.raises(InvalidRequest, match="says why"):
        services.review_application(application=services.create_application(
            account=desk.account, actor=desk.client_user, submit=True), reviewer=desk.risk,
            recommendation="reject")
    application = Application.objects.get(account=desk.account)
    application = services.review_application(application=application, reviewer=desk.risk,
                                              recommendation="reject", notes="thin experience")
    with pytest.raises(InvalidRequest, match="needs reasons"):
        services.approve_application(application=application, approver=desk.admin)
    assert services.approve_application(application=application, approver=desk.admin,
                                        reasons="experience verified by phone").state == "approved"


def test_a_rejection_needs_reasons_and_tells_the_client(in_desk_firm,
                                                        django_capture_on_commit_callbacks):
    desk = in_desk_firm
    application = reviewed_application(desk, recommendation="reject")
    with pytest.raises(InvalidRequest, match="gives its reasons"):
        services.reject_application(application=application, approver=desk.admin, reasons="  ")
    with django_capture_on_commit_callbacks(execute=True):
        rejected = services.reject_application(application=application, approver=desk.admin,
                                               reasons="Options experience could not be verified.")
    assert rejected.state == "rejected"
    letter = next(m for m in mail.outbox if "application #" in m.subject and "received" not in m.subject)
    assert "Options experience could not be verified." in letter.body
    assert letter.to == [desk.client.email]


# Evaluation at approval time -------------------------------------------------------------------

def test_approval_evaluates_again_and_refuses_an_account_that_no_longer_qualifies(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    withdraw(desk.account, "150000")  # equity falls to $50,000 after the review
    with pytest.raises(NotEligible, match="below the \\$125,000.00 opening minimum") as refused:
        services.approve_application(application=application, approver=desk.admin)
    assert refused.value.details["passed"] is False
    application.refresh_from_db()
    assert application.state == "under_review"
    # The failed judgement and the attempt are kept on record.
    last = Evaluation.objects.filter(application=application).order_by("-pk").first()
    assert last.stage == "approval" and not last.passed and last.equity == Decimal("50000.00")
    assert AuditEvent.objects.filter(event_type="pm_application.approval_refused").count() == 1


def test_submission_records_failures_without_blocking_the_review(in_desk_firm,
                                                                 django_capture_on_commit_callbacks):
    desk = in_desk_firm
    book.update_client(client=desk.client, actor=desk.admin, options_approval_level=2)
    with django_capture_on_commit_callbacks(execute=True):
        application = services.create_application(account=desk.account, actor=desk.client_user,
                                                  submit=True)
    evaluation = application.evaluations.get()
    assert not evaluation.passed
    failed = [r["rule"] for r in evaluation.results["rules"] if not r["passed"]]
    assert failed == ["options_approval_level"]
    received = next(m for m in mail.outbox if "received" in m.subject)
    assert "needs level 4 (uncovered options)" in received.body


# Who may apply ---------------------------------------------------------------------------------

def test_a_client_applies_only_for_their_own_account(in_desk_firm):
    desk = in_desk_firm
    their_account = someone_elses_account(desk, name="Stranger", email="s@alpha.example")
    with pytest.raises(NotPermitted, match="not yours"):
        services.create_application(account=their_account, actor=desk.client_user)
    # Staff may apply for any account of the firm; compliance only reads.
    assert services.create_application(account=their_account, actor=desk.margin_desk).state == "draft"
    with pytest.raises(NotPermitted):
        services.create_application(account=desk.account, actor=desk.compliance)


def test_the_client_user_gets_a_view_grant_on_their_application(in_desk_firm):
    desk = in_desk_firm
    application = services.create_application(account=desk.account, actor=desk.margin_desk)
    checker = ObjectPermissionChecker(desk.client_user)
    assert checker.has_perm("view_application", application)
    assert not desk.client_user.has_perm("eligibility.view_application")  # no global grant
    assert not ObjectPermissionChecker(desk.margin_desk).has_perm("view_application", application)


def test_one_live_application_per_account_and_none_for_pm_or_closed_accounts(in_desk_firm):
    desk = in_desk_firm
    first = services.create_application(account=desk.account, actor=desk.client_user)
    with pytest.raises(Conflict, match=f"already has application #{first.pk}"):
        services.create_application(account=desk.account, actor=desk.margin_desk)
    services.withdraw_application(application=first, actor=desk.client_user)
    assert services.create_application(account=desk.account, actor=desk.client_user).pk != first.pk

    book.change_account(account=desk.account, actor=desk.admin, event_type="test",
                        margin_type="portfolio_margin")
    Application.objects.filter(account=desk.account).update(state="withdrawn")
    with pytest.raises(InvalidRequest, match="already on portfolio margin"):
        services.create_application(account=desk.account, actor=desk.client_user)
    book.change_account(account=desk.account, actor=desk.admin, event_type="test",
                        margin_type="reg_t", status="closed")
    with pytest.raises(InvalidRequest, match="is closed"):
        services.create_application(account=desk.account, actor=desk.client_user)


def test_a_cash_account_may_apply_but_never_passes(in_desk_firm):
    desk = in_desk_firm
    cash = funded_account(desk, number="ALPHA-CASH", registration="individual",
                          margin_type="cash", cash="500000")
    application = services.create_application(account=cash, actor=desk.client_user, submit=True)
    application = services.review_application(application=application, reviewer=desk.risk,
                                              recommendation="reject", notes="cash account")
    with pytest.raises(NotEligible, match="cash account cannot move to portfolio margin"):
        services.approve_application(application=application, approver=desk.admin,
                                     reasons="try anyway")


def test_another_firms_application_is_not_found_from_a_foreign_scope(desk):
    with firm_scope(desk.firm):
        application = services.create_application(account=desk.account, actor=desk.client_user)
    with firm_scope(desk.other_firm), pytest.raises(NotPermitted, match="not a member"):
        services.withdraw_application(application=application, actor=desk.other_firm_admin)
    # Even a member of the right firm finds nothing while another firm is in scope.
    with firm_scope(desk.other_firm), pytest.raises(NotFound, match="no such application"):
        services.withdraw_application(application=application, actor=desk.client_user)


# Expiry ----------------------------------------------------------------------------------------

def test_undecided_applications_expire_after_the_valid_business_days(
        in_desk_firm, django_capture_on_commit_callbacks):
    desk = in_desk_firm
    application = services.create_application(account=desk.account, actor=desk.client_user,
                                              submit=True, today=date(2026, 10, 28))
    # 20 XNYS sessions after Wed 28 Oct 2026 (Thanksgiving skipped) is Wed 25 Nov.
    assert services.expire_applications(firm=desk.firm, today=date(2026, 11, 25)) == []
    with django_capture_on_commit_callbacks(execute=True):
        expired = services.expire_applications(firm=desk.firm, today=date(2026, 11, 27))
    assert [a.pk for a in expired] == [application.pk]
    assert Application.objects.get(pk=application.pk).state == "expired"
    assert any("has expired" in m.subject for m in mail.outbox)
    assert services.expire_applications(firm=desk.firm, today=date(2026, 12, 31)) == []


def test_a_missed_conversion_day_is_caught_up(in_desk_firm):
    desk = in_desk_firm
    approved = services.approve_application(application=reviewed_application(desk),
                                            approver=desk.admin,
                                            today=WEDNESDAY_BEFORE_THANKSGIVING)
    assert approved.effective_on == FRIDAY_AFTER_THANKSGIVING
    converted = services.apply_due_conversions(today=date(2026, 12, 7), firm=desk.firm)
    assert [a.pk for a in converted] == [approved.pk]  # a missed day is caught up
    assert Account.objects.get(pk=desk.account.pk).margin_type == "portfolio_margin"
