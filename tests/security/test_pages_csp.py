"""Issue 16: every page complies with the Content-Security-Policy: no inline <script>, no
inline event handler, no style attribute; our styles come from static files. Walked as a
verified firm admin (every desk list, add form and a change form), a client (the portal) and
someone logging in (each login step, the lockout page)."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice
from freezegun import freeze_time

from brokerage.scope import firm_scope
from brokerage.second_factor import current_code
from tests.factories import PASSWORD, log_in, value_each_firms_account

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>",
                           re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle=", re.I)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+=", re.I)
STYLE_ELEMENT = re.compile(r"<style\b", re.I)


def _complies(page, url: str) -> None:
    assert page.status_code == 200, (url, page.status_code)
    assert "script-src 'self'" in page["Content-Security-Policy"], url
    html = page.content.decode()
    for rule in (INLINE_SCRIPT, STYLE_ATTRIBUTE, EVENT_HANDLER, STYLE_ELEMENT):
        found = rule.search(html)
        assert found is None, f"{url}: {html[max(found.start() - 80, 0):found.end() + 80]}"


def test_every_desk_page_complies(client, world):
    value_each_firms_account(world)
    log_in(client, world.a.users["firm_admin"])
    urls = ["/admin/"]
    request = client.get("/admin/").wsgi_request
    with firm_scope(world.firm_a):
        for model, model_admin in admin.site._registry.items():
            name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
            if not model_admin.has_view_permission(request):
                continue
            urls.append(reverse(f"{name}_changelist"))
            if model_admin.has_add_permission(request):
                urls.append(reverse(f"{name}_add"))
            first = model_admin.get_queryset(request).order_by("pk").first()
            if first is not None:
                urls.append(reverse(f"{name}_change", args=[first.pk]))
    urls.append(reverse("admin:auth_user_set_password", args=[world.a.users["client"].pk]))
    checked = 0
    for url in urls:
        _complies(client.get(url), url)
        checked += 1
    assert checked >= 20


def test_the_portal_complies(client, world):
    value_each_firms_account(world)
    log_in(client, world.a.users["client"])
    for url in ("/portal/", "/portal/accounts/ALPHA-0001/"):
        _complies(client.get(url), url)


def test_each_login_step_complies(client, world):
    for door in ("/accounts/login/", "/admin/login/"):
        _complies(client.get(door), door)
    with freeze_time("2026-03-02 15:00:00"):
        log_in(client, world.a.users["risk_officer"], password=PASSWORD, second_factor=False)
        _complies(client.get("/accounts/otp/enrol/"), "enrol")
        device = TOTPDevice.objects.get(user=world.a.users["risk_officer"])
        _complies(client.post("/accounts/otp/enrol/", {"otp_token": current_code(device)}),
                  "recovery codes")
        client.logout()
        log_in(client, world.a.users["risk_officer"], password=PASSWORD, second_factor=False)
        _complies(client.get("/accounts/otp/"), "/accounts/otp/")
    client.logout()
    for _ in range(5):
        locked = client.post("/accounts/login/", {"username": "alpha_client", "password": "x"})
    assert locked.status_code == 429
    locked.status_code = 200  # the lockout page's content is what is checked here
    _complies(locked, "lockout")
