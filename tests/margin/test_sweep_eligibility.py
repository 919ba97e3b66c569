"""Work a sweep chunk's snapshots trigger runs per chunk with set-based queries: the minimum-
equity judgement (eligibility.deficiencies) finds the accounts that may take a step in a fixed
number of queries, whatever the chunk's size, and judges only those."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import services as book
from accounts.models import Account
from brokerage.scope import firm_scope
from eligibility.deficiencies import assess_accounts
from eligibility.models import Deficiency
from margin.tasks import recompute_accounts

pytestmark = pytest.mark.django_db

T = date(2026, 11, 24)  # a Tuesday, an XNYS business day


def _pm_account(fw, number: str, cash: str) -> Account:
    admin = fw.users["firm_admin"]
    with firm_scope(fw.firm):
        account = book.open_account(client=fw.client, number=number, registration="individual",
                                    margin_type="portfolio_margin", actor=admin)
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal(cash),
                               actor=fw.users["margin_desk"])
    return account


@pytest.fixture
def chunk(world) -> tuple[Account, list[Account]]:
    """One PM account below the $100,000 minimum and five above it, each with its snapshot."""
    short = _pm_account(world.a, "PM-SHORT", "60000")
    healthy = [_pm_account(world.a, f"PM-{n}", "250000") for n in range(5)]
    recompute_accounts(world.firm_a.pk, [short.pk, *(a.pk for a in healthy)])
    return short, healthy


def _queries(world, accounts: list[Account]) -> int:
    with CaptureQueriesContext(connection) as queries:
        assess_accounts(firm=world.firm_a, account_ids=[a.pk for a in accounts], today=T)
    return len(queries.captured_queries)


def test_healthy_accounts_cost_no_queries_of_their_own(world, chunk):
    _, healthy = chunk
    _queries(world, healthy[:1])  # the firm's rule set is adopted on first use
    assert _queries(world, healthy[:1]) == _queries(world, healthy)


def test_an_account_below_its_minimum_is_judged_and_the_others_are_not(world, chunk):
    short, healthy = chunk
    run = assess_accounts(firm=world.firm_a, account_ids=[short.pk, *(a.pk for a in healthy)],
                          today=T)
    assert run.steps == [("PM-SHORT", "opened")]
    with firm_scope(world.firm_a):
        assert list(Deficiency.objects.values_list("account_id", flat=True)) == [short.pk]


def test_a_book_that_moved_after_its_snapshot_is_judged_on_the_book(world, chunk):
    short, _ = chunk
    assess_accounts(firm=world.firm_a, account_ids=[short.pk], today=T)
    with firm_scope(world.firm_a):
        # A deposit after the snapshot: no new snapshot yet, the book covers the minimum.
        book.post_ledger_entry(account=short, kind="deposit", amount=Decimal("50000"),
                               actor=world.a.users["margin_desk"])
    run = assess_accounts(firm=world.firm_a, account_ids=[short.pk], today=T)
    assert run.steps == [("PM-SHORT", "cured")]
