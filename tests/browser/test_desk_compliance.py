"""Compliance at the desk in headless Chromium, on the seeded demo: northwind.compliance sees
the day's trail waiting on the home page, searches the trail for today's events (the details
open as a key/value list), exports today's trail as CSV and downloads the file and its manifest
(with the browser's session: they match, and the pair verifies offline), then verifies the
chain and sees it verified beside its latest checkpoint. Each page photographed at 1366 and
390 px."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from django.conf import settings as django_settings
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from brokerage import audit
from brokerage.audit_keys import public_key_pem
from brokerage.export_check import check_export, load_public_key
from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.models import MarginCall

from .walk import click_through, log_in, open_page, page_text, seed_demo, shoot

pytestmark = pytest.mark.django_db(transaction=True)



def test_compliance_searches_exports_and_verifies_the_trail(browser, live_server,
                                                            screenshot_dir, settings):
    seed_demo(settings)
    northwind = Firm.objects.get(slug="northwind")
    base = live_server.url

    log_in(browser, base, "northwind.compliance", lands_on="/desk/")
    text = page_text(browser)
    assert "Northwind Securities" in text and "not verified today" in text
    shoot(browser, screenshot_dir, "compliance-01-home")

    click_through(browser, browser.find_element(By.LINK_TEXT, "Compliance"))
    text = page_text(browser)
    assert "Daily margin records" in text and "has not been verified yet" in text
    shoot(browser, screenshot_dir, "compliance-02-overview")

    # Today's events: the firm's own, newest first, in words; details as a key/value list.
    click_through(browser, browser.find_element(By.LINK_TEXT, "Today's events"))
    today = timezone.localdate().isoformat()
    assert browser.find_element(By.ID, "id_since").get_attribute("value") == today
    ours = audit.events_for(northwind).count()
    text = page_text(browser)
    assert f"{ours} events; page 1 of" in text
    assert "Staff login" in text and "User northwind.compliance" in text  # the newest: ours
    assert "Bluewater" not in text and "BL1000" not in text
    # Narrowed to one kind of event with the form: the calls, each named with its account.
    Select(browser.find_element(By.ID, "id_event_type")).select_by_visible_text(
        "Margin call issued")
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form.trail-search button"))
    with firm_scope(northwind):
        call = MarginCall.objects.filter(account__number="NO100013").order_by("pk").first()
    text = page_text(browser)
    issued = audit.events_for(northwind).filter(event_type="margin_call.issued").count()
    assert f"{issued} event{'s' if issued != 1 else ''}, newest first" in text
    table = browser.find_element(By.CSS_SELECTOR, "table.trail").text
    assert f"Margin call #{call.pk} (NO100013)" in table and "Staff login" not in table
    first = browser.find_element(By.CSS_SELECTOR, "table.trail details")
    first.find_element(By.TAG_NAME, "summary").click()
    assert first.find_element(By.CSS_SELECTOR, "dl.kv dt").is_displayed()
    shoot(browser, screenshot_dir, "compliance-03-trail-today")

    # Export today's trail as CSV: the export page links the file and its manifest.
    click_through(browser, browser.find_element(By.LINK_TEXT, "Export"))
    for name in ("since", "until"):
        field = browser.find_element(By.ID, f"id_{name}")
        browser.execute_script("arguments[0].value = arguments[1]", field, today)
    browser.find_element(By.CSS_SELECTOR, "input[name=file_format][value=csv]").click()
    shoot(browser, screenshot_dir, "compliance-04-export-form")
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form.export-form button"))
    assert "/desk/compliance/exports/" in browser.current_url
    text = page_text(browser)
    assert "Verified" in text and "Download audit-northwind-" in text
    shoot(browser, screenshot_dir, "compliance-05-export")

    # Download both with the browser's own session: the file is the manifest's.
    session = requests.Session()
    cookie = browser.get_cookie(django_settings.SESSION_COOKIE_NAME)
    session.cookies.set(cookie["name"], cookie["value"])
    file_link = browser.find_element(By.PARTIAL_LINK_TEXT, "Download audit-northwind-")
    manifest_link = browser.find_element(By.PARTIAL_LINK_TEXT, "Download its manifest")
    exported = session.get(file_link.get_attribute("href"), timeout=60)
    manifest = session.get(manifest_link.get_attribute("href"), timeout=60)
    assert exported.status_code == manifest.status_code == 200
    signed = json.loads(manifest.content)
    assert hashlib.sha256(exported.content).hexdigest() == signed["file"]["sha256"]
    assert check_export(exported.content, signed, load_public_key(public_key_pem())) == []
    lines = exported.content.decode().splitlines()
    assert lines[0].startswith("chain,seq,firm") and len(lines) - 1 == signed["file"]["rows"] > 0
    assert {line.split(",")[0] for line in lines[1:]} == {audit.chain_key(northwind)}
    assert signed["range"]["since"] == signed["range"]["until"] == today
    assert signed["exported_by"]["user"] == "northwind.compliance"

    # Verify the chain: verified up to the head, beside the checkpoint the export took.
    click_through(browser, browser.find_element(By.LINK_TEXT, "Chain verification"))
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "main form button"))
    head = audit.events_for(northwind).order_by("-seq").first()
    assert head.event_type == audit.VERIFIED and head.after["verified"] is True
    through = head.seq - 1
    text = page_text(browser)
    assert f"Verified {through:,} events, #1 to #{through:,}" in text
    assert "Latest signed checkpoint" in text and "Recent verifications" in text
    shoot(browser, screenshot_dir, "compliance-06-chain-verified")

    # The home page no longer asks.
    assert "not verified today" not in open_page(browser, f"{base}/desk/")
