"""Collateral (health-factor) calls (MARGIN_CALLS.md section 7 [X]): intraday by nature. A
sweep that values an account whose health factor is at or under the firm's call band issues
one (one open per account), due in the policy's hours, for the collateral that lifts the
health factor back to the warning level; later sweeps update its amount, a deposit meets it,
a recovery cancels it, its due time passing makes it overdue."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as book
from brokerage.scope import firm_scope
from margin import business_days
from margin.calls.deficits import Collateral
from margin.calls.issuance import watch
from margin.dirty import mark_accounts
from margin.market_data import load_prices
from margin.models import AccountMargin, CallRecord, MarginCall, MarginSnapshot
from margin.sweep import sweep_now
from margin.tasks import recompute_accounts
from tests.eligibility.conftest import deposit, withdraw
from tests.factories import log_in, shared_instrument

from .conftest import calls_of

pytestmark = pytest.mark.django_db

DEBT = Decimal("21000.00")  # USDC borrowed against 10 ETH (the demo's NO100021)


def eth(price: str, *, minutes: int = 0) -> None:
    load_prices(observations=[
        {"symbol": "ETH", "price": price,
         "observed_at": timezone.now() - timedelta(minutes=30 - minutes)},
        {"symbol": "USDC", "price": "1.00",
         "observed_at": timezone.now() - timedelta(minutes=30 - minutes)}],
        source="oracle", actor=None)


def sweep(account) -> None:
    """A price tick reaching the account (its marks run on commit, which a test transaction
    never reaches: marked here), swept intraday."""
    mark_accounts([account.pk], request=False)
    sweep_now(firm_id=account.firm_id)


@pytest.fixture
def borrower(in_desk_firm):
    """The desk's Reg T account: $200,000 withdrawn back to $5,000 of cash, 10 ETH and 21,000
    USDC borrowed; at ETH 3,000 the health factor is about 1.18 (the warning band)."""
    account = in_desk_firm.account
    withdraw(account, "195000")
    eth_, usdc = (shared_instrument("ETH", kind="crypto", product_class="crypto"),
                  shared_instrument("USDC", kind="crypto", product_class="stablecoin"))
    eth("3000")
    book.set_position(account=account, instrument=eth_, quantity=Decimal(10),
                      cost_basis=Decimal(30000), actor=None)
    book.set_position(account=account, instrument=usdc, quantity=-DEBT, cost_basis=-DEBT,
                      actor=None)
    recompute_accounts(in_desk_firm.firm.pk, [account.pk])
    return account


def current_hf(account) -> Decimal:
    return AccountMargin.objects.get(account=account).health_factor


def owed(hf: Decimal) -> Decimal:
    return (DEBT * (Decimal("1.20") - hf)).quantize(Decimal("0.01"))


def test_the_warning_band_is_no_call_and_the_current_row_carries_the_health_factor(borrower):
    hf = current_hf(borrower)
    assert Decimal("1.10") < hf <= Decimal("1.20")
    assert MarginSnapshot.objects.filter(account=borrower).latest("pk").health_factor == hf
    assert calls_of(borrower) == []


def test_a_health_factor_in_the_call_band_issues_a_call_due_in_hours(
        in_desk_firm, borrower, django_capture_on_commit_callbacks):
    eth("2700", minutes=5)
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        sweep(borrower)
    hf = current_hf(borrower)
    assert hf <= Decimal("1.10")
    [call] = calls_of(borrower)
    assert (call.kind, call.status, call.health_factor) == ("collateral", "issued", hf)
    # the collateral (cash at a threshold of 1) that lifts HF back to the 1.20 warning level
    assert call.amount == call.amount_due == owed(hf)
    assert call.requirement - call.equity == call.amount
    assert before + timedelta(hours=24) <= call.due_at <= timezone.now() + timedelta(hours=24)
    assert call.due_date == call.due_at.date()
    assert call.rule_source == "house" and "health factor at or under 1.10" in call.rule
    # the valuation it rests on is kept as history, with its health factor
    assert call.snapshot is not None and call.snapshot.health_factor == hf
    assert call.snapshot.reason == "margin_call"
    assert [m.subject for m in mail.outbox] == [
        f"{in_desk_firm.firm.name}: a margin call was issued on account {borrower.number}"]
    assert "health factor" in mail.outbox[0].body
    assert list(CallRecord.objects.values_list("event", "amount_required")) == [
        ("issued", call.amount)]
    # the next sweep at the same health factor: still one call, unchanged
    sweep(borrower)
    assert [(c.pk, c.amount) for c in calls_of(borrower)] == [(call.pk, call.amount)]


def test_the_amount_follows_a_further_fall_and_a_recovery_cancels_it(borrower):
    eth("2700", minutes=5)
    sweep(borrower)
    [call] = calls_of(borrower)
    eth("2500", minutes=10)
    sweep(borrower)
    call.refresh_from_db()
    hf = current_hf(borrower)
    assert call.amount == call.amount_due == owed(hf) and call.health_factor == hf
    assert call.status == "issued"
    eth("3100", minutes=15)  # HF back above 1.10
    sweep(borrower)
    call.refresh_from_db()
    assert (call.status, call.cancel_reason) == ("cancelled", "market_recovery")
    assert list(CallRecord.objects.values_list("event", flat=True)) == [
        "issued", "amount_changed", "cancelled"]


def test_a_deposit_meets_it_and_is_not_asked_again_while_the_cash_stays(in_desk_firm,
                                                                          borrower):
    eth("2700", minutes=5)
    sweep(borrower)
    [call] = calls_of(borrower)
    deposit(borrower, str(call.amount + 100), in_desk_firm.margin_desk)
    sweep(borrower)  # the deposit's valuation: linked first, so met, not recovered
    call.refresh_from_db()
    assert (call.status, call.amount_due) == ("met", Decimal("0.00"))
    [paid] = call.satisfactions.all()
    assert (paid.manner, paid.amount) == ("cash", call.amount)
    # the engine's health factor counts tokens, not cash: the same HF asks for nothing more
    assert current_hf(borrower) <= Decimal("1.10")
    eth("2690", minutes=10)
    sweep(borrower)
    assert [c.status for c in calls_of(borrower)] == ["met"]
    # a fall past what the deposit covers asks for the difference only
    eth("2400", minutes=15)
    sweep(borrower)
    met, again = calls_of(borrower)
    assert again.status == "issued"
    assert again.amount == owed(current_hf(borrower)) - call.amount
    # and the cash withdrawn no longer counts
    withdraw(borrower, "8000", in_desk_firm.margin_desk)
    sweep(borrower)
    again.refresh_from_db()
    cash_left = Decimal(5000) + call.amount + 100 - 8000  # what counts of the deposit now
    assert again.amount == owed(current_hf(borrower)) - cash_left


def test_a_deposit_linked_by_the_book_signal_meets_it(in_desk_firm, borrower,
                                                     django_capture_on_commit_callbacks):
    eth("2700", minutes=5)
    sweep(borrower)
    [call] = calls_of(borrower)
    with django_capture_on_commit_callbacks(execute=True):
        deposit(borrower, str(call.amount), in_desk_firm.margin_desk)
    call.refresh_from_db()
    assert call.status == "met" and call.closed_on is not None


def test_its_due_time_passing_makes_it_overdue(borrower):
    eth("2700", minutes=5)
    sweep(borrower)
    [call] = calls_of(borrower)
    # the firm's trading day, which the sweep judges calls by (the UTC date runs ahead of it
    # every evening in New York)
    today = business_days.today(borrower.firm.exchange_calendar or "XNYS")
    MarginCall.objects.filter(pk=call.pk).update(due_at=timezone.now() - timedelta(minutes=1),
                                                 due_date=today)
    eth("2701", minutes=6)
    sweep(borrower)
    call.refresh_from_db()
    assert call.status == "overdue"


def test_one_open_collateral_call_per_account(borrower):
    eth("2700", minutes=5)
    for minute in (6, 7):
        eth("2700", minutes=minute)
        sweep(borrower)
    assert MarginCall.objects.filter(account=borrower, kind="collateral").count() == 1


def test_ordinary_accounts_cost_no_queries_of_their_own(world, in_desk_firm, borrower):
    """The chunk's collateral judgement: healthy accounts (no health factor, or one above the
    band) and accounts without collateral are not looked at one by one."""
    with firm_scope(world.firm_a):
        others = [book.open_account(client=world.a.client, number=f"ORD-{n}",
                                    registration="individual", margin_type="reg_t",
                                    actor=in_desk_firm.admin) for n in range(6)]
    healthy = {a.pk: Collateral(Decimal("1.5"), Decimal("1000"), Decimal("5000"),
                                Decimal("5000")) for a in others[:3]}

    def queries(accounts, collateral) -> int:
        with CaptureQueriesContext(connection) as captured:
            watch(firm=world.firm_a, account_ids=[a.pk for a in accounts],
                  collateral=collateral)
        return len(captured.captured_queries)

    queries(others[:1], {})  # the firm's call policy is adopted on first use
    one = queries(others[:1], {others[0].pk: healthy[others[0].pk]})
    assert queries(others, healthy) == one
    assert queries(others[:1], {}) == queries(others, {})


def test_the_beat_makes_collateral_calls_past_their_due_time_overdue(borrower):
    from margin.tasks import collateral_calls_due

    eth("2700", minutes=5)
    sweep(borrower)
    [call] = calls_of(borrower)
    assert collateral_calls_due() == {"overdue": []}  # not due for 24 hours
    MarginCall.objects.filter(pk=call.pk).update(due_at=timezone.now() - timedelta(minutes=1))
    assert collateral_calls_due() == {"overdue": [call.pk]}
    call.refresh_from_db()
    assert call.status == "overdue"
    assert list(CallRecord.objects.filter(call=call).values_list("event", flat=True)) == [
        "issued", "overdue"]
    assert collateral_calls_due() == {"overdue": []}  # once


def test_the_api_shows_the_health_factor_and_the_due_time(in_desk_firm, borrower):
    from rest_framework.test import APIClient

    eth("2700", minutes=5)
    sweep(borrower)
    [call] = calls_of(borrower)
    api = APIClient()
    log_in(api, in_desk_firm.margin_desk)
    margin = api.get(f"/api/v1/accounts/{borrower.number}/margin").json()
    assert Decimal(margin["health_factor"]) == current_hf(borrower)
    assert [w["kind"] for w in margin["warnings"]] == ["health_factor"]
    [listed] = api.get("/api/v1/margin-calls/", {"kind": "collateral"}).json()["results"]
    assert (listed["id"], Decimal(listed["health_factor"])) == (call.pk, call.health_factor)
    assert listed["due_at"] is not None and listed["amount"] == str(call.amount)
