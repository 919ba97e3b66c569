"""The approvals queue as the risk officers meet it, in headless Chromium against a live server
with the demo seeded once: northwind.risk1 lands on the desk, finds the applicant's
portfolio-margin application on the home, opens it (the rules in words), reviews it and is
told in words that a second person decides; northwind.risk2 approves it; on its effective day
the account is on portfolio margin in the database. The pending risk-parameter change shows as
old and new values; the history names who did what. Every page is photographed at 1366 and
390 px."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from accounts.models import Account
from brokerage.models import ApprovalRequest, AuditEvent, Firm
from brokerage.scope import firm_scope
from eligibility.models import Application
from eligibility.services import apply_due_conversions

from .walk import click_through, log_in, open_page, page_text, seed_demo, shoot

pytestmark = pytest.mark.django_db(transaction=True)



def test_two_risk_officers_approve_an_application(browser, live_server, screenshot_dir,
                                                  settings):
    seed_demo(settings)
    base = live_server.url
    northwind = Firm.objects.get(slug="northwind")
    with firm_scope(northwind):
        application = Application.objects.get(account__number="NO100012")
        change = ApprovalRequest.objects.get(kind="risk_parameters", state="pending")
    assert application.state == Application.State.SUBMITTED
    name = f"application #{application.pk}"

    # The first risk officer: the home names the work, the queue lists it, the page explains it.
    log_in(browser, base, "northwind.risk1", lands_on="/desk/")
    text = page_text(browser)
    assert "Northwind Securities" in text and "1 application to review" in text
    assert "1 rule-set or risk-parameter change awaiting a second person" in text
    shoot(browser, screenshot_dir, "desk-approvals-01-home-risk1")
    click_through(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "1 application to review"))
    text = page_text(browser)
    assert "Applications to review" in text and "NO100012" in text and "$180,000.00" in text
    shoot(browser, screenshot_dir, "desk-approvals-02-queue")

    click_through(browser, browser.find_element(By.LINK_TEXT, f"Application #{application.pk}"))
    text = page_text(browser)
    assert "Equity of $180,000.00 meets the $125,000.00 opening minimum." in text
    assert "Options approval level" in text and "level 4" in text
    assert "Portfolio-margin risk disclosure" in text and "signed" in text
    assert "Reg T requirement" in text and "Portfolio-margin requirement" in text
    assert "northwind.applicant" in text  # who drafted and submitted it, by name
    shoot(browser, screenshot_dir, "desk-approvals-03-application")

    browser.find_element(By.ID, "notes").send_keys("Meets every rule; equity well above.")
    click_through(browser, browser.find_element(By.XPATH,
                                                "//button[text()='Record the review']"))
    text = page_text(browser)
    assert f"You reviewed {name}" in text
    # The reviewer may not approve their own review: the page says why, in words.
    assert (f"You may not decide this application: northwind.risk1 reviewed {name} and so "
            "cannot approve or reject it: a second person decides (four eyes)") in text
    assert not browser.find_elements(By.XPATH, "//button[text()='Approve']")
    shoot(browser, screenshot_dir, "desk-approvals-04-reviewed-refused")

    text = open_page(browser, f"{base}/desk/approvals/changes/{change.pk}/")
    assert "Proposed by northwind.risk2" in text
    assert "Drafted on the platform's defaults, still in force" in text
    assert "House › stress range 0.25 0.3 +0.05 (+20.0 %)" in text
    assert "House › concentration › top move 0.3 0.35 +0.05 (+16.7 %)" in text
    shoot(browser, screenshot_dir, "desk-approvals-05-parameter-change")

    # The second risk officer approves.
    log_in(browser, base, "northwind.risk2", lands_on="/desk/")
    text = page_text(browser)
    assert "1 application to approve" in text and "reviewed by northwind.risk1" in text
    click_through(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "1 application to approve"))
    click_through(browser, browser.find_element(By.LINK_TEXT, f"Application #{application.pk}"))
    assert "northwind.risk1 reviewed it and recommended that it be approved" in page_text(browser)
    browser.find_element(By.ID, "reasons").send_keys("Second pair of eyes: agreed.")
    click_through(browser, browser.find_element(By.XPATH, "//button[text()='Approve']"))
    with firm_scope(northwind):
        approved = Application.objects.select_related("decided_by").get(pk=application.pk)
        events = list(AuditEvent.objects.filter(event_type__startswith="pm_application")
                      .order_by("pk").values_list("event_type", "actor__username"))
    assert approved.state == Application.State.APPROVED
    assert approved.decided_by.username == "northwind.risk2"
    assert events[-2:] == [("pm_application.reviewed", "northwind.risk1"),
                           ("pm_application.approved", "northwind.risk2")]
    text = page_text(browser)
    assert (f"You approved {name}: account NO100012 moves to portfolio margin on "
            f"{approved.effective_on:%A %Y-%m-%d}") in text
    shoot(browser, screenshot_dir, "desk-approvals-06-approved")

    # Before its session opens on the effective day, the beat task converts the account.
    apply_due_conversions(today=approved.effective_on, firm=northwind)
    with firm_scope(northwind):
        account = Account.objects.get(number="NO100012")
    assert account.margin_type == Account.MarginType.PORTFOLIO_MARGIN
    text = open_page(browser, f"{base}/desk/approvals/applications/{application.pk}/")
    assert "The account moved to portfolio margin on" in text

    click_through(browser, browser.find_element(By.LINK_TEXT, "Approvals"))
    click_through(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "the history"))
    text = page_text(browser)
    assert "Portfolio-margin application" in text and "Approved" in text
    assert "northwind.risk1 reviewed" in text and "Second pair of eyes: agreed." in text
    shoot(browser, screenshot_dir, "desk-approvals-07-history")
