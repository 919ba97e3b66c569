"""Firm risk as a risk officer meets it, in headless Chromium against a live server with the demo
seeded once: northwind.risk1 logs in (password, then the authenticator's code), opens Firm risk
from the desk's sections, reads the firm's totals and the accounts closest to a call, runs
"AAPL -10 %" in the simulator and sees the accounts that would go into deficit (each holds
AAPL; the one whose met call left it at its requirement among them), then a named scenario.
Each page is photographed at 1366 and 390 px."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from accounts.models import Position
from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.simulation import forget_books

from .walk import click_through, log_in, open_page, page_text, seed_demo, shoot

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_risk_officer_simulates_aapl_down_ten_percent(browser, live_server, screenshot_dir,
                                                        settings):
    seed_demo(settings)
    forget_books()
    northwind = Firm.objects.get(slug="northwind")
    with firm_scope(northwind):
        aapl_holders = set(Position.objects.filter(instrument__symbol__startswith="AAPL")
                           .values_list("account__number", flat=True))
    base = live_server.url

    log_in(browser, base, "northwind.risk1", lands_on="/desk/")
    click_through(browser, browser.find_element(By.LINK_TEXT, "Firm risk"))
    text = page_text(browser)
    assert "Northwind Securities" in text and "How the firm moved today" in text
    assert "Closest to a call" in text and "NO100013" in text  # the under-margined one
    assert "Concentration by underlying" in text and browser.find_elements(
        By.CSS_SELECTOR, "svg.chart.bars rect.bar")
    assert "$" in browser.find_element(By.CSS_SELECTOR, "dl.figures dd").text
    shoot(browser, screenshot_dir, "risk-01-firm-risk")

    browser.find_element(By.ID, "id_symbol").send_keys("AAPL")
    browser.find_element(By.ID, "id_move").send_keys("-10")
    click_through(browser, browser.find_element(By.CSS_SELECTOR,
                                                "form.simulator button[type=submit]"))
    text = page_text(browser)
    assert "AAPL -10 %:" in text and "in deficit" in text
    rows = browser.find_elements(By.CSS_SELECTOR, "table.simulation tbody tr")
    newly = {row.find_element(By.CSS_SELECTOR, "td").text for row in rows
             if row.find_elements(By.CSS_SELECTOR, ".new-deficit")}
    assert "NO100001" in newly  # its met call left it at its requirement
    assert newly <= aapl_holders  # only AAPL's holders newly go under (the rest already were)
    assert all("→" in row.text and "−$" in row.text for row in rows)
    assert "Seconds" in text and "Books from the database" in text
    shoot(browser, screenshot_dir, "risk-02-aapl-down-10")

    Select(browser.find_element(By.ID, "id_scenario")).select_by_value("2008-10")
    click_through(browser, browser.find_element(By.CSS_SELECTOR,
                                                "form.simulator button[type=submit]"))
    text = page_text(browser)
    assert "Lehman and the October 2008 crash:" in text
    assert "Books from the resident cache" in text
    shoot(browser, screenshot_dir, "risk-03-2008-10")

    text = open_page(browser, f"{base}/desk/risk/simulate/?symbol=NOPE&move=-10")
    assert "no book of the firm holds anything on 'NOPE'" in text
    shoot(browser, screenshot_dir, "risk-04-refused")
