"""The desk's firm admin section: the firm's users (invite, role, deactivate and reactivate,
unlock, reset the second factor) and its API tokens (issue, the secret once, revoke).

Every change goes through its service and leaves its audit event; other roles get a 403,
another firm's user or token a 404; bad input is refused in words and changes nothing."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from brokerage import audit, tenancy
from brokerage.errors import IllegalTransition, NotFound, NotPermitted
from brokerage.models import ApiToken, AuditEvent
from brokerage.tokens import create_api_token
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db
User = get_user_model()
NEW_PASSWORD = "a-brand-new-pass-2026"


def _events(firm, event_type: str):
    return audit.events_for(firm).filter(event_type=event_type)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _token(world, firm: str = "a") -> ApiToken:
    holder = getattr(world, firm).users["risk_officer"]
    return create_api_token(user=holder, actor=None, read_only=True).token


def _tokens():
    return ApiToken.cross_firm.for_compliance(reason="the test reads every firm's tokens")


@pytest.fixture
def admin(client, world):
    assert log_in(client, world.a.users["firm_admin"])
    return client


def _invite(client, **fields):
    form = {"first_name": "Rita", "last_name": "Okafor", "username": "alpha.risk3",
            "email": "rita@alpha.example", "role": "risk_officer", **fields}
    return client.post(reverse("desk-staff-invite"), form)


def test_the_list_shows_the_firms_users_only_with_their_state(admin, world):
    desk = world.a.users["margin_desk"]
    TOTPDevice.objects.create(user=desk, name="authenticator", confirmed=True)
    page = admin.get(reverse("desk-staff"))
    assert page.status_code == 200
    shown = {row["member"].username: row for row in page.context["rows"]}
    assert set(shown) == {u.username for u in world.a.users.values()}
    assert shown["alpha_margin_desk"]["member"].has_authenticator
    assert not shown["alpha_client"]["member"].has_authenticator
    assert shown["alpha_margin_desk"]["role"] == "Margin desk"
    body = page.content.decode()
    assert "alpha_risk_officer" in body and "beta_" not in body
    assert "Staff" in body  # the section's line in the navigation


@pytest.mark.parametrize("role", ["risk_officer", "margin_desk", "compliance_officer", "client"])
def test_other_roles_are_refused_every_page_and_action(client, world, role):
    assert log_in(client, world.a.users[role])
    target = world.a.users["margin_desk"]
    token = _token(world)
    for url in (reverse("desk-staff"), reverse("desk-staff-invite"),
                reverse("desk-staff-tokens"), reverse("desk-staff-user", args=[target.pk]),
                reverse("desk-staff-token-issued", args=[token.pk])):
        assert client.get(url).status_code == 403, url
    for name in ("role", "deactivate", "unlock", "reset-second-factor", "resend-invitation"):
        url = reverse(f"desk-staff-user-{name}", args=[target.pk])
        assert client.post(url, {"role": "firm_admin"}).status_code == 403, url
    assert _invite(client).status_code == 403
    assert client.post(reverse("desk-staff-token-revoke", args=[token.pk])).status_code == 403
    target.refresh_from_db()
    token.refresh_from_db()
    assert target.is_active and target.membership.role == "margin_desk"
    assert token.revoked_at is None and not User.objects.filter(username="alpha.risk3").exists()


def test_another_firms_user_and_token_are_not_found(admin, world):
    beta = world.b.users["margin_desk"]
    beta_token = _token(world, "b")
    assert admin.get(reverse("desk-staff-user", args=[beta.pk])).status_code == 404
    for name in ("role", "deactivate", "reactivate", "unlock", "reset-second-factor",
                 "resend-invitation"):
        url = reverse(f"desk-staff-user-{name}", args=[beta.pk])
        assert admin.post(url, {"role": "client"}).status_code == 404, url
    assert admin.get(reverse("desk-staff-token-issued", args=[beta_token.pk])).status_code == 404
    assert admin.post(reverse("desk-staff-token-revoke", args=[beta_token.pk])).status_code == 404
    assert beta_token.pk not in [t.pk for t in admin.get(reverse("desk-staff-tokens"))
                                 .context["tokens"]]
    beta.refresh_from_db()
    beta_token.refresh_from_db()
    assert beta.is_active and beta.membership.role == "margin_desk"
    assert beta_token.revoked_at is None
    assert not audit.events_for(world.firm_b).filter(actor=world.a.users["firm_admin"]).exists()


def test_an_invitation_creates_the_user_and_mails_a_link_that_sets_the_password(
        admin, client, world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        page = _invite(admin)
    user = User.objects.get(username="alpha.risk3")
    assert page.status_code == 302 and page.url == reverse("desk-staff-user", args=[user.pk])
    assert user.membership.role == "risk_officer" and user.membership.firm == world.firm_a
    assert user.is_staff and not user.has_usable_password()
    assert b"Invited: no password yet" in admin.get(reverse("desk-staff")).content
    assert _events(world.firm_a, "user.created").filter(object_id=str(user.pk)).exists()
    invited = _events(world.firm_a, "user.invited").get()
    assert invited.actor == world.a.users["firm_admin"]
    assert invited.after["email"] == "rita@alpha.example"

    (message,) = mail.outbox
    assert message.to == ["rita@alpha.example"] and "Firm ALPHA" in message.subject
    assert "alpha.risk3" in message.body and "Risk officer" in message.body
    link = re.search(r"http://testserver(/accounts/invitation/\S+/)", message.body).group(1)

    # Lost it? The admin sends it again (the first link still holds until a password is set).
    with django_capture_on_commit_callbacks(execute=True):
        page = admin.post(reverse("desk-staff-user-resend-invitation", args=[user.pk]),
                          follow=True)
    assert "A new invitation link is mailed to rita@alpha.example." in _messages(page)
    assert len(mail.outbox) == 2 and mail.outbox[1].to == ["rita@alpha.example"]
    assert _events(world.firm_a, "user.invitation_resent").get().actor == invited.actor

    client.logout()
    assert client.get(link).status_code == 200
    short = client.post(link, {"new_password1": "short", "new_password2": "short"})
    assert short.status_code == 200 and short.context["form"].errors
    user.refresh_from_db()
    assert not user.has_usable_password()
    done = client.post(link, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 200 and b"Your password is set" in done.content
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    accepted = _events(world.firm_a, "user.invitation_accepted").get()
    assert accepted.actor == user and NEW_PASSWORD not in str(accepted.after)
    # One link, one password: the token died with the unusable password.
    assert client.get(link).status_code == 404
    assert client.post(link, {"new_password1": "another-pass-2026x",
                              "new_password2": "another-pass-2026x"}).status_code == 404
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    log_in(admin, world.a.users["firm_admin"])
    page = admin.post(reverse("desk-staff-user-resend-invitation", args=[user.pk]), follow=True)
    assert "Nothing changed: alpha.risk3 has already chosen a password." in _messages(page)
    assert len(mail.outbox) == 2
    admin.logout()
    # The new staff member logs in and is sent to set up an authenticator.
    assert log_in(client, user, password=NEW_PASSWORD, second_factor=False)
    assert client.get("/desk/").url.startswith(reverse("otp-enrol"))


def test_an_accepted_invitation_is_refused_under_a_stale_token(world):
    admin = world.a.users["firm_admin"]
    user = tenancy.invite_firm_user(firm=world.firm_a, actor=admin, username="alpha.new",
                                    role="margin_desk", email="new@alpha.example",
                                    site_url="http://testserver/")
    token = tenancy.invitation_path(user).rstrip("/").rsplit("/", 1)[1]
    tenancy.accept_invitation(user=user, token=token, password=NEW_PASSWORD)
    with pytest.raises(NotPermitted, match="expired or was already used"):
        tenancy.accept_invitation(user=user, token=token, password="yet-another-pass-2026")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"username": "alpha_margin_desk"}, "username", "is taken"),
    ({"email": "not-an-address"}, "email", "valid email"),
    ({"email": ""}, "email", "required"),
    ({"role": "superuser"}, "role", "superuser is not a firm role"),
    ({"username": "has spaces!"}, "username", "username"),
])
def test_bad_invitations_are_refused_in_words_and_change_nothing(admin, world, fields, field,
                                                                 words):
    users, events = User.objects.count(), AuditEvent.objects.count()
    page = _invite(admin, **fields)
    assert page.status_code == 400
    errors = page.context["form"].errors
    assert field in errors and words.lower() in " ".join(errors[field]).lower(), errors
    assert words.lower() in page.content.decode().lower()
    assert User.objects.count() == users and AuditEvent.objects.count() == events
    assert not mail.outbox


def test_role_changes_deactivation_and_reactivation_are_audited(admin, world):
    target = world.a.users["margin_desk"]
    page = admin.post(reverse("desk-staff-user-role", args=[target.pk]),
                      {"role": "risk_officer"}, follow=True)
    assert "alpha_margin_desk is now risk officer." in _messages(page)
    target.refresh_from_db()
    assert target.membership.role == "risk_officer"
    changed = _events(world.firm_a, "user.updated").get()
    assert (changed.before["role"], changed.after["role"]) == ("margin_desk", "risk_officer")

    admin.post(reverse("desk-staff-user-deactivate", args=[target.pk]))
    target.refresh_from_db()
    assert not target.is_active
    assert _events(world.firm_a, "user.deactivated").get().actor == world.a.users["firm_admin"]
    page = admin.get(reverse("desk-staff-user", args=[target.pk]))
    assert b"Reactivate" in page.content and b"Deactivated" in page.content
    said = [(row.words, row.summary) for row in page.context["trail"]]
    assert said[:2] == [("User deactivated", "is active: yes → no"),
                        ("User updated", "role: Margin desk → Risk officer")]
    assert "<dl class=\"kv\">" in page.content.decode()  # the details in words, not JSON

    admin.post(reverse("desk-staff-user-reactivate", args=[target.pk]))
    target.refresh_from_db()
    assert target.is_active
    reactivated = _events(world.firm_a, "user.reactivated").get()
    assert (reactivated.before["is_active"], reactivated.after["is_active"]) == (False, True)


def test_an_unknown_role_is_refused_and_changes_nothing(admin, world):
    target = world.a.users["margin_desk"]
    events = AuditEvent.objects.count()
    page = admin.post(reverse("desk-staff-user-role", args=[target.pk]), {"role": "king"},
                      follow=True)
    assert "Nothing changed: king is not a firm role." in _messages(page)
    target.refresh_from_db()
    assert target.membership.role == "margin_desk" and AuditEvent.objects.count() == events


def test_the_only_firm_admin_cannot_demote_or_deactivate_themselves(admin, world):
    me = world.a.users["firm_admin"]
    events = AuditEvent.objects.count()
    for name, form in (("role", {"role": "risk_officer"}), ("deactivate", {})):
        page = admin.post(reverse(f"desk-staff-user-{name}", args=[me.pk]), form, follow=True)
        assert ("Nothing changed: the firm keeps at least one active firm admin."
                in _messages(page)), name
    me.refresh_from_db()
    assert me.is_active and me.membership.role == "firm_admin"
    assert AuditEvent.objects.count() == events
    # With a second admin, the first may step down.
    admin.post(reverse("desk-staff-user-role", args=[world.a.users["risk_officer"].pk]),
               {"role": "firm_admin"})
    admin.post(reverse("desk-staff-user-role", args=[me.pk]), {"role": "compliance_officer"})
    me.refresh_from_db()
    assert me.membership.role == "compliance_officer"


def test_the_firm_admin_unlocks_a_locked_out_user(admin, client, world):
    outside = Client()
    for _ in range(5):
        outside.post("/accounts/login/", {"username": "alpha_margin_desk",
                                          "password": "wrong-password-x"},
                     REMOTE_ADDR="10.2.2.2")
    page = admin.get(reverse("desk-staff"))
    locked = {r["member"].username for r in page.context["rows"] if r["locked_out"]}
    assert locked == {"alpha_margin_desk"}
    home = admin.get(reverse("desk-home"))
    assert b"1 user locked out" in home.content

    desk = world.a.users["margin_desk"]
    page = admin.post(reverse("desk-staff-user-unlock", args=[desk.pk]), follow=True)
    assert any(m.startswith("alpha_margin_desk may log in again") for m in _messages(page))
    event = _events(world.firm_a, "login.unlocked").get()
    assert event.after["was_locked_out"] is True and event.actor == world.a.users["firm_admin"]
    assert outside.post("/accounts/login/", {"username": "alpha_margin_desk",
                                             "password": PASSWORD},
                        REMOTE_ADDR="10.2.2.2").status_code == 302


def test_resetting_the_second_factor_sends_the_user_to_enrol_again(admin, client, world):
    desk = world.a.users["margin_desk"]
    theirs = Client()
    assert log_in(theirs, desk)  # enrolled and verified in this session
    assert theirs.get("/desk/").status_code == 200
    page = admin.post(reverse("desk-staff-user-reset-second-factor", args=[desk.pk]),
                      follow=True)
    assert any("second factor is reset" in m for m in _messages(page))
    assert not TOTPDevice.objects.filter(user=desk).exists()
    event = _events(world.firm_a, "second_factor.reset").get()
    assert event.after["devices_removed"]["authenticator"] == 1
    # The open session and the next login both land on enrolment.
    assert theirs.get("/desk/").url.startswith(reverse("otp-enrol"))
    # Nothing left to reset: refused in words, nothing recorded.
    page = admin.post(reverse("desk-staff-user-reset-second-factor", args=[desk.pk]),
                      follow=True)
    assert "Nothing changed: alpha_margin_desk has no second factor to reset." in _messages(page)
    assert _events(world.firm_a, "second_factor.reset").count() == 1


def test_the_user_services_refuse_other_firms_and_roles(world):
    alpha_admin, beta_desk = world.a.users["firm_admin"], world.b.users["margin_desk"]
    TOTPDevice.objects.create(user=beta_desk, name="authenticator", confirmed=True)
    with pytest.raises(NotFound):
        tenancy.reset_second_factor(firm=world.firm_a, user=beta_desk, actor=alpha_admin)
    with pytest.raises(NotFound):  # the firm admin of beta is not the actor's firm
        tenancy.reset_second_factor(firm=world.firm_b, user=beta_desk, actor=alpha_admin)
    with pytest.raises(NotPermitted):
        tenancy.reset_second_factor(firm=world.firm_b, user=beta_desk,
                                    actor=world.b.users["risk_officer"])
    with pytest.raises(NotPermitted):
        tenancy.invite_firm_user(firm=world.firm_a, actor=world.a.users["margin_desk"],
                                 username="x.y", role="client", email="x@y.example",
                                 site_url="http://testserver/")
    assert TOTPDevice.objects.filter(user=beta_desk).exists()
    assert not User.objects.filter(username="x.y").exists()
    with pytest.raises(IllegalTransition):
        tenancy.reset_second_factor(firm=world.firm_a, user=world.a.users["client"],
                                    actor=alpha_admin)


def test_a_token_is_issued_shown_once_works_and_is_revoked(admin, client, world):
    page = admin.get(reverse("desk-staff-tokens"))
    assert page.status_code == 200 and b"No tokens yet" in page.content
    issued = admin.post(reverse("desk-staff-tokens"), {
        "name": "nightly risk report", "user": "alpha_risk_officer", "read_only": "on",
        "expires_days": "30"})
    token = _tokens().get(user=world.a.users["risk_officer"])
    assert issued.status_code == 302
    assert issued.url == reverse("desk-staff-token-issued", args=[token.pk])
    assert token.read_only and token.expires_at is not None
    assert token.name == "nightly risk report"
    created = _events(world.firm_a, "api_token.created").get()
    assert created.actor == world.a.users["firm_admin"]

    shown = admin.get(issued.url)
    assert shown["Cache-Control"] == "no-store"
    secret = re.search(r'id="token-secret">(pmt_[^<]+)<', shown.content.decode()).group(1)
    assert secret.startswith(token.prefix) and secret not in str(created.after)
    again = admin.get(issued.url)
    assert secret not in again.content.decode() and b"cannot be shown again" in again.content
    listing = admin.get(reverse("desk-staff-tokens")).content.decode()
    assert token.prefix in listing and secret not in listing and "Read-only" in listing

    api = Client()
    answer = api.get("/api/v1/firm", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert answer.status_code == 200 and answer.json()["slug"] == "alpha"

    page = admin.post(reverse("desk-staff-token-revoke", args=[token.pk]), follow=True)
    assert any("is revoked" in m for m in _messages(page))
    assert _events(world.firm_a, "api_token.revoked").get().actor == world.a.users["firm_admin"]
    assert api.get("/api/v1/firm", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401
    # Revoked twice: refused in words, nothing recorded.
    page = admin.post(reverse("desk-staff-token-revoke", args=[token.pk]), follow=True)
    assert "Nothing changed: the token is already revoked." in _messages(page)
    assert _events(world.firm_a, "api_token.revoked").count() == 1


@pytest.mark.parametrize(("form", "field"), [
    ({"user": "beta_risk_officer"}, "user"),  # another firm's user is not a choice
    ({"user": "alpha_risk_officer", "expires_days": "0"}, "expires_days"),
    ({"user": "alpha_risk_officer", "expires_days": "many"}, "expires_days"),
    ({"user": "alpha_risk_officer", "name": ""}, "name"),
    ({"user": "alpha_risk_officer", "name": "x" * 101}, "name"),
])
def test_bad_token_requests_are_refused_and_issue_nothing(admin, world, form, field):
    page = admin.post(reverse("desk-staff-tokens"), {"name": "a script", **form})
    assert page.status_code == 400 and field in page.context["form"].errors
    assert b"No token was issued" in page.content
    assert not _tokens().exists()


def test_a_deactivated_user_cannot_hold_a_new_token(admin, world):
    target = world.a.users["risk_officer"]
    admin.post(reverse("desk-staff-user-deactivate", args=[target.pk]))
    page = admin.post(reverse("desk-staff-tokens"), {"name": "a script",
                                                     "user": target.username})
    assert page.status_code == 400 and "user" in page.context["form"].errors
    assert not _tokens().exists()
