"""The firm admin's section of the desk in headless Chromium, the demo seeded once:
northwind.admin invites a new risk officer, who sets a password through the e-mailed link,
logs in and must set up an authenticator; the admin issues an API token (its secret shown once)
that then works against /api/v1/ with an Authorization header, and revokes it. Each page is
photographed at 1366 and 390 px."""

from __future__ import annotations

import json
import re
import time
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from brokerage import audit
from brokerage.models import ApiToken, Firm
from brokerage.second_factor import current_code

from .walk import click_through, log_in, open_page, page_text, seed_demo, shoot

pytestmark = pytest.mark.django_db(transaction=True)
NEW_PASSWORD = "rita-chooses-this-2026"


def _api(url: str, secret: str) -> tuple[int, dict]:
    request = Request(url, headers={"Authorization": f"Bearer {secret}",
                                    "Accept": "application/json"})
    try:
        with urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _next_code_step(username: str) -> None:
    """Wait until the user's authenticator shows a code not yet used: django-otp accepts each
    time step's code once (a second login within the same 30 s would be refused). The step is
    the device's own, drift included (``current_code`` types it): a code typed across a step
    boundary leaves a drift of -1 (OTP_TOTP_SYNC), and a wait on the bare clock step then ended
    one step early and typed the code already used."""
    device = TOTPDevice.objects.get(user__username=username, confirmed=True)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    while True:
        totp.time = time.time()
        if totp.t() > device.last_t:
            return
        time.sleep(1)


def _submit(browser, form_css: str = "main form.staff-form") -> None:
    click_through(browser, browser.find_element(By.CSS_SELECTOR,
                                                f"{form_css} button[type=submit]"))


