"""Calls issued by the end-of-day run on a frozen session, across Thanksgiving and a weekend:
trigger, amount, due date, updates at each close, recovery, cure by deposit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core import mail

from accounts import services as book
from brokerage import audit
from margin.calls.issuance import close_of_day
from margin.end_of_day import due_runs
from margin.models import CallRecord, CallSatisfaction, MarginCall
from tests.eligibility.conftest import deposit, withdraw

from .conftest import T, calls_of, close, margined_long, set_price

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm_account(in_desk_firm):
    book.change_account(account=in_desk_firm.account, actor=in_desk_firm.admin,
                        event_type="test.setup", margin_type="portfolio_margin")
    withdraw(in_desk_firm.account, "110000")  # $90,000 of equity, cash only
    in_desk_firm.account.refresh_from_db()
    from margin.tasks import recompute_accounts

    # valued (a snapshot kept): the runs below judge that valuation at each close
    recompute_accounts(in_desk_firm.firm.pk, [in_desk_firm.account.pk])
    return in_desk_firm.account


def test_a_maintenance_call_is_issued_at_the_close_due_fifteen_sessions_later(
        in_desk_firm, django_capture_on_commit_callbacks):
    account = margined_long(in_desk_firm.account)
    with django_capture_on_commit_callbacks(execute=True):
        close(in_desk_firm.firm, T)
    [call] = calls_of(account)
    assert (call.kind, call.status, call.as_of) == ("maintenance", "issued", T)
    assert call.amount == call.amount_due == Decimal("5000.00")  # 25,000 - 20,000
    # 15 sessions from Tue 24 Nov, skipping Thanksgiving and two weekends
    assert call.due_date == date(2026, 12, 16)
    assert call.policy.version == 1 and call.rule_source == "regulatory"
    assert "4210(f)(6)" in call.rule and call.snapshot is not None
    assert call.snapshot.reason == "end_of_day"
    assert [m.subject for m in mail.outbox] == [
        f"{in_desk_firm.firm.name}: a margin call was issued on account {account.number}"]
    assert list(CallRecord.objects.values_list("event", "amount_required")) == [
        ("issued", Decimal("5000.00"))]
    assert audit.events_for(in_desk_firm.firm).filter(event_type="margin_call.issued").count() == 1


def test_the_amount_follows_each_close_and_a_recovery_cancels_it(in_desk_firm):
    account = margined_long(in_desk_firm.account)
    close(in_desk_firm.firm, T)
    set_price("MGN", "95", minutes=10)  # equity 15,000 against 23,750
    close(in_desk_firm.firm, date(2026, 11, 25))
    [call] = calls_of(account)
    assert (call.amount, call.amount_due, call.as_of) == (Decimal("8750.00"),
                                                           Decimal("8750.00"), T)
    set_price("MGN", "120", minutes=20)  # equity 40,000 against 30,000
    close(in_desk_firm.firm, date(2026, 11, 27))
    call.refresh_from_db()
    assert (call.status, call.cancel_reason) == ("cancelled", "market_recovery")
    assert list(CallRecord.objects.values_list("event", flat=True)) == [
        "issued", "amount_changed", "cancelled"]


def test_intraday_sweeps_never_issue_or_change_a_call(in_desk_firm):
    from margin.tasks import recompute_accounts

    account = margined_long(in_desk_firm.account)
    recompute_accounts(in_desk_firm.firm.pk, [account.pk])  # an intraday valuation
    assert calls_of(account) == []
    close(in_desk_firm.firm, T)
    set_price("MGN", "90", minutes=10)
    from margin.sweep import sweep_now

    sweep_now(firm_id=in_desk_firm.firm.pk)
    [call] = calls_of(account)
    assert call.amount == Decimal("5000.00")  # unchanged until the next close


def test_nothing_is_issued_on_a_weekend_or_a_holiday(in_desk_firm):
    account = margined_long(in_desk_firm.account)
    from brokerage.scope import firm_scope  # noqa: F401

    for holiday in (date(2026, 11, 26), date(2026, 11, 28)):
        assert close_of_day(firm=in_desk_firm.firm, session=holiday).steps == []
    assert calls_of(account) == []


def test_beat_on_a_saturday_closes_friday_and_the_due_date_skips_the_weekend(in_desk_firm):
    from datetime import UTC, datetime

    from brokerage.scope import firm_scope
    from margin.sweep import sweep_now

    account = margined_long(in_desk_firm.account)
    with firm_scope(None):
        runs = due_runs(now=datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # Saturday
    assert {r.session for r in runs if r.calendar == "XNYS"} == {date(2026, 11, 27)}
    sweep_now(firm_id=in_desk_firm.firm.pk)
    [call] = calls_of(account)
    assert call.as_of == date(2026, 11, 27)
    assert call.due_date == date(2026, 12, 18)  # 15 sessions after Friday 27 November


def test_a_deposit_after_the_call_is_linked_once_and_meets_it(
        in_desk_firm, django_capture_on_commit_callbacks):
    account = margined_long(in_desk_firm.account)
    close(in_desk_firm.firm, T)
    with django_capture_on_commit_callbacks(execute=True):
        deposit(account, "2000")
    [call] = calls_of(account)
    assert (call.status, call.amount_due) == ("partially_met", Decimal("3000.00"))
    with django_capture_on_commit_callbacks(execute=True):
        deposit(account, "4000")
    call.refresh_from_db()
    assert (call.status, call.amount_due) == ("met", Decimal("0.00"))
    assert list(CallSatisfaction.objects.values_list("manner", "amount")) == [
        ("cash", Decimal("2000.00")), ("cash", Decimal("3000.00"))]
    from margin.calls.services import link_deposits

    assert link_deposits(account=account) == []  # never entered twice
    assert CallSatisfaction.objects.count() == 2


def test_the_pm_minimum_equity_deficiency_is_a_call_with_its_timeline(
        in_desk_firm, pm_account, django_capture_on_commit_callbacks):
    expected = {T: ["issued pm_minimum_equity"], date(2026, 11, 25): ["notice"],
                date(2026, 11, 27): [], date(2026, 11, 30): ["restricted", "overdue"],
                date(2026, 12, 1): [], date(2026, 12, 2): ["downgraded"]}
    with django_capture_on_commit_callbacks(execute=True):
        for day, steps in expected.items():
            run = close_of_day(firm=in_desk_firm.firm, session=day)
            assert [s for _, s in run.steps] == steps, day
    call = MarginCall.objects.get(account=pm_account)
    assert (call.amount, call.as_of, call.due_date) == (Decimal("10000.00"), T,
                                                         date(2026, 11, 30))
    assert (call.notice_due_on, call.restriction_due_on, call.downgrade_due_on) == (
        date(2026, 11, 25), date(2026, 11, 30), date(2026, 12, 2))
    assert (call.status, call.cancel_reason) == ("cancelled", "superseded")
    pm_account.refresh_from_db()
    assert (pm_account.margin_type, pm_account.status) == ("reg_t", "open")
    subjects = [m.subject for m in mail.outbox]
    assert any("margin call was issued" in s for s in subjects)
    assert any("limited to risk-reducing trades" in s for s in subjects)
    assert any("moved to Reg T margin" in s for s in subjects)
    assert "30 November 2026" in mail.outbox[0].body


def test_a_deposit_cures_the_minimum_equity_call_and_lifts_its_restriction(
        in_desk_firm, pm_account, django_capture_on_commit_callbacks):
    for day in (T, date(2026, 11, 25), date(2026, 11, 30)):
        close_of_day(firm=in_desk_firm.firm, session=day)
    pm_account.refresh_from_db()
    assert pm_account.status == "restricted"
    with django_capture_on_commit_callbacks(execute=True):
        deposit(pm_account, "15000")
    call = MarginCall.objects.get(account=pm_account)
    assert call.status == "met"
    pm_account.refresh_from_db()
    assert (pm_account.margin_type, pm_account.status) == ("portfolio_margin", "open")
    assert close_of_day(firm=in_desk_firm.firm, session=date(2026, 12, 2)).steps == []


def test_a_deposit_the_sweep_sees_first_meets_the_call_rather_than_recovering_it(in_desk_firm):
    from margin.tasks import recompute_accounts

    account = margined_long(in_desk_firm.account)
    close(in_desk_firm.firm, T)
    deposit(account, "6000")  # its on-commit link not run: the next valuation sees it first
    recompute_accounts(in_desk_firm.firm.pk, [account.pk])
    [call] = calls_of(account)
    assert (call.status, call.cancel_reason) == ("met", "")
    assert list(call.satisfactions.values_list("manner", "amount")) == [
        ("cash", Decimal("5000.00"))]


def test_history_reason_keeps_an_intraday_valuation_that_would_meet_a_call(in_desk_firm,
                                                                          pm_account):
    from margin.calls.hooks import chunk_calls
    from margin.models import MarginSnapshot
    from margin.snapshots import History, Previous, history_reason

    close_of_day(firm=in_desk_firm.firm, session=T)  # the minimum-equity call ($10,000)
    calls = chunk_calls(in_desk_firm.firm, [pm_account.pk])
    # equity back above $100,000 with a positive excess all along and the requirement still:
    # neither the sign test nor the threshold would keep it; the call it meets does
    before = Previous(excess=Decimal("90000"), snapshot_id=1,
                      snapshot_requirement=Decimal("0"))

    def reason(equity: str, chunk=calls) -> str:
        valuation = MarginSnapshot(account=pm_account, margin_type="portfolio_margin",
                                   equity=Decimal(equity), requirement=Decimal("0"),
                                   excess=Decimal(equity))
        return history_reason(history=History.INTRADAY, valuation=valuation, previous=before,
                              calls=chunk)

    assert reason("100500") == "margin_call"
    assert reason("95000") == ""  # still short: nothing is decided intraday
    assert reason("100500", chunk=chunk_calls(in_desk_firm.firm, [])) == ""


def test_a_house_cushion_brings_a_house_call_for_the_layer_above_the_requirement(in_desk_firm):
    from margin.calls import policy

    proposal = policy.propose_policy(firm=in_desk_firm.firm, actor=in_desk_firm.risk,
                                     values={"house_cushion": "0.40"}, reason="30-40% house")
    policy.approve_policy(proposal=proposal, actor=in_desk_firm.admin)
    account = margined_long(in_desk_firm.account, debit="270000")  # equity 30,000 vs 25,000
    close(in_desk_firm.firm, T)
    [call] = calls_of(account)
    # house requirement 25,000 x 1.40 = 35,000: the house layer owed is 35,000 - 30,000
    assert (call.kind, call.amount, call.rule_source) == ("house", Decimal("5000.00"), "house")
    assert call.rule.startswith("house cushion 0.40")
    assert call.due_date == date(2026, 11, 30) and call.policy.version == 2


def test_an_unmet_pm_deficiency_restricts_to_closing_trades_until_met(in_desk_firm, pm_account):
    from margin.calls import services
    from margin.models import Restriction

    call = services.issue_call(account=pm_account, kind="pm_deficiency", amount=Decimal("500"),
                               as_of=T, equity=Decimal("90000"), requirement=Decimal("90500"),
                               policy=policy_of(in_desk_firm))
    from margin.calls.issuance import CallRun, move_on

    run = CallRun(session=date(2026, 11, 30))
    move_on(account_ids=[pm_account.pk], session=run.session, run=run)
    assert run.steps == [("ALPHA-0001", "overdue pm_deficiency"), ("ALPHA-0001", "restricted")]
    pm_account.refresh_from_db()
    assert pm_account.status == "restricted"
    [restriction] = Restriction.objects.filter(call=call)
    assert (restriction.kind, restriction.state) == ("closing_only", "active")
    services.record_satisfaction(call=call, manner="securities", amount="500",
                                 actor=in_desk_firm.margin_desk)
    restriction.refresh_from_db()
    pm_account.refresh_from_db()
    assert restriction.state == "lifted" and pm_account.status == "open"


def policy_of(desk):
    from margin.calls.policy import active_policy

    return active_policy(desk.firm)
