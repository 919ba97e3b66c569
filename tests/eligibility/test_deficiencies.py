"""The minimum-equity deficiency timeline on a frozen clock, across a weekend and Thanksgiving.

The account is on portfolio margin with $90,000 of equity (below the $100,000 maintenance
minimum). T is Tuesday 24 November 2026. XNYS: Thursday 26 is Thanksgiving, 28-29 a weekend.
Business days: T+1 Wed 25, T+2 Fri 27, T+3 Mon 30, T+4 Tue 1 Dec, T+5 Wed 2 Dec.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from accounts import services as book
from accounts.models import Account
from brokerage import audit
from eligibility import services
from eligibility.deficiencies import evaluate_deficiencies
from eligibility.models import Deficiency
from eligibility.tasks import run_deficiency_timeline
from margin.market_data import load_prices
from tests.factories import shared_instrument

from .conftest import deposit, withdraw

T = date(2026, 11, 24)


@pytest.fixture
def pm_account(in_desk_firm) -> Account:
    desk = in_desk_firm
    book.change_account(account=desk.account, actor=desk.admin, event_type="test.setup",
                        margin_type="portfolio_margin")
    withdraw(desk.account, "110000")  # $90,000 of equity
    desk.account.refresh_from_db()
    return desk.account


def account_now(account: Account) -> Account:
    return Account.objects.get(pk=account.pk)


def run(firm, day: date) -> list[tuple[str, str]]:
    return evaluate_deficiencies(firm=firm, today=day).steps


def test_the_timeline_across_thanksgiving_and_a_weekend(in_desk_firm, pm_account,
                                                        django_capture_on_commit_callbacks):
    desk = in_desk_firm
    expected = {
        date(2026, 11, 24): ["opened"],  # T
        date(2026, 11, 25): ["notice"],  # T+1: house notice day 1
        date(2026, 11, 26): [],  # Thanksgiving
        date(2026, 11, 27): [],  # T+2
        date(2026, 11, 28): [],  # Saturday
        date(2026, 11, 29): [],  # Sunday
        date(2026, 11, 30): ["restricted"],  # T+3: FINRA 4210(g), risk-reducing only
        date(2026, 12, 1): [],  # T+4
        date(2026, 12, 2): ["downgraded"],  # T+5: house conversion day 5
        date(2026, 12, 3): [],
    }
    status_after = {date(2026, 11, 27): ("portfolio_margin", "open"),
                    date(2026, 11, 30): ("portfolio_margin", "restricted"),
                    date(2026, 12, 1): ("portfolio_margin", "restricted"),
                    date(2026, 12, 2): ("reg_t", "open")}
    with django_capture_on_commit_callbacks(execute=True):
        for day, steps in expected.items():
            assert [step for _, step in run(desk.firm, day)] == steps, day
            if day in status_after:
                account = account_now(pm_account)
                assert (account.margin_type, account.status) == status_after[day], day

    deficiency = Deficiency.objects.get(account=pm_account)
    assert deficiency.state == "downgraded"
    assert (deficiency.opened_on, deficiency.notice_due_on, deficiency.restriction_due_on,
            deficiency.downgrade_due_on) == (T, date(2026, 11, 25), date(2026, 11, 30),
                                             date(2026, 12, 2))
    assert deficiency.minimum == Decimal("100000.00")
    assert deficiency.equity_at_open == Decimal("90000.00")
    assert deficiency.rule_set.version == 1

    trail = list(audit.events_for(desk.firm).filter(
        event_type__startswith=("deficiency.")).values_list("event_type", flat=True))
    assert trail == ["deficiency.opened", "deficiency.notice_sent",
                     "deficiency.account_restricted", "deficiency.downgraded"]
    account_events = list(audit.events_for(desk.firm).filter(
        object_type="accounts.account", object_id=str(pm_account.pk),
        event_type__in=["account.restricted", "account.downgraded_to_reg_t"],
    ).values_list("event_type", "after__status", "after__margin_type"))
    assert account_events == [("account.restricted", "restricted", "portfolio_margin"),
                              ("account.downgraded_to_reg_t", "open", "reg_t")]

    subjects = [m.subject for m in mail.outbox]
    assert len(subjects) == 3
    assert "below the portfolio-margin minimum equity" in subjects[0]
    assert "limited to risk-reducing trades" in subjects[1]
    assert "moved to Reg T margin" in subjects[2]
    assert "30 November 2026" in mail.outbox[0].body  # the restriction date, told on day 1


def test_nothing_opens_on_a_weekend_or_holiday(in_desk_firm, pm_account):
    desk = in_desk_firm
    assert run(desk.firm, date(2026, 11, 26)) == []  # Thanksgiving
    assert run(desk.firm, date(2026, 11, 28)) == []  # Saturday
    assert run(desk.firm, date(2026, 11, 30)) == [(pm_account.number, "opened")]
    deficiency = Deficiency.objects.get()
    assert deficiency.restriction_due_on == date(2026, 12, 3)


def test_running_twice_a_day_takes_no_step_twice(in_desk_firm, pm_account):
    desk = in_desk_firm
    assert run(desk.firm, T) == [(pm_account.number, "opened")]
    assert run(desk.firm, T) == []
    assert run(desk.firm, date(2026, 11, 25)) == [(pm_account.number, "notice")]
    assert run(desk.firm, date(2026, 11, 25)) == []
    assert Deficiency.objects.count() == 1


def test_missed_days_are_caught_up_in_order(in_desk_firm, pm_account):
    desk = in_desk_firm
    run(desk.firm, T)
    steps = [step for _, step in run(desk.firm, date(2026, 12, 4))]
    assert steps == ["notice", "restricted", "downgraded"]
    assert account_now(pm_account).margin_type == "reg_t"


def test_a_deposit_cures_it_at_once_and_lifts_the_restriction(in_desk_firm, pm_account,
                                                              django_capture_on_commit_callbacks):
    desk = in_desk_firm
    for day in (T, date(2026, 11, 25), date(2026, 11, 30)):
        run(desk.firm, day)
    assert account_now(pm_account).status == "restricted"
    with django_capture_on_commit_callbacks(execute=True):
        deposit(pm_account, "15000")  # the book_changed receiver sees the cure
    deficiency = Deficiency.objects.get()
    assert deficiency.state == "cured" and deficiency.last_equity == Decimal("105000.00")
    account = account_now(pm_account)
    assert (account.margin_type, account.status) == ("portfolio_margin", "open")
    assert any("back above the minimum equity" in m.subject for m in mail.outbox)
    assert run(desk.firm, date(2026, 12, 2)) == []  # no downgrade after the cure


def test_a_market_recovery_cures_it_at_the_next_run(in_desk_firm, pm_account):
    desk = in_desk_firm
    stock = shared_instrument("RCV")
    at = timezone.now() - timedelta(hours=1)
    load_prices(observations=[{"symbol": "RCV", "price": "1", "observed_at": at}],
                source="exchange", actor=None)
    book.set_position(account=pm_account, instrument=stock, quantity=Decimal(1000), actor=None)
    assert [s for _, s in run(desk.firm, T)] == ["opened"]  # 90,000 + 1,000
    load_prices(observations=[{"symbol": "RCV", "price": "12",
                               "observed_at": at + timedelta(minutes=30)}],
                source="exchange", actor=None)
    assert [s for _, s in run(desk.firm, date(2026, 11, 25))] == ["cured"]  # 90,000 + 12,000


def test_a_restriction_someone_else_imposed_is_not_lifted_by_the_cure(in_desk_firm, pm_account):
    desk = in_desk_firm
    book.change_account(account=pm_account, actor=desk.admin, event_type="desk.restricted",
                        status="restricted")
    for day in (T, date(2026, 11, 30)):
        run(desk.firm, day)
    deficiency = Deficiency.objects.get()
    assert deficiency.state == "restricted" and not deficiency.restricted_by_timeline
    deposit(pm_account, "50000")
    assert [s for _, s in run(desk.firm, date(2026, 12, 1))] == ["cured"]
    assert account_now(pm_account).status == "restricted"


def test_unlisted_derivatives_raise_the_minimum_to_five_million(in_desk_firm, pm_account):
    desk = in_desk_firm
    deposit(pm_account, "910000")  # $1,000,000: ample for the $100,000 minimum
    assert run(desk.firm, T) == []
    book.update_client(client=desk.client, actor=desk.admin, holds_unlisted_derivatives=True)
    assert run(desk.firm, date(2026, 11, 25)) == [(pm_account.number, "opened")]
    assert Deficiency.objects.get().minimum == Decimal("5000000.00")


def test_the_house_timeline_comes_from_the_rule_set(in_desk_firm, pm_account):
    desk = in_desk_firm
    proposal = services.propose_rule_set(firm=desk.firm, proposer=desk.risk, reason="faster",
                                         deficiency_notice_day=0, deficiency_restriction_day=2,
                                         deficiency_conversion_day=2)
    services.approve_rule_set(rule_set=proposal, approver=desk.admin)
    assert [s for _, s in run(desk.firm, T)] == ["opened", "notice"]
    assert [s for _, s in run(desk.firm, date(2026, 11, 27))] == ["restricted", "downgraded"]
    assert Deficiency.objects.get().rule_set.version == 2


def test_accounts_not_on_portfolio_margin_are_not_judged(in_desk_firm):
    desk = in_desk_firm
    withdraw(desk.account, "150000")  # reg_t with $50,000
    assert run(desk.firm, T) == []


def test_the_celery_task_runs_every_firm_for_the_given_day(in_desk_firm, pm_account):
    report = run_deficiency_timeline.apply(args=["2026-11-24"]).get()
    assert report == {"alpha": [[pm_account.number, "opened"]], "beta": []}


def test_a_batch_of_accounts_can_be_judged_when_a_snapshot_lands(in_desk_firm, pm_account):
    from eligibility.deficiencies import assess_accounts

    run = assess_accounts(firm=in_desk_firm.firm, account_ids=[pm_account.pk, pm_account.pk],
                          today=T)
    assert run.steps == [(pm_account.number, "opened")]
