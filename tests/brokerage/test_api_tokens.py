"""API tokens for scripts (``Authorization: Bearer <token>``): created and revoked by firm
admins through ``/api/v1/tokens/`` and by ``manage.py create_api_token``, stored hashed, scoped
to the user's role and firm as a session is, read-only or expiring when asked, every creation,
new address and revocation audited on the firm's chain; a platform user's token is the
shell's to issue and revoke, audited on the platform chain."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from brokerage import audit
from brokerage.errors import NotPermitted
from brokerage.models import ApiToken, AuditEvent
from brokerage.roles import Role
from brokerage.tokens import create_api_token, revoke_api_token
from tests.api_body import the_error
from tests.factories import log_in, make_user

TOKENS = "/api/v1/tokens/"
ACCOUNTS = "/api/v1/accounts/"
APPLICATIONS = "/api/v1/applications/"


def bearer(secret: str, address: str = "203.0.113.7") -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}", REMOTE_ADDR=address)


def logged_in(user) -> Client:
    client = Client()
    log_in(client, user)
    return client


def all_tokens():
    return ApiToken.cross_firm.for_compliance(reason="test: every token")


def token_events(firm, event_type: str | None = None) -> list[AuditEvent]:
    events = audit.events_for(firm).filter(object_type="brokerage.apitoken")
    if event_type is not None:
        events = events.filter(event_type=event_type)
    return list(events)


@pytest.fixture
def admin_a(world):
    return world.a.users[Role.FIRM_ADMIN.value]


@pytest.fixture
def desk_a(world):
    return world.a.users[Role.MARGIN_DESK.value]


def issue(admin, body) -> dict:
    response = logged_in(admin).post(TOKENS, body, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


# Creation ----------------------------------------------------------------------------------------

def test_a_firm_admin_creates_a_token_and_sees_its_secret_once(world, admin_a, desk_a):
    created = issue(admin_a, {"user": desk_a.username, "expires_days": 30})
    secret = created["token"]
    assert secret.startswith("pmt_") and created["prefix"] == secret[:12]
    assert created["user"] == desk_a.username and created["read_only"] is False
    assert created["created_by"] == admin_a.username and created["revoked_at"] is None
    row = all_tokens().get(pk=created["id"])
    assert row.firm == world.firm_a
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()  # only the hash is kept
    assert secret not in str(all_tokens().values())
    assert timedelta(days=29, hours=23) < row.expires_at - timezone.now() <= timedelta(days=30)

    listed = logged_in(admin_a).get(TOKENS).json()
    assert [t["id"] for t in listed["results"]] == [created["id"]]
    assert "token" not in listed["results"][0]  # never again
    assert "token" not in logged_in(admin_a).get(f"{TOKENS}{created['id']}/").json()

    [event] = token_events(world.firm_a, "api_token.created")
    assert event.actor == admin_a and event.object_id == str(created["id"])
    assert event.after["user"] == desk_a.username and secret not in str(event.after)
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None


def test_a_token_carries_the_name_of_what_it_is_for(world, admin_a, desk_a):
    created = issue(admin_a, {"user": desk_a.username, "name": "  nightly risk report "})
    assert created["name"] == "nightly risk report"
    listed = logged_in(admin_a).get(TOKENS).json()["results"]
    assert [t["name"] for t in listed] == ["nightly risk report"]
    [event] = token_events(world.firm_a, "api_token.created")
    assert event.after["name"] == "nightly risk report"
    too_long = logged_in(admin_a).post(TOKENS, {"user": desk_a.username, "name": "x" * 101},
                                       content_type="application/json")
    assert too_long.status_code == 400 and the_error(too_long)["field"] == "name"
    assert all_tokens().count() == 1


def test_a_token_for_yourself_by_default(admin_a):
    assert issue(admin_a, {})["user"] == admin_a.username


def test_only_firm_admins_use_the_tokens_endpoint(world, desk_a, admin_a):
    for role in (Role.MARGIN_DESK, Role.RISK_OFFICER, Role.COMPLIANCE, Role.CLIENT):
        client = logged_in(world.a.users[role.value])
        assert client.get(TOKENS).status_code == 403, role
        response = client.post(TOKENS, {}, content_type="application/json")
        assert response.status_code == 403, role
        assert the_error(response)["code"] == "permission_denied"
    assert not all_tokens().exists()


def test_the_body_is_checked_and_nothing_is_written(world, admin_a):
    client = logged_in(admin_a)
    for body, field in (({"read_onyl": True}, "read_onyl"), ({"expires_days": 0}, "expires_days"),
                        ({"read_only": "yes"}, "read_only"), ({"user": 7}, "user")):
        response = client.post(TOKENS, body, content_type="application/json")
        assert response.status_code == 400, body
        assert the_error(response)["field"] == field
    # another firm's user (or no such user) is not one of yours: the body names no one (a 400,
    # as an application naming an account that is not yours)
    response = client.post(TOKENS, {"user": world.b.users["firm_admin"].username},
                           content_type="application/json")
    assert response.status_code == 400
    assert (the_error(response)["field"], the_error(response)["code"]) == ("user",
                                                                           "does_not_exist")
    assert not all_tokens().exists() and not token_events(world.firm_a)


def test_the_command_prints_the_token_once_and_audits(world, desk_a):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", desk_a.username, "--read-only", "--expires-days", "7",
                 stdout=out, stderr=err)
    secret = out.getvalue().strip()
    row = all_tokens().get()
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert row.read_only and row.user == desk_a and row.created_by is None
    assert row.prefix in err.getvalue() and "read-only" in err.getvalue()
    [event] = token_events(world.firm_a, "api_token.created")
    assert event.actor is None and event.actor_role == "system" and "os_user" in event.after
    assert bearer(secret).get(ACCOUNTS).status_code == 200


def test_the_command_refuses_unknown_users_and_users_of_no_firm_nor_platform(world):
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "nobody", stdout=io.StringIO(), stderr=io.StringIO())
    make_user("drifter", staff=False)  # no membership, no platform role
    with pytest.raises(CommandError, match="members of a firm and platform users"):
        call_command("create_api_token", "drifter", stdout=io.StringIO(), stderr=io.StringIO())
    assert not all_tokens().exists()


def test_a_platform_users_token_is_the_shells_to_issue_and_revoke(world, admin_a):
    call_command("create_platform_user", "ops", "--role", "auditor", stdout=io.StringIO())
    out = io.StringIO()
    call_command("create_api_token", "ops", "--read-only", stdout=out, stderr=io.StringIO())
    secret = out.getvalue().strip()
    token = all_tokens().get()
    assert token.firm is None
    created = AuditEvent.objects.get(chain=audit.PLATFORM_CHAIN, event_type="api_token.created")
    assert created.object_id == str(token.pk)
    # the schema is for any logged-in user: the platform user reads it with the token
    assert bearer(secret).get("/api/schema/").status_code == 200
    assert bearer(secret).get(ACCOUNTS).status_code == 403  # no firm, no firm's data
    # no firm admin lists or revokes it, nor issues one for a platform user
    assert logged_in(admin_a).get(TOKENS).json()["results"] == []
    response = logged_in(admin_a).post(TOKENS, {"user": "ops"}, content_type="application/json")
    assert response.status_code == 400 and the_error(response)["code"] == "does_not_exist"
    with pytest.raises(NotPermitted):
        revoke_api_token(token=token, actor=admin_a)
    call_command("revoke_api_token", token.prefix, stdout=io.StringIO())
    assert bearer(secret).get("/api/schema/").status_code == 401
    assert AuditEvent.objects.filter(chain=audit.PLATFORM_CHAIN,
                                     event_type="api_token.revoked").count() == 1
    assert audit.verify_chain(audit.PLATFORM_CHAIN) is None
    with pytest.raises(CommandError, match="already revoked"):
        call_command("revoke_api_token", token.prefix, stdout=io.StringIO())
    with pytest.raises(CommandError, match="no tokens"):
        call_command("revoke_api_token", "pmt_nothing", stdout=io.StringIO())


# Use ---------------------------------------------------------------------------------------------

def test_a_token_acts_as_its_user_with_the_users_role(world, admin_a, desk_a):
    secret = issue(admin_a, {"user": desk_a.username})["token"]
    client = bearer(secret)
    accounts = client.get(ACCOUNTS)
    assert accounts.status_code == 200
    assert [a["number"] for a in accounts.json()["results"]] == [world.a.account.number]
    # the desk's role, not the admin's who created it
    assert client.get(TOKENS).status_code == 403
    row = all_tokens().get()
    assert row.last_used_at is not None and row.last_used_from == "203.0.113.7"
    # the time of use is kept to the minute, not written on every request
    assert client.get(ACCOUNTS).status_code == 200
    assert all_tokens().get().last_used_at == row.last_used_at
    all_tokens().filter(pk=row.pk).update(last_used_at=row.last_used_at - timedelta(minutes=2))
    assert client.get(ACCOUNTS).status_code == 200
    assert all_tokens().get().last_used_at > row.last_used_at


def test_another_firms_objects_are_a_404_through_a_token(world, admin_a):
    secret = issue(admin_a, {"read_only": True})["token"]
    client = bearer(secret)
    assert client.get(f"{ACCOUNTS}{world.a.account.number}/").status_code == 200
    response = client.get(f"{ACCOUNTS}{world.b.account.number}/")
    assert response.status_code == 404 and the_error(response)["code"] == "not_found"
    assert client.get(f"{ACCOUNTS}{world.b.account.number}/margin").status_code == 404
    # nor its tokens
    other = create_api_token(user=world.b.users["margin_desk"], actor=None)
    assert bearer(secret).get(f"{TOKENS}{other.token.pk}/").status_code == 404
    assert logged_in(admin_a).post(f"{TOKENS}{other.token.pk}/revoke/").status_code == 404
    assert all_tokens().get(pk=other.token.pk).revoked_at is None


def test_a_read_only_token_reads_and_refuses_every_write(world, admin_a):
    secret = issue(admin_a, {"read_only": True})["token"]
    client = bearer(secret)
    assert client.get(TOKENS).status_code == 200
    before = AuditEvent.objects.count()
    for method in ("post", "put", "patch", "delete"):
        response = getattr(client, method)(TOKENS, {}, content_type="application/json")
        assert response.status_code == 403, method
        assert the_error(response)["code"] == "read_only_token"
        assert "read-only" in the_error(response)["message"]
    assert all_tokens().count() == 1 and AuditEvent.objects.count() == before


def test_a_read_write_token_writes_without_csrf(world, admin_a):
    secret = issue(admin_a, {})["token"]
    response = bearer(secret).post(TOKENS, {"read_only": True}, content_type="application/json")
    assert response.status_code == 201
    assert all_tokens().count() == 2


def test_expired_revoked_and_unknown_tokens_are_a_401(world, admin_a, desk_a):
    expired = create_api_token(user=desk_a, actor=None, expires_days=1)
    all_tokens().filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    for secret, message in ((expired.secret, "expired"), ("pmt_not-a-token", "invalid token")):
        response = bearer(secret).get(ACCOUNTS)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
        assert the_error(response)["code"] == "authentication_failed"
        assert message in the_error(response)["message"]
    assert bearer("two words").get(ACCOUNTS).status_code == 401


def test_a_deactivated_user_s_token_is_a_401(world, admin_a, desk_a):
    secret = create_api_token(user=desk_a, actor=None).secret
    desk_a.is_active = False
    desk_a.save(update_fields=["is_active"])
    assert bearer(secret).get(ACCOUNTS).status_code == 401


def test_revocation_ends_the_token_and_is_audited(world, admin_a, desk_a):
    created = issue(admin_a, {"user": desk_a.username})
    assert bearer(created["token"]).get(ACCOUNTS).status_code == 200
    response = logged_in(admin_a).post(f"{TOKENS}{created['id']}/revoke/", content_type="application/json")
    assert response.status_code == 200
    assert response.json()["revoked_by"] == admin_a.username
    assert response.json()["revoked_at"] is not None
    response = bearer(created["token"]).get(ACCOUNTS)
    assert response.status_code == 401 and "revoked" in the_error(response)["message"]
    again = logged_in(admin_a).post(f"{TOKENS}{created['id']}/revoke/", content_type="application/json")
    assert again.status_code == 409
    [event] = token_events(world.firm_a, "api_token.revoked")
    assert event.actor == admin_a and event.before["revoked_at"] is None
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None


def test_the_first_use_from_each_address_is_audited_once(world, admin_a, desk_a):
    secret = create_api_token(user=desk_a, actor=None).secret
    for address in ("203.0.113.7", "203.0.113.7", "198.51.100.2", "203.0.113.7",
                    "198.51.100.2"):
        assert bearer(secret, address).get(ACCOUNTS).status_code == 200
    events = token_events(world.firm_a, "api_token.used_from_new_address")
    assert [e.after["address"] for e in events] == ["203.0.113.7", "198.51.100.2"]
    assert all(e.actor == desk_a for e in events)
    assert all_tokens().get().last_used_from == "198.51.100.2"
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None


# 401 and the schema ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [TOKENS, ACCOUNTS, APPLICATIONS, "/api/schema/"])
def test_anonymous_is_a_401_with_the_bearer_challenge(db, path):
    response = Client().get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert the_error(response)["code"] == "not_authenticated"


def test_the_schema_declares_the_bearer_scheme(world, admin_a):
    schema = logged_in(admin_a).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    assert "/api/v1/tokens/{id}/revoke/" in schema["paths"]
    assert "/api/v1/tokens/" in schema["paths"]


# The desk (admin) --------------------------------------------------------------------------------

def test_the_firm_admin_issues_lists_and_revokes_tokens_in_the_desk(world, admin_a, desk_a):
    desk = logged_in(admin_a)
    add = reverse("admin:brokerage_apitoken_add")
    assert desk.get(add).status_code == 200
    page = desk.post(add, {"user": desk_a.username, "read_only": "on", "expires_days": "30"})
    assert page.status_code == 200
    row = all_tokens().get()
    secret = page.content.decode().split('<code id="api-token-secret">')[1].split("</code>")[0]
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert row.read_only and row.user == desk_a and row.created_by == admin_a
    assert bearer(secret).get(ACCOUNTS).status_code == 200
    # another firm's user is not offered
    other = desk.post(add, {"user": world.b.users["margin_desk"].username})
    assert other.status_code == 200 and all_tokens().count() == 1

    listing = desk.get(reverse("admin:brokerage_apitoken_changelist")).content.decode()
    assert row.prefix in listing and secret not in listing
    beta = create_api_token(user=world.b.users["margin_desk"], actor=None).token
    assert desk.get(reverse("admin:brokerage_apitoken_change", args=[beta.pk])).status_code == 404

    response = desk.post(reverse("admin:brokerage_apitoken_changelist"),
                         {"action": "revoke", "_selected_action": [row.pk, beta.pk]})
    assert response.status_code == 302
    assert all_tokens().get(pk=row.pk).revoked_by == admin_a
    assert all_tokens().get(pk=beta.pk).revoked_at is None  # not in this firm's list
    assert bearer(secret).get(ACCOUNTS).status_code == 401
    assert [e.event_type for e in token_events(world.firm_a)] == [
        "api_token.created", "api_token.used_from_new_address", "api_token.revoked"]


def test_other_staff_do_not_see_tokens_in_the_desk(world, desk_a):
    for role in (Role.MARGIN_DESK, Role.RISK_OFFICER, Role.COMPLIANCE):
        desk = logged_in(world.a.users[role.value])
        for url in (reverse("admin:brokerage_apitoken_changelist"),
                    reverse("admin:brokerage_apitoken_add")):
            assert desk.get(url).status_code == 403, (role, url)
