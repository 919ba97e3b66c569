"""The call policy and every move of a call under the rule book's guards: satisfactions,
cancellation reasons, overdue and liquidation, extensions (four eyes), restrictions and their
two-person waiver, notices sent once, the 4220 rows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core import mail

from brokerage.errors import (
    DomainError,
    FourEyesViolation,
    IllegalTransition,
    InvalidInput,
    NotPermitted,
)
from margin.calls import extensions, policy, restrictions, services
from margin.calls.issuance import move_on
from margin.models import CallPolicy, CallRecord, MarginCall, Restriction

from .conftest import T

pytestmark = pytest.mark.django_db


def a_call(desk, kind="maintenance", amount="5000", as_of=T, trade_date=None) -> MarginCall:
    return services.issue_call(account=desk.account, kind=kind, amount=Decimal(amount),
                               as_of=as_of, trade_date=trade_date, equity=Decimal("20000"),
                               requirement=Decimal("25000"),
                               policy=policy.active_policy(desk.firm))


def test_the_platform_default_carries_each_value_with_its_source_and_citation(in_desk_firm):
    active = policy.active_policy(in_desk_firm.firm)
    assert active.version == 1 and active.status == "active"
    assert active.rows["reg_t_due_days"] == {
        "value": "3", "source": "P",
        "citation": "12 CFR 220.2 payment period (T+1 settlement + 2); 220.4(c)(3)"}
    assert active.rows["maintenance_due_days"]["source"] == "R"
    assert active.rows["practice_liquidations"]["value"] == "3"
    assert active.value("pm_minimum_equity") == Decimal("100000.00")


def test_a_stricter_policy_takes_two_people_and_calls_record_their_version(in_desk_firm):
    desk = in_desk_firm
    proposal = policy.propose_policy(firm=desk.firm, actor=desk.risk, reason="house: T+2",
                                     values={"reg_t_due_days": 2, "maintenance_due_days": 5})
    with pytest.raises(FourEyesViolation):
        policy.approve_policy(proposal=proposal, actor=desk.risk)
    with pytest.raises(NotPermitted):
        policy.approve_policy(proposal=proposal, actor=desk.margin_desk)
    approved = policy.approve_policy(proposal=proposal, actor=desk.admin)
    assert approved.status == "active" and approved.rows["reg_t_due_days"]["source"] == "H"
    call = a_call(desk)
    assert call.policy.version == 2 and call.rule_source == "house"
    assert call.due_date == date(2026, 12, 2)  # 5 sessions after 24 Nov, skipping 26


@pytest.mark.parametrize(("values", "field", "code"), [
    ({"reg_t_due_days": 4}, "values.reg_t_due_days", "looser_than_regulation"),
    ({"pm_minimum_equity": "90000"}, "values.pm_minimum_equity", "looser_than_regulation"),
    ({"reg_t_due_days": "three"}, "values.reg_t_due_days", "invalid"),
    ({"grace_days": 1}, "values.grace_days", "unknown_field"),
])
def test_a_looser_or_malformed_policy_is_refused_naming_the_row(in_desk_firm, values, field,
                                                                 code):
    with pytest.raises(InvalidInput) as refused:
        policy.propose_policy(firm=in_desk_firm.firm, actor=in_desk_firm.risk, values=values,
                              reason="try")
    assert (refused.value.errors[0]["field"], refused.value.errors[0]["code"]) == (field, code)
    assert not CallPolicy.objects.exclude(version=1).exists()  # nothing written


def test_one_open_call_per_account_and_kind_and_reg_t_one_per_trade_date(in_desk_firm):
    from django.db import IntegrityError, transaction

    a_call(in_desk_firm)
    with pytest.raises(IntegrityError), transaction.atomic():
        a_call(in_desk_firm)
    a_call(in_desk_firm, kind="reg_t", trade_date=T)
    a_call(in_desk_firm, kind="reg_t", trade_date=date(2026, 11, 25))
    with pytest.raises(IntegrityError), transaction.atomic():
        a_call(in_desk_firm, kind="reg_t", trade_date=T)


def test_reg_t_is_due_on_the_payment_period_and_never_cancelled_by_recovery(in_desk_firm):
    call = a_call(in_desk_firm, kind="reg_t", trade_date=date(2026, 11, 25), amount="800")
    assert call.due_date == date(2026, 12, 1)  # T+3: Fri 27, Mon 30, Tue 1 (26th a holiday)
    with pytest.raises(IllegalTransition, match="not cancelled by a market recovery"):
        services.cancel_call(call=call, reason="market_recovery", actor=in_desk_firm.admin)
    cancelled = services.cancel_call(call=call, reason="de_minimis", actor=in_desk_firm.admin)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "de_minimis")


@pytest.mark.parametrize(("reason", "message"), [
    ("de_minimis", "above the de-minimis"), ("lapsed", "only an intraday deficit lapses"),
    ("forgotten", "unknown reason")])
def test_a_cancellation_outside_its_guard_is_refused_and_changes_nothing(in_desk_firm, reason,
                                                                         message):
    call = a_call(in_desk_firm)
    with pytest.raises(DomainError, match=message):
        services.cancel_call(call=call, reason=reason, actor=in_desk_firm.admin)
    call.refresh_from_db()
    assert call.status == "issued" and CallRecord.objects.count() == 1


def test_satisfactions_partial_then_met_and_the_4220_rows(in_desk_firm):
    call = a_call(in_desk_firm)
    with pytest.raises(InvalidInput, match="linked from there"):
        services.record_satisfaction(call=call, manner="cash", amount="100",
                                     actor=in_desk_firm.margin_desk)
    with pytest.raises(NotPermitted):
        services.record_satisfaction(call=call, manner="securities", amount="100",
                                     actor=in_desk_firm.client_user)
    services.record_satisfaction(call=call, manner="securities", amount="2000",
                                 actor=in_desk_firm.margin_desk, received_on=date(2026, 11, 25))
    call.refresh_from_db()
    assert (call.status, call.amount_due) == ("partially_met", Decimal("3000.00"))
    services.record_satisfaction(call=call, manner="other", amount="3500",
                                 actor=in_desk_firm.margin_desk, received_on=date(2026, 11, 27))
    call.refresh_from_db()
    assert (call.status, call.amount_due, call.closed_on) == ("met", 0, date(2026, 11, 27))
    assert list(CallRecord.objects.values_list("day", "event", "amount_due", "manner")) == [
        (T, "issued", Decimal("5000.00"), ""),
        (date(2026, 11, 25), "satisfied", Decimal("3000.00"), "securities"),
        (date(2026, 11, 27), "satisfied", Decimal("0.00"), "other")]
    with pytest.raises(IllegalTransition):
        services.record_satisfaction(call=call, manner="other", amount="1",
                                     actor=in_desk_firm.margin_desk)


def test_overdue_liquidation_and_a_practice_brings_funds_on_hand(in_desk_firm):
    desk = in_desk_firm
    for n, trade_date in enumerate((date(2026, 11, 2), date(2026, 11, 9), T)):
        call = a_call(desk, kind="reg_t", trade_date=trade_date, amount="5000")
        assert services.mark_overdue(call=call, day=date(2026, 12, 1))
        with pytest.raises(IllegalTransition):
            services.record_liquidation(call=call, amount="5000", actor=desk.margin_desk)
        services.start_liquidation(call=call, actor=desk.margin_desk)
        done = services.record_liquidation(call=call, amount="5000", actor=desk.margin_desk,
                                           day=date(2026, 12, 1 + n))
        assert (done.status, done.met_by_liquidation) == ("met", True)
    [restriction] = Restriction.objects.all()
    assert (restriction.kind, restriction.starts_on, restriction.ends_on) == (
        "funds_on_hand_90d", date(2026, 12, 3), date(2027, 3, 3))


def test_a_shortfall_after_liquidation_leaves_the_call_overdue(in_desk_firm):
    call = a_call(in_desk_firm)
    services.mark_overdue(call=call, day=date(2026, 12, 17))
    services.start_liquidation(call=call, actor=in_desk_firm.margin_desk)
    left = services.record_liquidation(call=call, amount="3000", actor=in_desk_firm.margin_desk)
    assert (left.status, left.amount_due) == ("overdue", Decimal("2000.00"))


def test_a_reg_t_extension_takes_two_people_then_the_authority_grants_it(in_desk_firm):
    desk = in_desk_firm
    call = a_call(desk, kind="reg_t", trade_date=T)
    extension = extensions.request_extension(call=call, actor=desk.margin_desk, days=2,
                                             reason_code="EXC", comment="wire in transit",
                                             today=date(2026, 11, 27))
    with pytest.raises(FourEyesViolation):
        extensions.decide_extension(extension=extension, actor=desk.margin_desk, approve=True,
                                    today=date(2026, 11, 27))
    decided = extensions.decide_extension(extension=extension, actor=desk.risk, approve=True,
                                          today=date(2026, 11, 27))
    assert decided.state == "requested"
    call.refresh_from_db()
    assert call.status == "issued"  # nothing changes until the authority answers
    with pytest.raises(InvalidInput, match="Filing ID"):
        extensions.record_outcome(extension=decided, actor=desk.risk, granted=True)
    granted = extensions.record_outcome(extension=decided, actor=desk.risk, granted=True,
                                        filing_id="REX-123", today=date(2026, 11, 27))
    call.refresh_from_db()
    assert (granted.state, granted.request_number, granted.request_date) == (
        "granted", 1, date(2026, 11, 27))
    assert (call.status, call.due_date) == ("extended", date(2026, 12, 2))  # Mon 30 + 2
    assert call.notices.filter(event="extended").count() == 1  # mailed on commit


def test_no_extension_after_the_due_date_nor_for_a_pm_call(in_desk_firm):
    desk = in_desk_firm
    call = a_call(desk, kind="reg_t", trade_date=T)
    with pytest.raises(IllegalTransition, match="before the due date"):
        extensions.request_extension(call=call, actor=desk.margin_desk, days=2,
                                     reason_code="EXC", today=date(2026, 12, 1))
    pm = a_call(desk, kind="pm_deficiency")
    with pytest.raises(IllegalTransition, match="has no extension"):
        extensions.request_extension(call=pm, actor=desk.margin_desk, days=2,
                                     reason_code="EXC", today=T)


def test_a_house_call_is_extended_inside_the_firm_by_two_people(in_desk_firm):
    desk = in_desk_firm
    call = a_call(desk, kind="house")
    extension = extensions.request_extension(call=call, actor=desk.margin_desk, days=1,
                                             reason_code="CLIENT", today=T)
    granted = extensions.decide_extension(extension=extension, actor=desk.admin, approve=True,
                                          today=T)
    call.refresh_from_db()
    assert granted.state == "granted" and call.status == "extended"
    assert call.due_date == date(2026, 12, 1)  # due Mon 30 (T+3) + 1 session


def test_a_waiver_needs_two_officers(in_desk_firm):
    desk = in_desk_firm
    active = policy.active_policy(desk.firm)
    with __import__("django.db").db.transaction.atomic():
        restriction = restrictions.impose(account=desk.account, kind="funds_on_hand_90d",
                                          starts_on=T, ends_on=date(2027, 2, 22),
                                          cause="practice", policy=active)
    with pytest.raises(NotPermitted):
        restrictions.request_waiver(restriction=restriction, actor=desk.risk, reason="x")
    restrictions.request_waiver(restriction=restriction, actor=desk.compliance,
                                reason="documented exception, kept on file")
    with pytest.raises(FourEyesViolation):
        restrictions.decide_waiver(restriction=restriction, actor=desk.compliance, approve=True)
    with pytest.raises(NotPermitted):
        restrictions.decide_waiver(restriction=restriction, actor=desk.risk, approve=True)
    waived = restrictions.decide_waiver(restriction=restriction, actor=desk.admin,
                                        approve=True, today=T)
    assert (waived.state, waived.closed_on) == ("waived", T)


def test_due_tomorrow_and_overdue_notices_are_sent_once(in_desk_firm,
                                                        django_capture_on_commit_callbacks):
    desk = in_desk_firm
    with django_capture_on_commit_callbacks(execute=True):
        call = a_call(desk, kind="reg_t", trade_date=T)  # due Mon 30 Nov
        for day in (date(2026, 11, 27), date(2026, 11, 27), date(2026, 11, 30),
                    date(2026, 11, 30)):
            move_on(account_ids=[desk.account.pk], session=day, run=_run(day))
    assert [m.subject.split(": ", 1)[1] for m in mail.outbox] == [
        f"a margin call was issued on account {desk.account.number}",
        f"a margin call is due tomorrow on account {desk.account.number}",
        f"a margin call is overdue on account {desk.account.number}"]
    call.refresh_from_db()
    assert call.status == "overdue"


def _run(day):
    from margin.calls.issuance import CallRun

    return CallRun(session=day)


def test_a_smaller_amount_at_the_close_already_covered_is_met(in_desk_firm):
    call = a_call(in_desk_firm)
    services.record_satisfaction(call=call, manner="securities", amount="3000",
                                 actor=in_desk_firm.margin_desk, received_on=T)
    assert services.update_amount(call=call, amount=Decimal("2500"), equity=Decimal("22500"),
                                  requirement=Decimal("25000"), as_of=date(2026, 11, 25))
    call.refresh_from_db()
    assert (call.status, call.amount, call.amount_due) == ("met", Decimal("2500.00"), 0)
    reg_t = a_call(in_desk_firm, kind="reg_t", trade_date=T)
    with pytest.raises(IllegalTransition, match="fixed when it is issued"):
        services.update_amount(call=reg_t, amount=Decimal("1"), equity=Decimal("0"),
                               requirement=Decimal("0"), as_of=T)