def test_the_firm_admin_invites_a_user_and_issues_a_token(browser, live_server, screenshot_dir,
                                                          settings):
    seed_demo(settings)
    northwind = Firm.objects.get(slug="northwind")
    base = live_server.url

    log_in(browser, base, "northwind.admin", lands_on="/desk/")
    click_through(browser, browser.find_element(By.LINK_TEXT, "Staff"))
    text = page_text(browser, "main")
    assert "The firm's users" in text and "northwind.risk1" in text and "bluewater" not in text
    assert "Enrolled" in text  # the demo's staff carry their authenticators
    shoot(browser, screenshot_dir, "staff-01-users")

    # Invite a new risk officer: the e-mail carries the link that sets the password.
    click_through(browser, browser.find_element(By.LINK_TEXT, "Invite a user"))
    for field, value in (("id_first_name", "Rita"), ("id_last_name", "Okafor"),
                         ("id_username", "northwind.risk3"),
                         ("id_email", "rita.okafor@demo.example")):
        browser.find_element(By.ID, field).send_keys(value)
    Select(browser.find_element(By.ID, "id_role")).select_by_visible_text("Risk officer")
    shoot(browser, screenshot_dir, "staff-02-invite")
    _submit(browser)
    text = page_text(browser, "main")
    assert "Invited northwind.risk3 as Risk officer" in text and "User invited" in text
    shoot(browser, screenshot_dir, "staff-03-invited")
    # (the seed mailed its call notices before: the invitation is the one to Rita)
    (invitation,) = [m for m in mail.outbox if m.to == ["rita.okafor@demo.example"]]
    link = re.search(r"(http://\S+/accounts/invitation/\S+/)", invitation.body).group(1)
    assert link.startswith(base)

    browser.delete_all_cookies()
    browser.get(link)
    assert "Choose the password for your login northwind.risk3" in open_page(browser, link)
    browser.find_element(By.ID, "id_new_password1").send_keys(NEW_PASSWORD)
    browser.find_element(By.ID, "id_new_password2").send_keys(NEW_PASSWORD)
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert "Your password is set" in page_text(browser)
    shoot(browser, screenshot_dir, "staff-04-password-set")
    click_through(browser, browser.find_element(By.LINK_TEXT, "Log in"))
    browser.find_element(By.ID, "id_username").send_keys("northwind.risk3")
    browser.find_element(By.ID, "id_password").send_keys(NEW_PASSWORD)
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    # A staff role must set up its second factor before any desk page.
    assert "/accounts/otp/enrol/" in browser.current_url, browser.current_url
    shoot(browser, screenshot_dir, "staff-05-must-enrol")
    rita = get_user_model().objects.get(username="northwind.risk3")
    device = TOTPDevice.objects.get(user=rita, confirmed=False)
    browser.find_element(By.ID, "id_otp_token").send_keys(current_code(device))
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert "recovery" in page_text(browser).lower()
    assert open_page(browser, f"{base}/desk/") and browser.current_url == f"{base}/desk/"
    assert "Risk officer" in browser.find_element(By.TAG_NAME, "header").text
    trail = audit.events_for(northwind).filter(object_id=str(rita.pk))
    assert {"user.created", "user.invited", "user.invitation_accepted",
            "second_factor.enrolled"} <= set(trail.values_list("event_type", flat=True))

    # The admin issues a read-only token acting as the new risk officer.
    _next_code_step("northwind.admin")
    log_in(browser, base, "northwind.admin", lands_on="/desk/")
    open_page(browser, f"{base}/desk/staff/")
    assert "Enrolled" in browser.find_element(By.XPATH,
                                              "//tr[td/a[text()='northwind.risk3']]").text
    click_through(browser, browser.find_element(By.LINK_TEXT, "API tokens"))
    Select(browser.find_element(By.ID, "id_user")).select_by_value("northwind.risk3")
    browser.find_element(By.ID, "id_name").send_keys("nightly risk report")
    browser.find_element(By.ID, "id_read_only").click()
    browser.find_element(By.ID, "id_expires_days").send_keys("90")
    _submit(browser)
    secret = browser.find_element(By.ID, "token-secret").text
    assert secret.startswith("pmt_") and "shown this once" in browser.page_source
    shoot(browser, screenshot_dir, "staff-06-token-secret")
    issued_page = browser.current_url
    browser.get(issued_page)  # never again
    assert secret not in browser.page_source and "cannot be shown again" in browser.page_source

    status, body = _api(f"{base}/api/v1/firm", secret)
    assert status == 200 and body["slug"] == "northwind", body
    status, body = _api(f"{base}/api/v1/", secret)
    assert status == 200 and f"{base}/api/v1/firm" in body.values()

    click_through(browser, browser.find_element(By.LINK_TEXT, "Back to the firm's tokens"))
    token = ApiToken.cross_firm.for_compliance(reason="the walk's own token").get(
        user=rita)
    row = browser.find_element(By.XPATH, f"//tr[td/code[starts-with(text(), '{token.prefix}')]]")
    assert "Read-only" in row.text and "northwind.risk3" in row.text and "Live" in row.text
    assert "nightly risk report" in row.text
    assert token.last_used_at is not None and "never" not in row.text.split("Read-only")[1][:40]
    shoot(browser, screenshot_dir, "staff-07-tokens")
    click_through(browser, row.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    text = page_text(browser, "main")
    assert f"Token {token.prefix}… (nightly risk report) of northwind.risk3 is revoked" in text
    row = browser.find_element(By.XPATH, f"//tr[td/code[starts-with(text(), '{token.prefix}')]]")
    assert "Revoked" in row.text and "by northwind.admin" in row.text
    shoot(browser, screenshot_dir, "staff-08-revoked")
    status, body = _api(f"{base}/api/v1/firm", secret)
    assert status == 401, body
    events = set(audit.events_for(northwind).filter(object_id=str(token.pk)).values_list(
        "event_type", flat=True))
    assert {"api_token.created", "api_token.revoked"} <= events

    # Another firm's user is a 404 on the desk.
    bluewater_admin = get_user_model().objects.get(username="bluewater.admin")
    browser.get(f"{base}/desk/staff/users/{bluewater_admin.pk}/")
    assert "bluewater.admin" not in page_text(browser)
    assert "not found" in browser.page_source.lower()
