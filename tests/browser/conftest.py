"""The browser layer: headless Chromium (Debian's /usr/bin/chromium and /usr/bin/chromedriver)
driven by Selenium against pytest-django's live server. A missing browser fails the run: the
layer is never skipped (.ci/run installs the packages)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTHS = {"desktop": 1366, "phone": 390}
_screenshots: dict[str, Path] = {}


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    folder = Path(os.environ.get("PORTAL_SCREENSHOTS")
                  or f"/tmp/portal-screenshots-{time.strftime('%Y%m%d-%H%M%S')}")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _screenshots["dir"] = folder
    return folder


@pytest.fixture(scope="session")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"tests/browser needs {' and '.join(missing)}: apt-get install -y chromium "
                    "chromium-driver (.ci/run does it)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--hide-scrollbars", f"--window-size={WIDTHS['desktop']},900",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    folder = _screenshots.get("dir")
    if folder is not None:
        shots = sorted(folder.glob("*.png"))
        terminalreporter.write_sep("-", "portal screenshots")
        terminalreporter.write_line(f"{len(shots)} screenshots in {folder}")


@pytest.fixture(autouse=True)
def _live_server_requests_close_their_connections():
    # The live server answers each request on its own thread; a persistent connection
    # (CONN_MAX_AGE) left open there would keep the test database from being dropped.
    from django.db import connections

    default = connections.settings["default"]
    saved = default.get("CONN_MAX_AGE")
    default["CONN_MAX_AGE"] = 0
    yield
    default["CONN_MAX_AGE"] = saved
