"""Issue 16: failed logins lock a user (and an address) out at every door, each failure and the
lockout are on the firm's audit chain (the platform chain for a name no firm knows), and a firm
admin unlocks one of the firm's users, audited."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt

from brokerage import audit, logins
from brokerage.errors import NotFound, NotPermitted
from brokerage.models import AuditEvent
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db

DOORS = ["/accounts/login/", "/admin/login/"]
WRONG = "not-the-password-at-all"


def _try(client, door: str, username: str, password: str, address: str = "10.1.1.1"):
    return client.post(door, {"username": username, "password": password},
                       REMOTE_ADDR=address)


def _events(firm, event_type: str) -> list[AuditEvent]:
    return list(audit.events_for(firm).filter(event_type=event_type))


@pytest.mark.parametrize("door", DOORS)
def test_five_wrong_passwords_lock_the_user_out_and_the_trail_says_so(client, world, door):
    for attempt in range(1, 5):
        page = _try(client, door, "alpha_margin_desk", WRONG)
        assert page.status_code == 200, attempt  # the form again, with its error
    locked = _try(client, door, "alpha_margin_desk", WRONG)
    assert locked.status_code == 429 and b"locked out" in locked.content
    # The right password no longer opens anything: refused before it is checked.
    refused = _try(client, door, "alpha_margin_desk", PASSWORD)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session

    failed = _events(world.firm_a, "login.failed")
    assert [e.after["failures"] for e in failed] == [1, 2, 3, 4, 5]
    assert {e.after["username"] for e in failed} == {"alpha_margin_desk"}
    assert {e.after["door"] for e in failed} == {door} and failed[0].after["ip"] == "10.1.1.1"
    assert failed[0].object_id == str(world.a.users["margin_desk"].pk)
    assert failed[0].actor is None and failed[0].actor_role == "system"
    (lockout,) = _events(world.firm_a, "login.locked_out")
    assert lockout.after["locked"] == ["user"] and lockout.seq == failed[-1].seq + 1
    assert len(_events(world.firm_a, "login.refused_locked_out")) == 1
    assert not audit.events_for(world.firm_b).filter(event_type__startswith="login.").exists()
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None

    # Another user at the same address still logs in (an address takes 20 failures).
    assert _try(client, door, "alpha_compliance_officer", PASSWORD).status_code == 302


def test_the_lockout_holds_at_the_other_door(client, world):
    for _ in range(5):
        _try(client, "/accounts/login/", "alpha_risk_officer", WRONG)
    assert _try(client, "/admin/login/", "alpha_risk_officer", PASSWORD).status_code == 429


def test_an_unknown_name_is_recorded_on_the_platform_chain(client, world):
    _try(client, "/accounts/login/", "nobody-at-all", WRONG)
    (event,) = AuditEvent.objects.filter(chain=audit.PLATFORM_CHAIN, event_type="login.failed")
    assert event.after["username"] == "nobody-at-all" and event.object_id == ""
    assert not AuditEvent.objects.exclude(chain=audit.PLATFORM_CHAIN).filter(
        event_type="login.failed").exists()


def test_an_address_is_locked_out_after_twenty_failures_whoever_it_names(client, world):
    for n in range(20):
        _try(client, "/accounts/login/", f"guess{n}", WRONG, address="10.9.9.9")
    assert _try(client, "/accounts/login/", "alpha_firm_admin", PASSWORD,
                address="10.9.9.9").status_code == 429
    assert _try(client, "/accounts/login/", "alpha_firm_admin", PASSWORD,
                address="10.9.9.10").status_code == 302
    (lockout,) = AuditEvent.objects.filter(event_type="login.locked_out")
    assert lockout.after["locked"] == ["address"] and lockout.chain == audit.PLATFORM_CHAIN


def test_a_success_before_the_limit_starts_the_count_again(client, world):
    for _ in range(4):
        _try(client, "/accounts/login/", "alpha_client", WRONG)
    assert _try(client, "/accounts/login/", "alpha_client", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert _try(client, "/accounts/login/", "alpha_client", WRONG).status_code == 200


def test_the_firm_admin_unlocks_a_user_from_the_desk(client, world):
    for _ in range(5):
        _try(client, "/accounts/login/", "alpha_margin_desk", WRONG)
    desk = world.a.users["margin_desk"]
    admin = world.a.users["firm_admin"]
    log_in(client, admin)
    listing = client.get("/admin/auth/user/")
    shown = {user.username: user.recent_failed_logins for user in listing.context["cl"].result_list}
    assert shown["alpha_margin_desk"] == 5 and shown["alpha_firm_admin"] == 0
    assert "Locked out" in listing.content.decode()
    page = client.post("/admin/auth/user/", {"action": "unlock_logins",
                                             "_selected_action": [desk.pk]})
    assert page.status_code == 302
    assert not AccessAttempt.objects.filter(username="alpha_margin_desk").exists()
    (unlocked,) = _events(world.firm_a, "login.unlocked")
    assert unlocked.actor == admin and unlocked.object_id == str(desk.pk)
    assert unlocked.after["was_locked_out"] is True
    client.logout()
    assert _try(client, "/accounts/login/", "alpha_margin_desk", PASSWORD).status_code == 302


def test_only_the_firms_own_admin_unlocks(world):
    desk = world.a.users["margin_desk"]
    with pytest.raises(NotFound):
        logins.unlock_login(firm=world.firm_b, user=desk, actor=world.b.users["firm_admin"])
    with pytest.raises(NotPermitted):
        logins.unlock_login(firm=world.firm_a, user=desk, actor=world.a.users["risk_officer"])
    assert not AuditEvent.objects.filter(event_type="login.unlocked").exists()


def test_behind_a_trusted_proxy_the_address_is_the_one_it_forwarded(client, world, settings):
    settings.LOGIN_TRUSTED_PROXIES = 1
    for n in range(20):  # one attacker forging the left of the header, through the proxy
        client.post("/accounts/login/", {"username": f"guess{n}", "password": WRONG},
                    REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.7")
    forwarded = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    assert client.post("/accounts/login/", {"username": "alpha_client", "password": PASSWORD},
                       **forwarded).status_code == 429
    # Another client behind the same proxy is not locked out with it.
    assert client.post("/accounts/login/", {"username": "alpha_client", "password": PASSWORD},
                       REMOTE_ADDR="10.0.0.1",
                       HTTP_X_FORWARDED_FOR="198.51.100.4").status_code == 302
