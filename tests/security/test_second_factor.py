"""Issue 16: staff need a second factor. The login stays at /accounts/login/ (`username`,
`password`); the code is the next step; staff enrol at their first login and get recovery codes;
until the code is verified, a staff session gets no desk page, no admin page and no API call
(a Bearer token is not asked for one). Clients may enrol, and are then asked too."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from freezegun import freeze_time

from brokerage import audit
from brokerage.models import ApiToken
from brokerage.second_factor import current_code, issue_authenticator
from brokerage.tokens import create_api_token
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db

T0 = "2026-03-02 15:00:00"


def _password_step(client, username: str, next_url: str = "/admin/"):
    page = client.post(f"/accounts/login/?next={next_url}",
                       {"username": username, "password": PASSWORD})
    assert page.status_code == 302 and page.url == next_url
    return client.get(next_url)


def test_a_staff_login_enrols_at_first_and_shows_recovery_codes(client, world):
    with freeze_time(T0) as clock:
        step = _password_step(client, "alpha_risk_officer")
        assert step.status_code == 302 and step.url == "/accounts/otp/enrol/?next=%2Fadmin%2F"
        page = client.get(step.url)
        device = TOTPDevice.objects.get(user=world.a.users["risk_officer"])
        assert not device.confirmed
        secret = re.search(r'class="secret">(\w+)<', page.content.decode()).group(1)
        assert f"secret={secret}" in device.config_url
        assert client.get("/admin/").status_code == 302  # still owes its code

        wrong = client.post(step.url, {"otp_token": "000000", "next": "/admin/"})
        assert b"does not match" in wrong.content
        device.refresh_from_db()
        assert not device.confirmed

        clock.tick(timedelta(seconds=31))
        done = client.post(step.url, {"otp_token": current_code(device), "next": "/admin/"})
        codes = re.findall(r"<li>(\w+)</li>", done.content.decode())
        assert len(codes) == 10 and len(set(codes)) == 10
        assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    (enrolled,) = audit.events_for(world.firm_a).filter(event_type="second_factor.enrolled")
    assert enrolled.actor == world.a.users["risk_officer"]


def test_an_enrolled_staff_member_is_asked_the_code_after_the_password(client, world):
    device = issue_authenticator(user=world.a.users["compliance_officer"])
    with freeze_time(T0) as clock:
        step = _password_step(client, "alpha_compliance_officer", "/admin/brokerage/auditevent/")
        assert step.url == "/accounts/otp/?next=%2Fadmin%2Fbrokerage%2Fauditevent%2F"
        assert b'name="otp_token"' in client.get(step.url).content
        code = current_code(device)
        done = client.post(step.url, {"otp_token": code,
                                      "next": "/admin/brokerage/auditevent/"})
        assert done.status_code == 302 and done.url == "/admin/brokerage/auditevent/"
        assert client.get(done.url).status_code == 200

        # A code is good once: the same one in a new session is refused.
        other = client_class()
        _password_step(other, "alpha_compliance_officer")
        again = other.post("/accounts/otp/", {"otp_token": code, "next": "/admin/"})
        assert again.status_code == 200 and b"does not match" in again.content
        clock.tick(timedelta(minutes=1))
    assert audit.events_for(world.firm_a).filter(event_type="second_factor.failed").count() == 1


def client_class():
    from django.test import Client

    return Client()


def test_a_recovery_code_logs_in_once(client, world):
    user = world.a.users["margin_desk"]
    issue_authenticator(user=user)
    with freeze_time(T0):
        from brokerage.second_factor import _new_recovery_codes

        codes = _new_recovery_codes(user)
    _password_step(client, "alpha_margin_desk")
    done = client.post("/accounts/otp/", {"otp_token": codes[3].upper(), "next": "/admin/"})
    assert done.status_code == 302 and client.get("/admin/").status_code == 200
    assert StaticToken.objects.filter(device__user=user).count() == 9
    (used,) = audit.events_for(world.firm_a).filter(
        event_type="second_factor.recovery_code_used")
    assert used.after["recovery_codes_left"] == 9

    again = client_class()
    _password_step(again, "alpha_margin_desk")
    refused = again.post("/accounts/otp/", {"otp_token": codes[3], "next": "/admin/"})
    assert b"does not match" in refused.content
    assert again.get("/admin/").status_code == 302


STAFF_PAGES = ["/", "/admin/", "/admin/accounts/account/", "/admin/brokerage/auditevent/",
               "/portal/"]


@pytest.mark.parametrize("role", ["firm_admin", "risk_officer", "margin_desk",
                                  "compliance_officer"])
def test_every_staff_door_refuses_a_session_without_its_code(client, world, role):
    user = world.a.users[role]
    issue_authenticator(user=user)
    assert log_in(client, user, password=PASSWORD, second_factor=False)
    for url in STAFF_PAGES:
        page = client.get(url)
        assert page.status_code == 302 and page.url.startswith("/accounts/otp/?next="), url
    api = client.get("/api/v1/accounts/")
    assert api.status_code == 403
    assert api.json()["errors"][0]["code"] == "second_factor_required"
    # A write through the session is refused before it does anything.
    tokens = ApiToken.cross_firm.for_compliance(reason="test: nothing written")
    before = tokens.count()
    post = client.post("/api/v1/tokens/", {"user": user.username}, content_type="application/json")
    assert post.status_code == 403 and tokens.count() == before

    # A token is the non-interactive path: no code asked.
    token = create_api_token(user=user, actor=None).secret
    bearer = client_class().get("/api/v1/accounts/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bearer.status_code == 200

    # With the code verified, every door opens.
    assert log_in(client, user)
    assert client.get("/admin/").status_code == 200
    assert client.get("/api/v1/accounts/").status_code == 200


def test_a_staff_member_without_an_authenticator_is_sent_to_enrol(client, world):
    log_in(client, world.a.users["firm_admin"], second_factor=False)
    page = client.get("/admin/")
    assert page.url == "/accounts/otp/enrol/?next=%2Fadmin%2F"
    assert client.get("/api/v1/accounts/").status_code == 403


def test_a_client_needs_no_code_until_they_enrol(client, world):
    user = world.a.users["client"]
    assert log_in(client, user, password=PASSWORD)
    assert client.get("/portal/").status_code == 200
    assert client.get("/api/v1/accounts/").status_code == 200
    issue_authenticator(user=user, actor=None)
    fresh = client_class()
    assert log_in(fresh, user, password=PASSWORD, second_factor=False)
    assert fresh.get("/portal/").url == "/accounts/otp/?next=%2Fportal%2F"
    assert fresh.get("/api/v1/accounts/").status_code == 403


def test_a_client_may_enrol_from_the_portal(client, world):
    user = world.a.users["client"]
    log_in(client, user)
    with freeze_time(T0):
        page = client.get("/accounts/otp/enrol/")
        assert b"You may add a second factor" in page.content
        device = TOTPDevice.objects.get(user=user)
        done = client.post("/accounts/otp/enrol/", {"otp_token": current_code(device)})
        assert len(re.findall(r"<li>(\w+)</li>", done.content.decode())) == 10
        assert client.get("/portal/").status_code == 200


def test_the_demo_code_command_prints_the_code_the_authenticator_shows(settings, world):
    device = issue_authenticator(user=world.a.users["risk_officer"])
    with pytest.raises(CommandError, match="demo settings"):
        call_command("demo_otp_code", "alpha_risk_officer", stdout=StringIO())
    settings.DEMO = True
    with freeze_time(T0):
        out = StringIO()
        call_command("demo_otp_code", "alpha_risk_officer", stdout=out)
        assert re.fullmatch(r"\d{6}\n", out.getvalue())
        assert device.verify_token(out.getvalue().strip())
    with pytest.raises(CommandError, match="no authenticator"):
        call_command("demo_otp_code", "alpha_client", stdout=StringIO())
