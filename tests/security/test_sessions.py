"""Issue 16: staff sessions end after 30 minutes idle and 12 hours from the login; clients'
after a configurable idle time; every session of a user ends when their password changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from freezegun import freeze_time

from brokerage.tenancy import set_firm_user_password
from tests.factories import log_in

pytestmark = pytest.mark.django_db

T0 = "2026-03-02 14:00:00"


def _in(client, url: str) -> bool:
    """Whether the session still opens the page (not sent to a login)."""
    page = client.get(url)
    assert page.status_code in (200, 302), page.status_code
    return page.status_code == 200


def test_a_staff_session_ends_after_thirty_idle_minutes(client, world):
    with freeze_time(T0) as clock:
        log_in(client, world.a.users["risk_officer"])
        clock.tick(timedelta(minutes=29))
        assert _in(client, "/admin/")
        clock.tick(timedelta(minutes=29))  # 58 minutes in, 29 idle
        assert _in(client, "/admin/")
        clock.tick(timedelta(minutes=30, seconds=1))
        page = client.get("/admin/")
        assert page.status_code == 302 and page.url.startswith("/admin/login/")
        assert client.get("/api/v1/accounts/").status_code == 401
        assert "_auth_user_id" not in client.session


def test_a_staff_session_ends_twelve_hours_after_the_login_however_busy(client, world):
    with freeze_time(T0) as clock:
        log_in(client, world.a.users["margin_desk"])
        for _ in range(35):  # every 20 minutes for 11 h 40 min: never idle for long
            clock.tick(timedelta(minutes=20))
            assert _in(client, "/admin/")
        clock.tick(timedelta(minutes=19))
        assert _in(client, "/admin/")  # 11 h 59 min
        clock.tick(timedelta(minutes=2))
        assert not _in(client, "/admin/")  # 12 h 01 min, 2 minutes idle


def test_a_client_session_ends_after_the_configured_idle_time(client, world, settings):
    settings.CLIENT_SESSION_IDLE_S = 10 * 60
    with freeze_time(T0) as clock:
        log_in(client, world.a.users["client"])
        clock.tick(timedelta(minutes=9))
        assert _in(client, "/portal/")
        clock.tick(timedelta(minutes=10, seconds=1))
        page = client.get("/portal/")
        assert page.status_code == 302 and page.url.startswith("/accounts/login/")


def test_a_password_change_ends_every_session_of_the_user(client, world):
    desk = world.a.users["margin_desk"]
    other = Client()
    log_in(client, desk)
    log_in(other, desk)
    assert _in(client, "/admin/") and _in(other, "/admin/")
    set_firm_user_password(firm=world.firm_a, user=desk, actor=world.a.users["firm_admin"],
                           password="a-brand-new-long-passphrase")
    for session in (client, other):
        assert not _in(session, "/admin/")
        assert session.get("/api/v1/accounts/").status_code == 401
