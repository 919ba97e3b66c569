"""The desk's accounts as the margin desk meets them, in headless Chromium against a live server
with the demo seeded once: log in (password, then the authenticator's code), open Accounts, find
NO100013 (the under-margined portfolio-margin account) by its number, open its 360 view, walk
each tab, run a what-if closing one of its short puts; another firm's account is a 404. Every
page is photographed at 1366 and 390 px."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from accounts.models import Account
from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.models import AccountMargin

from .walk import (
    click_through,
    log_in,
    open_page,
    page_text,
    seed_demo,
    shoot,
    what_if_closing,
)

pytestmark = pytest.mark.django_db(transaction=True)

# tab link text -> what the tab must show for NO100013
TABS = {
    "Positions": ("NVDA 270115P135", "Recent executions"),
    "Ledger": ("Cash balance", "Deposit"),
    "Snapshots": ("Equity against requirement", "Snapshots kept"),
    "Calls": ("Portfolio-margin deficiency", "PM minimum-equity deficiency"),
    "PM applications": ("Portfolio-margin applications",),
    "Restrictions": ("Active restrictions",),
    "Audit trail": ("Account opened", "Margin call issued", "Account NO100013"),
}



def test_the_desk_finds_an_account_and_walks_its_360_view(browser, live_server, screenshot_dir,
                                                          settings):
    seed_demo(settings)
    northwind = Firm.objects.get(slug="northwind")
    with firm_scope(northwind):
        current = AccountMargin.objects.select_related("account").get(
            account__number="NO100013")
    assert current.excess < 0  # the demo's under-margined account
    with firm_scope(Firm.objects.get(slug="bluewater")):
        elsewhere = Account.objects.get(number="BL100013").number
    base = live_server.url

    log_in(browser, base, "northwind.desk", lands_on="/desk/")
    click_through(browser, browser.find_element(By.LINK_TEXT, "Accounts"))
    text = page_text(browser)
    assert "Northwind Securities" in text and "NO100001" in text and "BL100" not in text
    shoot(browser, screenshot_dir, "desk-accounts-01-list")

    search = browser.find_element(By.ID, "id_q")
    search.send_keys("NO100013")
    click_through(browser, browser.find_element(By.CSS_SELECTOR,
                                                "form.account-filter button[type=submit]"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.accounts tbody tr")
    assert len(rows) == 1 and "NO100013" in rows[0].text and "Deficit" in rows[0].text
    assert "Portfolio margin" in rows[0].text and "$30,000.00" in rows[0].text
    shoot(browser, screenshot_dir, "desk-accounts-02-found")

    click_through(browser, browser.find_element(By.LINK_TEXT, "NO100013"))
    assert browser.current_url == f"{base}/desk/accounts/NO100013/"
    text = page_text(browser)
    assert "Account NO100013" in text and "Equity (net liquidation value)" in text
    assert "Open margin calls" in text and "Excess liquidity: deficit" in text
    shoot(browser, screenshot_dir, "desk-accounts-03-overview")

    for n, (tab, expected) in enumerate(TABS.items(), start=4):
        click_through(browser, browser.find_element(
            By.CSS_SELECTOR, "nav.tabs").find_element(By.LINK_TEXT, tab))
        current_tab = browser.find_element(By.CSS_SELECTOR, "nav.tabs a[aria-current=page]")
        assert current_tab.text == tab
        text = page_text(browser)
        for words in expected:
            assert words in text, (tab, words)
        if tab == "Snapshots":
            assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.equity")
        shoot(browser, screenshot_dir, f"desk-accounts-{n:02d}-{tab.lower().replace(' ', '-')}")

    # What-if: closing the short NVDA puts lowers the requirement; nothing is written.
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "nav.tabs")
                  .find_element(By.LINK_TEXT, "What-if"))
    rows = what_if_closing(browser, "NVDA 270115P135")
    assert "Requirement" in rows, page_text(browser, "main")
    now, after = rows["Requirement"]
    assert now.startswith("$") and after.startswith("$") and now != after
    assert "The pre-trade check would" in page_text(browser)
    shoot(browser, screenshot_dir, "desk-accounts-11-what-if")
    with firm_scope(northwind):
        assert AccountMargin.objects.get(account__number="NO100013").requirement == \
            current.requirement

    # Another firm's account: a 404 on every tab, its number nowhere.
    for path in ("", "positions/", "ledger/", "history/", "calls/", "audit/", "what-if/"):
        text = open_page(browser, f"{base}/desk/accounts/{elsewhere}/{path}")
        assert "not found" in browser.page_source.lower(), path
        assert elsewhere not in text
