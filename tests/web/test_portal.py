"""The client portal reads snapshots; a client sees only the accounts granted to them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import services as book
from brokerage.scope import firm_scope
from tests.factories import PASSWORD, log_in, value_each_firms_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def granted(world):
    return value_each_firms_account(world)


def test_a_client_sees_their_account_and_its_explanation(client, granted):
    log_in(client, "alpha_client", password=PASSWORD)
    home = client.get("/portal/")
    assert home.status_code == 200 and b"ALPHA-0001" in home.content
    assert b"BETA-0001" not in home.content
    page = client.get("/portal/accounts/ALPHA-0001/")
    assert page.status_code == 200 and b"Positions" in page.content
    why = client.get("/portal/accounts/ALPHA-0001/why/")
    assert why.status_code == 200 and b"Why this requirement" in why.content


def test_another_firms_account_is_a_404(client, granted):
    log_in(client, "alpha_client", password=PASSWORD)
    assert client.get("/portal/accounts/BETA-0001/").status_code == 404


def test_an_ungranted_account_of_the_same_firm_is_a_404(client, world):
    log_in(client, "alpha_client", password=PASSWORD)
    assert client.get("/portal/accounts/ALPHA-0001/").status_code == 404


def test_granting_across_firms_is_refused(world):
    with firm_scope(world.firm_a), pytest.raises(book.BookError):
        book.grant_account_access(account=world.a.account, user=world.b.users["client"],
                                  actor=world.a.users["firm_admin"])



def _home_queries(client) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as queries:
        home = client.get("/portal/")
    assert home.status_code == 200
    return len(queries), home


def test_the_home_page_reads_snapshots_in_a_fixed_number_of_queries(client, granted):
    # The accounts and their latest snapshots in two queries, however many accounts a client
    # holds (not one snapshot query per account).
    world = granted
    log_in(client, "alpha_client", password=PASSWORD)
    with_one, _ = _home_queries(client)
    with firm_scope(world.firm_a):
        admin = world.a.users["firm_admin"]
        user = world.a.users["client"]
        for n in range(2, 6):
            account = book.open_account(client=world.a.client, number=f"ALPHA-000{n}",
                                        registration="individual", margin_type="reg_t",
                                        actor=admin)
            book.grant_account_access(account=account, user=user, actor=admin)
    with_five, home = _home_queries(client)
    assert with_five == with_one
    shown = home.context["rows"]
    assert [a.number for a, _ in shown] == [f"ALPHA-000{n}" for n in range(1, 6)]
    assert shown[0][1] is not None and shown[0][1].account_id == shown[0][0].pk
    assert all(snapshot is None for _, snapshot in shown[1:])
