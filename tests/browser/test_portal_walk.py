"""The client portal as a client meets it, in headless Chromium against a live server with the
demo seeded once: log in through the login page, walk overview (portfolio margin as a fraction
of Reg T, the scenario that drives it, how far AAPL can fall, what selling the put would do) ->
why (each chart's worst point is the snapshot's) -> distance to a call (a preset picked) ->
calls -> history -> what-if (closing the protective put moves the requirement) -> the
portfolio-margin application to submission; the client with an overdue call sees it and its
notice; another client's and another firm's account are a 404. Every page is checked by axe-core
(no serious or critical violation) and photographed at 1366 and 390 px into the folder printed
at the end of the run."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from accounts.models import Account, Client
from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.reproduce import explanation
from margin.snapshots import latest_snapshot

from .accessibility import check_accessibility
from .walk import click_through as _click_through
from .walk import log_in as _log_in
from .walk import open_page as _open
from .walk import page_text, seed_demo, what_if_closing
from .walk import shoot as _shoot

pytestmark = pytest.mark.django_db(transaction=True)


def _accounts_of(firm_slug: str) -> dict[str, Account]:
    """Each portal login of the firm and its account."""
    firm = Firm.objects.get(slug=firm_slug)
    with firm_scope(firm):
        return {c.portal_user.username: Account.objects.filter(client=c).order_by("number").first()
                for c in Client.objects.select_related("portal_user")
                .filter(portal_user__isnull=False)}


def _check_why(browser, page: str, account: Account) -> None:
    """Each class group's chart marks, and names, the worst point of the snapshot's risk array."""
    text = _open(browser, f"{page}/why/")
    with firm_scope(account.firm):
        result = explanation(latest_snapshot(account))
    groups = (result.get("portfolio_margin") or {}).get("class_groups", [])
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert groups and len(charts) == len(groups)
    for group, chart in zip(groups, charts, strict=True):
        worst = min(range(len(group["pnl"])), key=group["pnl"].__getitem__)
        assert float(chart.get_attribute("data-worst-point")) == pytest.approx(group["points"][worst])
        assert float(chart.get_attribute("data-worst-pnl")) == pytest.approx(group["pnl"][worst])
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.worst")) == 1
        direction = "down" if group["points"][worst] < 0 else "up"
        assert f"{group['class_group']} {direction} {abs(group['points'][worst]) * 100:.0f} %" in text
    assert "Greeks by position" in text


def test_a_client_walks_the_portal(browser, live_server, screenshot_dir, settings):
    seed_demo(settings)
    northwind, bluewater = _accounts_of("northwind"), _accounts_of("bluewater")
    account = northwind["northwind.client1"]  # Long AAPL with protective puts
    base, page = live_server.url, f"{live_server.url}/portal/accounts/{account.number}"

    _log_in(browser, base, "northwind.client1")
    text = _open(browser, f"{base}/portal/")
    assert "Northwind Securities" in text and account.number in text
    _shoot(browser, screenshot_dir, "01-home")
    check_accessibility(browser, "home")

    _click_through(browser, browser.find_element(By.LINK_TEXT, account.number))
    text = page_text(browser)
    assert "Northwind Securities" in text and "Equity (net liquidation value)" in text
    assert "Reg T requirement" in text and "Buying power" in text and "AAPL" in text
    assert browser.find_element(By.NAME, "viewport")
    # tried as a new user: one page says what PM needs, what drives it, how far AAPL can fall
    # and what selling the put would do
    assert "Portfolio margin would need" in text and "of the Reg T requirement" in text
    assert "the scenario that sets it is AAPL down 15 %" in text
    assert "AAPL: any fall brings a call" in text or "AAPL can fall" in text
    assert "Selling the AAPL" in text and "see the whole effect in a what-if" in text
    assert "Requirement change if closed" in text
    _shoot(browser, screenshot_dir, "02-overview")
    check_accessibility(browser, "overview")

    _check_why(browser, page, account)
    assert "AAPL down 15 %" in page_text(browser)  # the ±15 % range
    _shoot(browser, screenshot_dir, "03-why")
    check_accessibility(browser, "why")

    text = _open(browser, f"{page}/distance/")
    assert "How far each underlying can move" in text and "Stressed markets" in text
    browser.find_element(By.CSS_SELECTOR, "input[name=move][value='-20']").click()
    _click_through(browser, browser.find_element(By.CSS_SELECTOR,
                                                 "form.preset button[type=submit]"))
    assert browser.current_url.endswith("?move=-20")
    picked = browser.find_element(By.ID, "picked").text
    assert picked.startswith("Every underlying −20 %") and "requirement" in picked
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline")
    _shoot(browser, screenshot_dir, "03b-distance")
    check_accessibility(browser, "distance")

    text = _open(browser, f"{page}/calls/")
    assert "Open margin calls" in text and "Notices sent" in text and "Restrictions" in text
    _shoot(browser, screenshot_dir, "04-calls")
    check_accessibility(browser, "calls")

    text = _open(browser, f"{page}/history/")
    assert "Equity against requirement" in text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.equity")
    _shoot(browser, screenshot_dir, "05-history")
    check_accessibility(browser, "history")

    # What selling the protective puts would do: the requirement after differs from now.
    _open(browser, f"{page}/what-if/")
    close = Select(browser.find_element(By.ID, "close"))
    put = next(o.get_attribute("value") for o in close.options if "P" in o.get_attribute("value")
               and o.get_attribute("value") != "AAPL")
    rows = what_if_closing(browser, put)
    assert "Requirement" in rows, page_text(browser, "main")
    now, after = rows["Requirement"]
    assert now != after and now.startswith("$") and after.startswith("$")
    assert "The firm would" in page_text(browser)
    _shoot(browser, screenshot_dir, "06-what-if")
    check_accessibility(browser, "what-if")

    # The portfolio-margin application: each rule in words, the disclosure signed, submitted.
    text = _open(browser, f"{page}/portfolio-margin/")
    assert "The eligibility check, now" in text and "Reg T" in text
    _shoot(browser, screenshot_dir, "06b-pm-check")
    check_accessibility(browser, "portfolio margin")
    if browser.find_elements(By.ID, "read"):
        browser.find_element(By.ID, "read").click()
        _click_through(browser, browser.find_element(
            By.XPATH, "//button[text()='Sign the acknowledgement']"))
        assert "acknowledgement of the portfolio-margin risk disclosure is recorded" in \
            page_text(browser)
    _click_through(browser, browser.find_element(
        By.XPATH, "//button[text()='Submit my application']"))
    text = page_text(browser)
    assert "is submitted" in text and "Submitted" in text
    _shoot(browser, screenshot_dir, "06c-pm-submitted")
    check_accessibility(browser, "portfolio margin submitted")

    # Another client's account of the same firm, and another firm's, are a 404.
    for other in (northwind["northwind.client2"], bluewater["bluewater.client1"]):
        for path in ("", "why/", "calls/", "history/", "what-if/", "distance/",
                     "portfolio-margin/"):
            browser.get(f"{base}/portal/accounts/{other.number}/{path}")
            assert other.number not in browser.page_source
            assert "Not Found" in browser.page_source or "not found" in browser.page_source.lower()

    browser.get(f"{base}/portal/")
    _click_through(browser, browser.find_element(By.CSS_SELECTOR, "header form button"))
    assert browser.current_url.startswith(f"{base}/accounts/login/")

    # The other demo clients with a portal login: overview and why, each chart checked.
    for n, login in ((2, "northwind.client2"), (3, "northwind.client3")):
        other = northwind[login]
        _log_in(browser, base, login)
        text = _open(browser, f"{base}/portal/accounts/{other.number}/")
        assert "Equity (net liquidation value)" in text and "Reg T requirement" in text
        with firm_scope(other.firm):
            snapshot = latest_snapshot(other)
        if snapshot.regt_maintenance is not None and snapshot.pm_requirement is not None:
            assert "Portfolio margin saves" in text
        _shoot(browser, screenshot_dir, f"0{6 + n}-overview-{login}")
        check_accessibility(browser, f"overview of {login}")
        _check_why(browser, f"{base}/portal/accounts/{other.number}", other)
        _shoot(browser, screenshot_dir, f"0{6 + n}-why-{login}")
        check_accessibility(browser, f"why of {login}")
        text = _open(browser, f"{base}/portal/accounts/{other.number}/distance/")
        assert "How far each underlying can move" in text
        _shoot(browser, screenshot_dir, f"0{6 + n}-distance-{login}")
        check_accessibility(browser, f"distance of {login}")
        if login == "northwind.client2":
            # the demo's overdue maintenance call (demo/seed.py call_history): at the top of
            # the overview, and on calls with the notice that was sent
            assert "Open margin calls" in _open(browser,
                                                f"{base}/portal/accounts/{other.number}/")
            text = _open(browser, f"{base}/portal/accounts/{other.number}/calls/")
            assert "Maintenance call" in text and "Deposit" in text
            assert "a margin call was issued on account" in text
            _shoot(browser, screenshot_dir, f"0{6 + n}-calls-{login}")
            check_accessibility(browser, f"calls of {login}")
        _click_through(browser, browser.find_element(By.CSS_SELECTOR, "header form button"))

    # The applicant (a Reg T book weighing portfolio margin) and the crypto client (LP and
    # tokens under portfolio margin): overview, distance to a call, the application page.
    for n, login in ((10, "northwind.applicant"), (11, "northwind.crypto")):
        other = northwind[login]
        _log_in(browser, base, login)
        text = _open(browser, f"{base}/portal/accounts/{other.number}/")
        assert "Equity (net liquidation value)" in text and "Distance to a call" in text
        assert "Requirement change if closed" in text
        _shoot(browser, screenshot_dir, f"{n}-overview-{login}")
        check_accessibility(browser, f"overview of {login}")
        text = _open(browser, f"{base}/portal/accounts/{other.number}/distance/")
        assert "How far each underlying can move" in text and "Stressed markets" in text
        _shoot(browser, screenshot_dir, f"{n}-distance-{login}")
        check_accessibility(browser, f"distance of {login}")
        text = _open(browser, f"{base}/portal/accounts/{other.number}/portfolio-margin/")
        assert other.get_margin_type_display() in text
        _shoot(browser, screenshot_dir, f"{n}-pm-{login}")
        check_accessibility(browser, f"portfolio margin of {login}")
        _click_through(browser, browser.find_element(By.CSS_SELECTOR, "header form button"))
