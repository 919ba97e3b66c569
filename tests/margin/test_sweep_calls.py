"""Work a sweep chunk's snapshots trigger runs per chunk with set-based queries: the close's
call judgement (margin.calls.issuance) finds the accounts that may take a step in a fixed
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
from margin.calls.issuance import close_of_day, watch
from margin.models import MarginCall
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
        close_of_day(firm=world.firm_a, account_ids=[a.pk for a in accounts], session=T)
    return len(queries.captured_queries)


def test_healthy_accounts_cost_no_queries_of_their_own(world, chunk):
    _, healthy = chunk
    _queries(world, healthy[:1])  # the firm's call policy is adopted on first use
    assert _queries(world, healthy[:1]) == _queries(world, healthy)


def test_an_account_below_its_minimum_is_judged_and_the_others_are_not(world, chunk):
    short, healthy = chunk
    run = close_of_day(firm=world.firm_a, account_ids=[short.pk, *(a.pk for a in healthy)],
                       session=T)
    assert run.steps == [("PM-SHORT", "issued pm_minimum_equity")]
    with firm_scope(world.firm_a):
        assert list(MarginCall.objects.values_list("account_id", flat=True)) == [short.pk]


def test_a_book_that_moved_after_its_snapshot_waits_for_its_next_valuation(world, chunk):
    short, _ = chunk
    close_of_day(firm=world.firm_a, account_ids=[short.pk], session=T)
    with firm_scope(world.firm_a):
        book.post_ledger_entry(account=short, kind="withdrawal", amount=Decimal("-1000"),
                               actor=world.a.users["margin_desk"])
    # the deficit grew, but no valuation has seen it yet: the amount stays until one does
    assert close_of_day(firm=world.firm_a, account_ids=[short.pk],
                        session=date(2026, 11, 25)).steps == [("PM-SHORT", "notice")]
    recompute_accounts(world.firm_a.pk, [short.pk])  # a valuation between closes
    with firm_scope(world.firm_a):
        assert MarginCall.objects.get().amount == Decimal("40000.00")
    assert close_of_day(firm=world.firm_a, account_ids=[short.pk],
                        session=date(2026, 11, 27)).steps == [
        ("PM-SHORT", "changed pm_minimum_equity")]
    with firm_scope(world.firm_a):
        assert MarginCall.objects.get().amount == Decimal("41000.00")


def test_an_intraday_chunk_of_healthy_accounts_reads_no_calls_twice(world, chunk):
    _, healthy = chunk
    assert watch(firm=world.firm_a, account_ids=[a.pk for a in healthy], today=T).steps == []
