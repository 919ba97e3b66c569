"""Issue 16: production is what the settings give when DJANGO_DEBUG is unset: Secure and
HttpOnly cookies, HSTS, the SSL redirect (behind DJANGO_SECURE_SSL_REDIRECT), a CSP without
inline scripts, no traceback pages; `manage.py check --deploy` reports nothing.

The settings are read in fresh processes without DJANGO_DEBUG (this one runs under the test
settings, DJANGO_DEBUG=1); the headers and cookies are then checked on real requests served
with exactly those values."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.factories import PASSWORD

REPO = Path(__file__).resolve().parents[2]
SECURITY_SETTINGS = [
    "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
    "CSRF_COOKIE_HTTPONLY", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD", "SECURE_SSL_REDIRECT", "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY", "X_FRAME_OPTIONS", "CONTENT_SECURITY_POLICY",
]
DUMP = ("import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{k: getattr(settings, k) for k in {SECURITY_SETTINGS!r}}}))")


def _production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_DEBUG", "PMARGIN_DEMO", "DATABASE_URL")}
    # production refuses to start without its secrets: the session's and the audit trail's
    env.update(DJANGO_SETTINGS_MODULE="brokerage.settings",
               DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
               AUDIT_HMAC_KEY=secrets.token_hex(32), AUDIT_SIGNING_KEY=secrets.token_hex(32),
               **extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def production() -> dict:
    done = _run(["-c", DUMP], _production_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_check_deploy_reports_nothing_under_the_production_settings():
    done = _run(["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], _production_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_production_is_the_default_and_needs_its_secret(production):
    assert production["DEBUG"] is False and production["SECURE_SSL_REDIRECT"] is True
    assert production["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    env = _production_env()
    del env["DJANGO_SECRET_KEY"]
    done = _run(["-c", DUMP], env)
    assert done.returncode != 0 and "DJANGO_SECRET_KEY must be set" in done.stderr
    behind_a_proxy = _run(["-c", DUMP], _production_env(DJANGO_SECURE_SSL_REDIRECT="0"))
    assert json.loads(behind_a_proxy.stdout)["SECURE_SSL_REDIRECT"] is False


@pytest.mark.django_db
def test_headers_and_cookies_under_the_production_settings(production, settings, world):
    for name, value in production.items():
        setattr(settings, name, value)
    browser = Client()
    plain = browser.get("/accounts/login/")
    assert plain.status_code == 301 and plain.url == "https://testserver/accounts/login/"

    page = browser.get("/accounts/login/", secure=True)
    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csp = page["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Lax"

    login = browser.post("/accounts/login/", {"username": "alpha_client", "password": PASSWORD,
                                              "csrfmiddlewaretoken": csrf.value}, secure=True)
    assert login.status_code == 302
    session = login.cookies["sessionid"]
    assert session["secure"] and session["httponly"]
    assert int(session["max-age"]) == 12 * 3600
