"""The desk's accounts: the firm's accounts searched, filtered, sorted and paged from their
current margin rows, and each account's 360 view (every tab, every staff role); another firm's
account is a 404, a client a 403; the what-if writes nothing; an account in deficit that no
call covers reaches the home page.

Firm A's book: ALPHA-0001 (10 ACME, valued, in surplus), ALPHA-0002 (long MGN on a debit, in
deficit at the close of T: a maintenance call), ALPHA-0003 (the same book for another client,
valued after the close: in deficit, no call), ALPHA-0004 (a portfolio-margin account never
valued: stale)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import services as book
from accounts.models import Account, LedgerEntry
from brokerage.models import AuditEvent
from brokerage.roles import STAFF_ROLES, Role
from brokerage.scope import firm_scope
from eligibility.services import create_application
from margin.calls.models import MarginCall
from margin.models import AccountMargin
from margin.tasks import recompute_accounts
from tests.eligibility.conftest import deposit
from tests.factories import log_in, value_each_firms_account
from tests.margin.calls.conftest import T, close, margined_long
from web.desk.accounts import listing

pytestmark = pytest.mark.django_db

TABS = ("", "positions/", "ledger/", "history/", "calls/", "applications/", "restrictions/",
        "audit/", "what-if/")


def _client(firm, admin, name: str):
    return book.create_client(
        firm=firm, actor=admin, kind="person", name=name, email="zephyr@alpha.example",
        born_or_incorporated_on=date(1980, 5, 5), investment_objective="speculation",
        years_trading_stocks=8, years_trading_options=4, options_approval_level=3,
        annual_income=Decimal("400000"), net_worth=Decimal("3000000"),
        liquid_net_worth=Decimal("1200000"))


@pytest.fixture
def firm_book(world):
    value_each_firms_account(world)
    firm, admin = world.firm_a, world.a.users[Role.FIRM_ADMIN]
    with firm_scope(firm):
        called = book.open_account(client=world.a.client, number="ALPHA-0002",
                                   registration="individual", margin_type="reg_t", actor=admin,
                                   opened_on=date(2025, 3, 3))
        deposit(called, "200000")
        margined_long(called)  # equity $20,000 against $25,000
        close(firm, T)  # the close issues the maintenance call
        zephyr = _client(firm, admin, "Zephyr Holdings")
        uncalled = book.open_account(client=zephyr, number="ALPHA-0003",
                                     registration="individual", margin_type="reg_t",
                                     actor=admin, opened_on=date(2025, 4, 4))
        deposit(uncalled, "200000")
        margined_long(uncalled)
        book.open_account(client=zephyr, number="ALPHA-0004", registration="entity",
                          margin_type="portfolio_margin", actor=admin,
                          opened_on=date(2025, 5, 5))
    # ALPHA-0003 valued after the close (no call yet); ALPHA-0002 again, as the MGN price its
    # set-up loaded marked it dirty
    recompute_accounts(firm.pk, [called.pk, uncalled.pk])
    with firm_scope(firm):
        assert MarginCall.objects.filter(account=called, status="issued").count() == 1
        assert not MarginCall.objects.filter(account=uncalled).exists()
        assert AccountMargin.objects.get(account=uncalled).excess < 0
    return world


def _numbers(response) -> list[str]:
    """The account numbers the list shows, in its order."""
    table = response.content.decode().split('<table class="accounts">', 1)[1]
    return re.findall(r'<a href="/desk/accounts/[^/]+/">([A-Z]+-\d+)</a>', table)


def _desk(client, world, role: str = Role.MARGIN_DESK) -> None:
    client.logout()
    assert log_in(client, world.a.users[role])


def test_every_staff_role_reads_the_list_and_every_tab(client, firm_book):
    for role in STAFF_ROLES:
        _desk(client, firm_book, role)
        listed = client.get("/desk/accounts/")
        assert listed.status_code == 200, role
        assert _numbers(listed) == ["ALPHA-0001", "ALPHA-0002", "ALPHA-0003", "ALPHA-0004"]
        for tab in TABS:
            page = client.get(f"/desk/accounts/ALPHA-0002/{tab}")
            assert page.status_code == 200, (role, tab)
            assert b"Account ALPHA-0002" in page.content and b"Client of alpha" in page.content


def test_another_firms_account_is_a_404_and_never_listed(client, firm_book):
    _desk(client, firm_book)
    for tab in TABS:
        assert client.get(f"/desk/accounts/BETA-0001/{tab}").status_code == 404, tab
    assert _numbers(client.get("/desk/accounts/?q=BETA")) == []
    assert b"BETA-0001" not in client.get("/desk/accounts/").content


def test_a_client_is_refused_the_list_and_the_account(client, firm_book):
    assert log_in(client, firm_book.a.users[Role.CLIENT])
    assert client.get("/desk/accounts/").status_code == 403
    for tab in TABS:
        assert client.get(f"/desk/accounts/ALPHA-0001/{tab}").status_code == 403, tab


def test_the_list_shows_the_current_margin_and_marks_the_deficit(client, firm_book):
    _desk(client, firm_book)
    html = client.get("/desk/accounts/?q=ALPHA-0002").content.decode()
    with firm_scope(firm_book.firm_a):
        current = AccountMargin.objects.get(account__number="ALPHA-0002")
    assert current.equity == Decimal("20000.00") and current.excess == Decimal("-5000.00")
    assert "$20,000.00" in html and "$25,000.00" in html
    assert re.search(r'class="deficit">Deficit \S*5,000\.00', html)
    assert "Reg T margin" in html and "Client of alpha" in html


def test_the_filters_search_and_sort(client, firm_book, settings):
    _desk(client, firm_book)

    def listed(query: str) -> list[str]:
        response = client.get(f"/desk/accounts/?{query}")
        assert response.status_code == 200, query
        return _numbers(response)

    assert listed("q=alpha-000") == ["ALPHA-0001", "ALPHA-0002", "ALPHA-0003", "ALPHA-0004"]
    assert listed("q=ALPHA-0003") == ["ALPHA-0003"]
    assert listed("q=zephyr") == ["ALPHA-0003", "ALPHA-0004"]  # the client's name, any case
    assert listed("margin_type=portfolio_margin") == ["ALPHA-0004"]
    assert listed("margin_type=reg_t&q=zephyr") == ["ALPHA-0003"]
    assert listed("status=restricted") == []
    assert listed("status=open") == ["ALPHA-0001", "ALPHA-0002", "ALPHA-0003", "ALPHA-0004"]
    assert listed("deficit=deficit") == ["ALPHA-0002", "ALPHA-0003"]
    assert listed("deficit=uncalled") == ["ALPHA-0003"]
    assert listed("stale=on") == ["ALPHA-0004"]  # never valued
    assert listed("sort=excess") == ["ALPHA-0002", "ALPHA-0003", "ALPHA-0001", "ALPHA-0004"]
    assert listed("sort=-equity")[:2] == ["ALPHA-0002", "ALPHA-0003"]  # $20,000 before $1,000
    assert listed("sort=client") == ["ALPHA-0001", "ALPHA-0002", "ALPHA-0003", "ALPHA-0004"]
    # An input marked ALPHA-0001 dirty; once that is older than a sweep may take, it is stale.
    with firm_scope(firm_book.firm_a):
        deposit(Account.objects.get(number="ALPHA-0001"), "10")
    assert listed("stale=on") == ["ALPHA-0004"]
    settings.MARGIN_SWEEP_LEASE_S = 0
    assert listed("stale=on") == ["ALPHA-0001", "ALPHA-0004"]


def test_a_bad_filter_names_the_field_and_lists_nothing(client, firm_book):
    _desk(client, firm_book)
    response = client.get("/desk/accounts/?margin_type=crypto&sort=worst")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Margin type: Select a valid choice." in html and "Sort by: Select a valid choice" in html
    assert '<table class="accounts">' not in html


def test_the_list_pages_in_a_fixed_number_of_queries(client, firm_book, monkeypatch):
    _desk(client, firm_book)
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    first = client.get("/desk/accounts/?sort=excess")
    assert _numbers(first) == ["ALPHA-0002", "ALPHA-0003"] and b"Page 1 of 2" in first.content
    with CaptureQueriesContext(connection) as two_pages:
        second = client.get("/desk/accounts/?sort=excess&page=2")
    assert _numbers(second) == ["ALPHA-0001", "ALPHA-0004"]
    assert b'href="?sort=excess&amp;page=1"' in second.content
    monkeypatch.setattr(listing, "PAGE_SIZE", 50)
    with CaptureQueriesContext(connection) as all_four:
        client.get("/desk/accounts/?sort=excess")
    # the page's rows come in one query whatever their number (count + page + session/auth)
    assert len(all_four) == len(two_pages)
    rows = [q["sql"] for q in all_four if "accounts_account" in q["sql"] and "LIMIT" in q["sql"]]
    assert len(rows) == 1 and "risk_arrays" not in rows[0]


def test_the_overview_is_the_clients_and_the_tabs_read_the_book(client, firm_book):
    _desk(client, firm_book, Role.RISK_OFFICER)
    page = "/desk/accounts/ALPHA-0002/"
    html = client.get(page).content.decode()
    assert "Equity (net liquidation value)" in html and "$20,000.00" in html
    assert "Open margin calls" in html and "Maintenance call" in html and "$5,000.00" in html
    assert "MGN" in html
    positions = client.get(page + "positions/").content.decode()
    assert "MGN" in positions and "1,000" in positions and "$100.00" in positions
    ledger = client.get(page + "ledger/").content.decode()
    assert "Withdrawal" in ledger and "Deposit" in ledger
    assert "Cash balance (every entry): <strong>−$80,000.00" in ledger
    history = client.get(page + "history/").content.decode()
    assert '<svg class="chart"' in history and "end_of_day" in history
    calls = client.get(page + "calls/").content.decode()
    assert "Open calls" in calls and "Maintenance call" in calls and "No past call." in calls
    assert "No application" in client.get(page + "applications/").content.decode()
    assert "No active restriction" in client.get(page + "restrictions/").content.decode()
    none_yet = client.get("/desk/accounts/ALPHA-0004/").content.decode()
    assert "Not valued yet." in none_yet


def test_the_audit_trail_holds_the_account_and_its_children_only(client, firm_book):
    _desk(client, firm_book, Role.COMPLIANCE)
    html = client.get("/desk/accounts/ALPHA-0002/audit/").content.decode()
    with firm_scope(firm_book.firm_a):
        called = Account.objects.get(number="ALPHA-0002")
        call = MarginCall.objects.get(account=called)
        entries = list(LedgerEntry.objects.filter(account=called).values_list("pk", flat=True))
        other = LedgerEntry.objects.filter(account__number="ALPHA-0003").first()
    for event, object_key in [("account.opened", f"accounts.account {called.pk}"),
                              ("position.set", "accounts.position " f"{called.pk}:"),
                              ("ledger.posted", f"accounts.ledgerentry {entries[0]}"),
                              ("margin_call.issued", f"margin.margincall {call.pk}")]:
        assert event in html and object_key in html, event
    # in words, by the desk's one presenter (as the compliance trail shows them), never JSON
    assert "Margin call issued" in html and "Account ALPHA-0002" in html
    assert '{"' not in html and "<dl class=\"kv\">" in html
    assert f"accounts.ledgerentry {other.pk}<" not in html  # another account's entry
    assert "BETA" not in html


def test_the_what_if_checks_an_order_and_writes_nothing(client, firm_book):
    _desk(client, firm_book)
    page = "/desk/accounts/ALPHA-0003/what-if/"
    with firm_scope(firm_book.firm_a):
        events, entries = AuditEvent.objects.count(), LedgerEntry.objects.count()
    bought = client.get(page, {"symbol": "MGN", "side": "buy", "quantity": "100"}).content.decode()
    assert "The pre-trade check would reject this order" in bought  # an account in deficit
    assert 'id="requirement-after">$27,500.00' in bought  # 25 % of 1,100 x $100
    closed = client.get(page, {"close": "MGN"}).content.decode()
    assert "The pre-trade check would accept this order" in closed
    assert 'id="requirement-after">$0.00' in closed
    bad = client.get(page, {"symbol": "NOPE", "side": "short", "quantity": "-1"}).content.decode()
    assert "Nothing was checked" in bad and "symbol: no instrument &#x27;NOPE&#x27;" in bad
    assert "side: buy or sell" in bad and "quantity: a positive number" in bad
    with firm_scope(firm_book.firm_a):
        assert (AuditEvent.objects.count(), LedgerEntry.objects.count()) == (events, entries)


def test_home_names_the_deficit_that_no_call_covers(client, firm_book):
    for role in (Role.MARGIN_DESK, Role.RISK_OFFICER):
        _desk(client, firm_book, role)
        html = client.get("/desk/").content.decode()
        assert "1 account in deficit without an open call" in html, role
        assert 'href="/desk/accounts/?deficit=uncalled&amp;sort=excess"' in html
        assert "the largest: ALPHA-0003" in html
    _desk(client, firm_book, Role.COMPLIANCE)
    assert "in deficit without an open call" not in client.get("/desk/").content.decode()


def test_applications_show_the_latest_evaluation_and_reach_the_trail(client, firm_book):
    with firm_scope(firm_book.firm_a):
        application = create_application(account=Account.objects.get(number="ALPHA-0001"),
                                         actor=firm_book.a.users[Role.MARGIN_DESK],
                                         submit=True)
    _desk(client, firm_book, Role.RISK_OFFICER)
    html = client.get("/desk/accounts/ALPHA-0001/applications/").content.decode()
    assert f"#{application.pk}" in html and "Submitted" in html
    assert "Not eligible" in html  # $1,000 of equity against the $125,000 opening minimum
    assert ('<li class="failed"><span class="verdict">Failed:</span> Equity of $1,000.00 is '
            "below the $125,000.00 opening minimum.") in html
    trail = client.get("/desk/accounts/ALPHA-0001/audit/").content.decode()
    assert "pm_application.submitted" in trail
    assert f"eligibility.application {application.pk}" in trail
