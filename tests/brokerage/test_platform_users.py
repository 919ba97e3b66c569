"""No superusers: platform users hold a platform role, are created and changed by management
commands (audited on the platform chain) and write no tenant data through any door."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accounts import services as book
from accounts.models import Client, LedgerEntry
from brokerage import audit
from brokerage.errors import DomainError, NotFound, NotPermitted
from brokerage.models import AuditEvent, PlatformRole
from brokerage.scope import firm_scope
from brokerage.tenancy import (
    add_member,
    create_platform_user,
    is_platform_auditor,
    membership_of,
    platform_role_of,
    set_firm_user_password,
    update_firm_user,
)
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db
User = get_user_model()


def _platform_events(event_type: str):
    return AuditEvent.objects.filter(chain=audit.PLATFORM_CHAIN, event_type=event_type)


def test_create_platform_user_reads_the_password_from_stdin_and_is_audited(client, db):
    out = StringIO()
    call_command("create_platform_user", "auditor1", "--role", "auditor", "--email",
                 "a@platform.example", "--password-stdin", stdin=StringIO(PASSWORD + "\n"),
                 stdout=out)
    user = User.objects.get(username="auditor1")
    assert PlatformRole.objects.get(user=user).role == "auditor"
    assert not user.is_superuser and not user.is_staff
    assert is_platform_auditor(user) and membership_of(user) is None
    event = _platform_events("platform_user.created").get()
    assert event.firm is None and event.after["role"] == "auditor"
    assert event.after["password_set"] is True
    assert PASSWORD not in str(event.after)
    assert log_in(client, "auditor1", password=PASSWORD)
    login = _platform_events("platform.login").get()  # platform logins: the platform chain
    assert login.actor == user and login.actor_role == "platform_auditor"
    assert audit.verify_chain(audit.PLATFORM_CHAIN) is None


def test_without_a_password_source_the_user_gets_an_unusable_one_and_instructions(db):
    out = StringIO()
    call_command("create_platform_user", "prices", "--role", "market_data", stdout=out)
    assert not User.objects.get(username="prices").has_usable_password()
    assert "platform_user prices --set-password" in out.getvalue()


def test_the_password_is_never_taken_from_the_command_line(db, monkeypatch):
    with pytest.raises(TypeError):  # no such option
        call_command("create_platform_user", "x", "--role", "auditor", password="secret-123")
    monkeypatch.setenv("PLATFORM_PASSWORD", PASSWORD)  # the environment is a source
    call_command("create_platform_user", "x", "--role", "auditor", "--password-env",
                 "PLATFORM_PASSWORD", stdout=StringIO())
    assert User.objects.get(username="x").check_password(PASSWORD)


def test_a_platform_users_role_changes_and_deactivation_are_audited(client, db):
    create_platform_user(username="ops", role="auditor", password=PASSWORD)
    call_command("platform_user", "ops", "--role", "market_data", stdout=StringIO())
    assert PlatformRole.objects.get(user__username="ops").role == "market_data"
    changed = _platform_events("platform_user.changed").get()
    assert (changed.before["role"], changed.after["role"]) == ("auditor", "market_data")
    call_command("platform_user", "ops", "--deactivate", stdout=StringIO())
    assert not User.objects.get(username="ops").is_active
    assert _platform_events("platform_user.deactivated").exists()
    assert not log_in(client, "ops", password=PASSWORD)
    with pytest.raises(CommandError):
        call_command("platform_user", "alpha_firm_admin_nobody", "--deactivate",
                     stdout=StringIO())


def test_a_tenant_user_is_not_a_platform_user_and_vice_versa(world):
    with pytest.raises(CommandError):  # a firm's user cannot be changed as a platform user
        call_command("platform_user", "alpha_firm_admin", "--role", "auditor", stdout=StringIO())
    auditor = create_platform_user(username="auditor", role="auditor")
    with pytest.raises(NotPermitted):
        add_member(firm=world.firm_a, user=auditor, role="firm_admin")
    assert platform_role_of(world.a.users["firm_admin"]) is None


def test_no_user_is_ever_saved_as_a_superuser(db):
    with pytest.raises(NotPermitted):
        User.objects.create_superuser("root", "root@example.com", PASSWORD)
    with pytest.raises(DomainError):
        call_command("createsuperuser", "--noinput", "--username", "root2",
                     "--email", "r@example.com", stdout=StringIO(), stderr=StringIO())
    assert not User.objects.filter(is_superuser=True).exists()


@pytest.fixture
def auditor(world):
    return create_platform_user(username="platform.auditor", role="auditor", password=PASSWORD)


def test_a_platform_auditor_changes_no_tenant_row_through_the_services(world, auditor):
    target = world.a.users["margin_desk"]
    with firm_scope(world.firm_a):
        with pytest.raises(NotPermitted):
            book.update_client(client=world.a.client, actor=auditor, name="Changed")
        with pytest.raises(NotPermitted):
            book.post_ledger_entry(account=world.a.account, kind="deposit",
                                   amount=Decimal("1000"), actor=auditor)
        with pytest.raises(NotPermitted):
            update_firm_user(firm=world.firm_a, user=target, actor=auditor,
                             role="risk_officer")
        with pytest.raises(NotPermitted):
            set_firm_user_password(firm=world.firm_a, user=target, actor=auditor,
                                   password="another-pass-1")
        assert Client.objects.get(pk=world.a.client.pk).name == "Client of alpha"
        assert not LedgerEntry.objects.exists()
    target.refresh_from_db()
    assert target.membership.role == "margin_desk" and target.check_password(PASSWORD)
    assert not AuditEvent.objects.filter(actor=auditor).exists()


def test_a_platform_auditor_gets_nothing_from_the_desk(client, world, auditor):
    target = world.a.users["margin_desk"]
    log_in(client, "platform.auditor", password=PASSWORD)
    assert client.get(reverse("admin:index")).status_code == 302  # not staff: to the login page
    # Even with the staff flag set by mistake, the desk shows and changes nothing.
    User.objects.filter(pk=auditor.pk).update(is_staff=True)
    user_page = reverse("admin:auth_user_change", args=[target.pk])
    assert client.get(user_page).status_code == 403
    assert client.post(reverse("admin:auth_user_set_password", args=[target.pk]),
                       {"new_password1": "taken-over-1", "new_password2": "taken-over-1"}
                       ).status_code == 404
    client_page = reverse("admin:accounts_client_change", args=[world.a.client.pk])
    assert client.post(client_page, {"name": "Changed"}).status_code == 403
    target.refresh_from_db()
    assert target.check_password(PASSWORD)
    assert Client.cross_firm.for_compliance(reason="test").get(
        pk=world.a.client.pk).name == "Client of alpha"


def test_the_firms_audit_trail_refuses_a_platform_actor_whatever_the_service(world, auditor):
    """The backstop behind each service's own check: every change to a firm's data is recorded
    on its chain inside the change's transaction, and that record refuses a platform actor,
    so the change rolls back with it."""
    from django.db import transaction

    with pytest.raises(NotPermitted), transaction.atomic():
        Client.cross_firm.for_compliance(reason="test: a service without its own check").filter(
            pk=world.a.client.pk).update(name="Changed")
        audit.record(firm=world.firm_a, actor=auditor, event_type="client.updated",
                     obj=world.a.client, after={"name": "Changed"})
    assert Client.cross_firm.for_compliance(reason="test").get(
        pk=world.a.client.pk).name == "Client of alpha"
    with pytest.raises(NotFound), transaction.atomic():  # nor a member of another firm
        audit.record(firm=world.firm_a, actor=world.b.users["firm_admin"],
                     event_type="client.updated", obj=world.a.client)
    assert not AuditEvent.objects.filter(actor__in=[auditor, world.b.users["firm_admin"]],
                                         firm=world.firm_a).exists()


def test_a_member_of_another_firm_is_not_an_actor_here(world):
    with firm_scope(world.firm_a), pytest.raises(NotFound):
        book.update_client(client=world.a.client, actor=world.b.users["firm_admin"],
                           name="Changed")
    assert Client.cross_firm.for_compliance(reason="test").get(
        pk=world.a.client.pk).name == "Client of alpha"


def test_a_platform_auditor_writes_nothing_through_the_api(client, world, auditor):
    log_in(client, "platform.auditor", password=PASSWORD)
    response = client.post("/api/v1/applications/", {"account": world.a.account.pk},
                           content_type="application/json")
    assert response.status_code == 403
    assert client.get("/api/v1/audit/export").status_code == 403  # no firm chain either
    from eligibility.models import Application

    assert not Application.cross_firm.for_compliance(reason="test").exists()


def test_the_home_page_tells_a_platform_user_where_their_door_is(client, auditor):
    log_in(client, "platform.auditor", password=PASSWORD)
    response = client.get("/")
    assert response.status_code == 200 and b"export_audit_trail --all-firms" in response.content


def test_a_platform_users_password_is_set_from_stdin_audited(client, db):
    call_command("create_platform_user", "ops2", "--role", "market_data", stdout=StringIO())
    call_command("platform_user", "ops2", "--set-password", "--password-stdin",
                 stdin=StringIO(PASSWORD + "\n"), stdout=StringIO())
    assert log_in(client, "ops2", password=PASSWORD)
    event = _platform_events("platform_user.changed").get()
    assert event.after["password_set"] is True and PASSWORD not in str(event.after)
    with pytest.raises(CommandError):  # no source, no password
        call_command("platform_user", "ops2", "--set-password", stdout=StringIO())
