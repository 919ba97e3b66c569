"""The client portal reads snapshots; a client sees only the accounts granted to them."""

from __future__ import annotations

import pytest

from accounts import services as book
from brokerage.scope import firm_scope
from tests.factories import PASSWORD, value_each_firms_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def granted(world):
    return value_each_firms_account(world)


def test_a_client_sees_their_account_and_its_explanation(client, granted):
    client.login(username="alpha_client", password=PASSWORD)
    home = client.get("/portal/")
    assert home.status_code == 200 and b"ALPHA-0001" in home.content
    assert b"BETA-0001" not in home.content
    page = client.get("/portal/accounts/ALPHA-0001/")
    assert page.status_code == 200
    assert b"Why this requirement" in page.content and b"worst loss" in page.content


def test_another_firms_account_is_a_404(client, granted):
    client.login(username="alpha_client", password=PASSWORD)
    assert client.get("/portal/accounts/BETA-0001/").status_code == 404


def test_an_ungranted_account_of_the_same_firm_is_a_404(client, world):
    client.login(username="alpha_client", password=PASSWORD)
    assert client.get("/portal/accounts/ALPHA-0001/").status_code == 404


def test_granting_across_firms_is_refused(world):
    with firm_scope(world.firm_a), pytest.raises(book.BookError):
        book.grant_account_access(account=world.a.account, user=world.b.users["client"],
                                  actor=world.a.users["firm_admin"])
