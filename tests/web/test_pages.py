"""The portal's pages: one layout, money formatted once, the overview read from the current
margin row, why (the risk array as SVG with its worst point named), calls and notices, history,
and the what-if (nothing written); every page of another firm's account is a 404."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from accounts.models import Position
from brokerage.scope import firm_scope
from margin.calls import policy, services
from margin.models import AccountMargin, MarginSnapshot
from margin.reproduce import explanation
from tests.factories import PASSWORD, log_in
from web.templatetags.money import format_money

pytestmark = pytest.mark.django_db
MINUS = "\u2212"
PAGES = ["", "why/", "calls/", "history/", "what-if/", "distance/", "portfolio-margin/"]


def _page(client, path: str) -> str:
    response = client.get(f"/portal/accounts/ALPHA-0001/{path}")
    assert response.status_code == 200, path
    return response.content.decode()


@pytest.mark.parametrize(("value", "shown"), [
    (Decimal("-47555"), f"{MINUS}$47,555.00"), ("70000.00", "$70,000.00"),
    (Decimal("1234567.891"), "$1,234,567.89"), (0, "$0.00"), (None, "-"), (-0.004, "$0.00"),
])
def test_money_has_its_currency_thousands_and_a_real_minus_sign(value, shown):
    assert format_money(value) == shown


@pytest.mark.parametrize("path", ["/portal/", *[f"/portal/accounts/ALPHA-0001/{p}" for p in PAGES],
                                  "/portal/password/"])
def test_every_page_has_the_layout(client, alpha, path):
    page = client.get(path).content.decode()
    assert 'name="viewport"' in page and alpha.firm_a.name in page
    assert 'action="/portal/logout/"' in page and 'href="/portal/password/"' in page
    assert " style=" not in page and "<script" not in page  # the CSP allows neither


def test_the_home_page_formats_money(client, alpha):
    page = client.get("/portal/").content.decode()
    assert "$1,000.00" in page or "$" in page
    assert not re.search(r">-?\d+\.\d\d<", page)  # no unformatted amount


def test_logout_goes_back_to_the_portal_login(client, alpha):
    response = client.post("/portal/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/portal/"
    assert client.get("/portal/").status_code == 302


def test_a_client_changes_their_password(client, alpha):
    response = client.post("/portal/password/", {"old_password": PASSWORD,
                                                 "new_password1": "a much Longer pass 42",
                                                 "new_password2": "a much Longer pass 42"})
    assert response.status_code == 302 and response["Location"] == "/portal/password/done/"
    client.post("/portal/logout/")
    assert log_in(client, "alpha_client", password="a much Longer pass 42")


def test_the_overview_reads_the_current_margin_row(client, alpha):
    # The row, not a valuation: a figure changed in the row is what the page shows.
    with firm_scope(alpha.firm_a):
        AccountMargin.objects.filter(account=alpha.a.account).update(equity=Decimal("-12345.67"))
    page = _page(client, "")
    assert f"{MINUS}$12,345.67" in page
    assert "ACME" in page and "$100.00" in page and "$1,000.00" in page  # 10 at 100
    assert "Buying power" in page and "Reg T requirement" in page
    assert "contribution" in page  # said why it is not shown


def test_the_overview_puts_open_calls_first(client, alpha):
    account = alpha.a.account
    with firm_scope(alpha.firm_a):
        call = services.issue_call(account=account, kind="maintenance", amount=Decimal("5000"),
                                   as_of=date(2026, 11, 24), trade_date=None,
                                   equity=Decimal("20000"), requirement=Decimal("25000"),
                                   policy=policy.active_policy(account.firm))
    page = _page(client, "")
    assert page.index("Open margin calls") < page.index("Equity (net liquidation value)")
    assert "$5,000.00 due" in page and call.due_date.strftime("%-d %b %Y") in page
    calls = _page(client, "calls/")
    assert "Maintenance" in calls and "How to meet it" in calls and "$5,000.00" in calls
    assert "Notices sent" in calls


def test_why_draws_each_class_group_with_its_worst_point_named(client, alpha):
    with firm_scope(alpha.firm_a):
        snapshot = MarginSnapshot.objects.filter(account=alpha.a.account).latest("computed_at")
        result = explanation(snapshot)
    page = _page(client, "why/")
    assert "<svg" in page and "Table of the" in page
    for group in (result.get("portfolio_margin") or {}).get("class_groups", []):
        worst = min(range(len(group["pnl"])), key=group["pnl"].__getitem__)
        assert f'data-worst-point="{group["points"][worst]}"' in page
        assert re.search(rf"{group['class_group']} down \d+ %", page)
    assert "Greeks by position" in page


def test_history_charts_equity_against_requirement(client, alpha):
    page = _page(client, "history/")
    assert "<polyline" in page and page.count('class="line ') == 2
    with firm_scope(alpha.firm_a):
        kept = MarginSnapshot.objects.filter(account=alpha.a.account).count()
    assert f"{kept} valuation" in page


def test_a_what_if_shows_the_effect_and_writes_nothing(client, alpha):
    account = alpha.a.account

    def stored():
        with firm_scope(alpha.firm_a):
            return (MarginSnapshot.objects.count(),
                    list(Position.objects.values_list("quantity")),
                    list(AccountMargin.objects.values_list("requirement", "computed_version")))

    before = stored()
    response = client.get("/portal/accounts/ALPHA-0001/what-if/",
                          {"symbol": "ACME", "side": "buy", "quantity": "100"})
    page = response.content.decode()
    outcome = response.context["outcome"]
    assert outcome.after.requirement > outcome.before.requirement
    assert format_money(outcome.after.requirement) in page and "Buying power" in page
    assert "The firm would" in page
    closed = client.get("/portal/accounts/ALPHA-0001/what-if/", {"close": "ACME"})
    assert closed.context["outcome"].after.requirement < outcome.before.requirement
    assert stored() == before
    with firm_scope(alpha.firm_a):
        assert account.positions.get().quantity == 10


def test_a_bad_what_if_names_the_problem(client, alpha):
    page = client.get("/portal/accounts/ALPHA-0001/what-if/",
                      {"symbol": "NOPE", "side": "buy", "quantity": "-3"}).content.decode()
    assert "symbol: no instrument" in page and "quantity: a positive number" in page
    assert "The firm would" not in page


@pytest.mark.parametrize("path", PAGES)
def test_every_page_of_another_firms_account_is_a_404(client, alpha, path):
    assert client.get(f"/portal/accounts/BETA-0001/{path}").status_code == 404
