"""The margin-call desk as the margin desk meets it, in headless Chromium against a live server
with the demo seeded once: northwind.desk logs in and sees NO100002's overdue call first on the
desk's home, opens it and its liquidation plan (the effect on each scenario, the greedy
alternative beside it), approves the plan northwind.risk1 proposed; records a securities deposit
on NO100013's deficiency; asks to extend NO100009's running call, which northwind.risk1 approves
and then records as granted by FINRA. Every page is photographed at 1366 and 390 px."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from brokerage.models import AuditEvent, Firm
from brokerage.scope import firm_scope
from margin import business_days
from margin.models import CallExtension, LiquidationPlan, MarginCall

from .walk import click_through, log_in, open_page, page_text, seed_demo, shoot

pytestmark = pytest.mark.django_db(transaction=True)



def _submit(browser, form_css: str, button_css: str = "button[type=submit]",
            **fields: str) -> str:
    """Fill the form's fields by name (dates through their value: a date input's typing
    follows the browser's locale) and press its button; the next page's main text."""
    form = browser.find_element(By.CSS_SELECTOR, form_css)
    for name, value in fields.items():
        field = form.find_element(By.NAME, name)
        if field.tag_name == "select":
            field.find_element(By.CSS_SELECTOR, f"option[value='{value}']").click()
        elif field.get_attribute("type") == "date":
            browser.execute_script("arguments[0].value = arguments[1]", field, value)
        else:
            field.clear()
            field.send_keys(value)
    click_through(browser, form.find_element(By.CSS_SELECTOR, button_css))
    return page_text(browser, "main")


def test_the_margin_desk_works_its_calls(browser, live_server, screenshot_dir, settings):
    seed_demo(settings)
    northwind = Firm.objects.get(slug="northwind")
    with firm_scope(northwind):
        overdue = MarginCall.objects.get(account__number="NO100002", kind="maintenance")
        deficiency = MarginCall.objects.get(account__number="NO100013", kind="pm_deficiency")
        running = MarginCall.objects.get(account__number="NO100009", kind="maintenance")
        plan = LiquidationPlan.objects.get(call=overdue)
    assert overdue.status == "overdue" and plan.proposed_by.username == "northwind.risk1"
    base = live_server.url

    # Home: the overdue call first, with its plan awaiting approval.
    log_in(browser, base, "northwind.desk", lands_on="/desk/")
    first = browser.find_element(By.CSS_SELECTOR, "ul.attention li")
    assert "call overdue" in first.text and "NO100002" in first.text, first.text
    assert "liquidation plan awaits approval" in first.text
    shoot(browser, screenshot_dir, "desk-calls-01-home")

    click_through(browser, first.find_element(By.TAG_NAME, "a"))
    assert browser.current_url == f"{base}/desk/calls/{overdue.pk}/"
    text = page_text(browser, "main")
    assert "Overdue" in text and "NO100002" in text and "$5,000.00" in text
    assert "Liquidation plan" in text and "Notices sent to the client" in text
    shoot(browser, screenshot_dir, "desk-calls-02-overdue-call")

    click_through(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "See the plan"))
    text = page_text(browser, "main")
    assert "Effect on each scenario" in text and "Greedy alternative" in text
    assert "After the plan" in text and "After the greedy alternative" in text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart.effect rect.bar.plan")
    assert "MSFT down 15 %" in text  # the regulatory range, in words
    shoot(browser, screenshot_dir, "desk-calls-03-plan")

    text = _submit(browser, "section.decide-plan form", "button[value=approve]",
                   reason="the client did not answer")
    assert "approved" in text and "liquidation pending" in text, text
    with firm_scope(northwind):
        plan.refresh_from_db()
        overdue.refresh_from_db()
    assert (plan.status, plan.decided_by.username) == ("approved", "northwind.desk")
    assert overdue.status == "liquidation_pending"
    shoot(browser, screenshot_dir, "desk-calls-04-plan-approved")

    # The list: by due date, NO100002 first; then a securities deposit on NO100013's call.
    text = open_page(browser, f"{base}/desk/calls/")
    assert text.index("NO100002") < text.index("NO100013") < text.index("NO100009")
    assert browser.find_elements(By.CSS_SELECTOR, "table.calls-list svg.spark")
    shoot(browser, screenshot_dir, "desk-calls-05-list")
    open_page(browser, f"{base}/desk/calls/{deficiency.pk}/")
    text = _submit(browser, f"form[action='/desk/calls/{deficiency.pk}/satisfactions/']",
                   manner="securities", amount="10000", reference="DTC 4471 (IBM shares)")
    assert "Securities deposit of $10,000.00 recorded" in text, text
    assert "DTC 4471" in text
    with firm_scope(northwind):
        deficiency.refresh_from_db()
    assert deficiency.status == "partially_met"
    shoot(browser, screenshot_dir, "desk-calls-06-deposit")

    # An extension the desk asks for and a risk officer approves.
    new_due = business_days.add_business_days(running.due_date, 3, running.calendar)
    open_page(browser, f"{base}/desk/calls/{running.pk}/")
    text = _submit(browser, "form.request-extension", new_due_date=new_due.isoformat(),
                   reason_code="TRAVEL", reason="client abroad; wire promised on return")
    assert "3 business days" in text and "A second person decides it" in text, text
    shoot(browser, screenshot_dir, "desk-calls-07-extension-asked")

    log_in(browser, base, "northwind.risk1", lands_on="/desk/")
    item = next(li for li in browser.find_elements(By.CSS_SELECTOR, "ul.attention li")
                if "extension request awaiting approval" in li.text)
    click_through(browser, item.find_element(By.TAG_NAME, "a"))
    assert browser.current_url == f"{base}/desk/calls/{running.pk}/"
    text = _submit(browser, "form.decide-extension", "button[value=approve]",
                   reason="a fair ask")
    assert "Requested of the examining authority" in text, text
    shoot(browser, screenshot_dir, "desk-calls-08-extension-approved")

    # FINRA's answer, recorded by whoever hears back (here the risk officer still logged in)
    text = _submit(browser, f"form[action='/desk/calls/{running.pk}/extension/outcome/']",
                   "button[value=granted]", filing_id="REX-2026-0042")
    assert f"granted, due {new_due:%Y-%m-%d}" in text, text
    with firm_scope(northwind):
        running.refresh_from_db()
        extension = CallExtension.objects.get(call=running)
    assert (running.status, running.due_date) == ("extended", new_due)
    assert (extension.requested_by.username, extension.decided_by.username) == (
        "northwind.desk", "northwind.risk1")
    shoot(browser, screenshot_dir, "desk-calls-09-extension-granted")
    for event in ("liquidation_plan.approved", "margin_call.satisfied",
                  "call_extension.approved", "call_extension.granted"):
        assert AuditEvent.objects.filter(firm=northwind, event_type=event).exists(), event
