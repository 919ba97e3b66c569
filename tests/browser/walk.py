"""The browser walks' shared steps: seed the demo, log in through the real login page (and the
code step for staff), click and wait for the next page, read a page, run a what-if, photograph
it at each width."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from brokerage.passwords import DEMO_PASSWORD
from brokerage.second_factor import current_code

from .conftest import WIDTHS


def seed_demo(settings) -> None:
    """The demo's firms, people and story, once per walk (the walk's one test function)."""
    settings.DEMO = True
    call_command("seed_demo", stdout=StringIO())


def page_text(browser, tag: str = "body") -> str:
    """What the page says: the whole body, or only its ``main``."""
    return browser.find_element(By.TAG_NAME, tag).text


def shoot(browser, folder: Path, name: str) -> None:
    """The whole page at each width (the window grown to the page's height)."""
    for label, width in WIDTHS.items():
        browser.set_window_size(width, 900)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(max(int(height) + 120, 600), 8000))
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        ) or label == "desktop" or browser.find_elements(By.CSS_SELECTOR, ".scroll"), \
            f"{name} is wider than a {width} px phone"
        browser.save_screenshot(str(folder / f"{name}-{label}-{width}.png"))
    browser.set_window_size(WIDTHS["desktop"], 900)


def click_through(browser, element) -> None:
    """Click a link or submit button and wait for the next page (a click does not wait)."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()

    def left(driver) -> bool:
        # The old page is gone once touching its root fails: Chromium says so either as a stale
        # element or, mid-navigation, as "Node ... does not belong to the document".
        try:
            page.is_enabled()
        except WebDriverException:
            return driver.execute_script("return document.readyState") == "complete"
        return False

    WebDriverWait(browser, 60).until(left)


def open_page(browser, url: str) -> str:
    browser.get(url)
    return browser.find_element(By.TAG_NAME, "body").text


def log_in(browser, base: str, username: str, *, lands_on: str = "/portal/") -> None:
    """Log in at the login page with the demo password; staff then type their authenticator's
    current code at the code step (the demo's TOTP device). Lands on `lands_on` (a staff login
    lands on the desk)."""
    browser.delete_all_cookies()
    browser.get(f"{base}/accounts/login/?next=/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(DEMO_PASSWORD)
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    if "/accounts/otp/" in browser.current_url:
        user = get_user_model().objects.get(username=username)
        device = TOTPDevice.objects.get(user=user, confirmed=True)
        browser.find_element(By.ID, "id_otp_token").send_keys(current_code(device))
        click_through(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert browser.current_url == f"{base}{lands_on}", browser.current_url


def what_if_closing(browser, position: str) -> dict[str, list[str]]:
    """On a what-if page (the portal's or the desk's: one form, templates/web/_what_if.html),
    close a position and read the result: each row's heading and its cells (now, after)."""
    Select(browser.find_element(By.ID, "close")).select_by_value(position)
    click_through(browser, browser.find_element(By.CSS_SELECTOR,
                                                "form.what-if button[type=submit]"))
    return {r.find_element(By.TAG_NAME, "th").text: [c.text for c in
                                                     r.find_elements(By.TAG_NAME, "td")]
            for r in browser.find_elements(By.CSS_SELECTOR, "table.what-if-result tbody tr")}
