"""Distance to a call, each position's contribution and the overview's lines about them: the
engine revalues the moved book (equity and requirement); the found move is where the excess
is zero, a little further is a deficit; nothing is written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts import services as book
from brokerage.scope import firm_scope
from margin.contribution import contributions
from margin.distance import distance_to_call, excess_after_move
from margin.engine.distance import TOLERANCE
from margin.models import AccountMargin, MarginSnapshot
from margin.tasks import recompute_accounts
from tests.factories import PASSWORD, log_in, value_each_firms_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def geared(client, world):
    """ALPHA-0001: 10 ACME at 100 (Reg T) bought with 600 of debt: equity 1000 (1 + m) - 600
    against 25 % maintenance, 250 (1 + m): a call when ACME falls 20 %."""
    value_each_firms_account(world, value=False)  # valued once, below, after the withdrawal
    with firm_scope(world.firm_a):
        book.post_ledger_entry(account=world.a.account, kind="withdrawal",
                               amount=Decimal("-600"), actor=world.a.users["firm_admin"])
    recompute_accounts(world.firm_a.pk, [world.a.account.pk])
    log_in(client, "alpha_client", password=PASSWORD)
    return world


def test_the_found_move_is_where_the_excess_is_zero(geared):
    account = geared.a.account
    with firm_scope(geared.firm_a):
        found = distance_to_call(account)
        (acme,) = found.underlyings
        assert acme.group == "ACME" and found.excess == Decimal("150.00")
        assert acme.down.move == pytest.approx(-0.20, abs=2 * TOLERANCE)
        assert not acme.up.found  # a rise only adds excess
        # recomputed on the moved book: ~0 at the move, a deficit a little further
        at = excess_after_move(account, acme.down.move, ["ACME"])
        assert Decimal(0) <= at <= Decimal("0.10")
        assert excess_after_move(account, acme.down.move - 0.001, ["ACME"]) < 0
        # the requirement is recomputed on the moved book, not held at today's
        down_10 = next(s for s in found.stressed if s.move == pytest.approx(-0.10))
        assert down_10.equity == Decimal("300.00") and down_10.requirement == Decimal("225.00")


def test_the_distance_page_shows_the_move_the_presets_and_a_chart(client, geared):
    def stored():
        with firm_scope(geared.firm_a):
            return (MarginSnapshot.objects.count(),
                    list(AccountMargin.objects.values_list("requirement", "computed_version")))

    before = stored()
    page = client.get("/portal/accounts/ALPHA-0001/distance/", {"move": "-20"})
    text = page.content.decode()
    assert page.status_code == 200
    assert "ACME can fall 20.0 % before a call." in text
    assert page.context["picked"].move == pytest.approx(-0.20)
    assert 'value="-20" checked' in text and "svg" in text and "Table of the excess" in text
    assert page.context["chart"].markers and "crossing" in text
    assert stored() == before


def test_a_bad_preset_names_the_problem_and_shows_the_default(client, geared):
    page = client.get("/portal/accounts/ALPHA-0001/distance/", {"move": "-7"})
    text = page.content.decode()
    assert page.status_code == 200 and "move: choose one of" in text and "&#x27;-7&#x27;" in text
    assert page.context["picked"].move == pytest.approx(-0.10)


def test_the_overview_says_how_far_and_what_each_position_contributes(client, geared):
    text = client.get("/portal/accounts/ALPHA-0001/").content.decode()
    assert "ACME can fall 20.0 % before a call." in text
    assert "Requirement change if closed" in text
    with firm_scope(geared.firm_a):
        now, by_instrument = contributions(geared.a.account)
    (only,) = by_instrument.values()
    assert now == Decimal("250.00") and only.requirement_without == Decimal("0.00")
    assert only.change == Decimal("-250.00")
    assert "\u2212$250.00" in text



def test_an_answer_is_kept_until_the_accounts_margin_version_moves(geared):
    account = geared.a.account
    with firm_scope(geared.firm_a):
        first = distance_to_call(account)
        assert distance_to_call(account) is first  # a reload values nothing again
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("100"),
                               actor=geared.a.users["firm_admin"])
        after = distance_to_call(account)
    assert after is not first and after.excess == first.excess + Decimal("100")
    (acme,) = after.underlyings
    # 1000 (1 + m) - 500 = 250 (1 + m): a call at -1/3
    assert acme.down.move == pytest.approx(-1 / 3, abs=2 * TOLERANCE)
