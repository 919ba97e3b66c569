"""A firm's users belong to its firm admin: created, changed, deactivated and given passwords
in the desk through audited services, on that firm's chain; another firm's user is a 404."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from brokerage import audit
from brokerage.errors import NotFound, NotPermitted
from brokerage.models import Membership
from brokerage.tenancy import set_firm_user_password, update_firm_user
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db
User = get_user_model()
NEW_PASSWORD = "a-new-pass-2026"


def _events(firm, event_type: str):
    return audit.events_for(firm).filter(event_type=event_type)


def _post_password(client, user) -> int:
    """Post the desk's set-password form for `user`; the status code."""
    return client.post(reverse("admin:auth_user_set_password", args=[user.pk]),
                       {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
                       ).status_code


@pytest.fixture
def firm_admin(client, world):
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    return client


def test_the_firm_admin_sees_only_the_firms_users(firm_admin, world):
    page = firm_admin.get(reverse("admin:auth_user_changelist"))
    assert page.status_code == 200
    shown = {user.username for user in page.context["cl"].result_list}
    assert shown == {user.username for user in world.a.users.values()}
    own = world.a.users["margin_desk"]
    for url in (reverse("admin:auth_user_add"), reverse("admin:auth_user_change", args=[own.pk]),
                reverse("admin:auth_user_set_password", args=[own.pk])):
        assert firm_admin.get(url).status_code == 200, url
    beta_user = world.b.users["margin_desk"]
    assert firm_admin.get(reverse("admin:auth_user_change", args=[beta_user.pk])).status_code == 404
    assert firm_admin.get(reverse("admin:auth_user_set_password",
                                  args=[beta_user.pk])).status_code == 404


def test_the_firm_admin_cannot_reset_another_firms_password(firm_admin, world):
    beta_user = world.b.users["firm_admin"]
    assert _post_password(firm_admin, beta_user) == 404
    beta_user.refresh_from_db()
    assert beta_user.check_password(PASSWORD)
    with pytest.raises(NotFound):  # nor through the service
        set_firm_user_password(firm=world.firm_b, user=beta_user,
                               actor=world.a.users["firm_admin"], password=NEW_PASSWORD)


def test_a_password_reset_is_audited_on_the_firms_chain(firm_admin, world):
    target = world.a.users["risk_officer"]
    assert _post_password(firm_admin, target) == 302
    target.refresh_from_db()
    assert target.check_password(NEW_PASSWORD)
    event = _events(world.firm_a, "user.password_set").get()
    assert event.actor == world.a.users["firm_admin"] and event.object_id == str(target.pk)
    assert NEW_PASSWORD not in str(event.after)
    assert not _events(world.firm_b, "user.password_set").exists()
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None


def test_the_firm_admin_creates_a_client_user_and_links_it(firm_admin, world):
    response = firm_admin.post(reverse("admin:auth_user_add"), {
        "username": "alpha_client2", "first_name": "Ada", "last_name": "Client",
        "email": "ada@alpha.example", "role": "client", "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD, "_save": "Save"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(username="alpha_client2")
    membership = Membership.cross_firm.for_compliance(reason="test").get(user=user)
    assert (membership.firm, membership.role, user.is_staff) == (world.firm_a, "client", False)
    created = _events(world.firm_a, "user.created").get()
    assert created.after["role"] == "client" and created.after["password_set"] is True
    assert NEW_PASSWORD not in str(created.after)


def test_the_firm_admin_changes_a_role_and_deactivates_a_user(firm_admin, world):
    target = world.a.users["margin_desk"]
    url = reverse("admin:auth_user_change", args=[target.pk])
    form = {"first_name": "", "last_name": "", "email": target.email, "_save": "Save"}
    response = firm_admin.post(url, {**form, "role": "risk_officer", "is_active": "on"})
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.membership.role == "risk_officer"
    changed = _events(world.firm_a, "user.updated").get()
    assert (changed.before["role"], changed.after["role"]) == ("margin_desk", "risk_officer")
    response = firm_admin.post(url, {**form, "role": "risk_officer"})  # is_active unticked
    assert response.status_code == 302
    target.refresh_from_db()
    assert not target.is_active
    assert _events(world.firm_a, "user.deactivated").get().after["is_active"] is False


def test_the_last_firm_admin_cannot_demote_or_deactivate_themselves(firm_admin, world):
    me = world.a.users["firm_admin"]
    url = reverse("admin:auth_user_change", args=[me.pk])
    response = firm_admin.post(url, {"email": me.email, "role": "margin_desk",
                                     "is_active": "on", "_save": "Save"})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    with pytest.raises(NotPermitted):
        update_firm_user(firm=world.firm_a, user=me, actor=me, is_active=False)
    me.refresh_from_db()
    assert me.is_active and me.membership.role == "firm_admin"


@pytest.mark.parametrize("role", ["risk_officer", "margin_desk", "compliance_officer"])
def test_no_other_role_administers_users(client, world, role):
    log_in(client, f"alpha_{role}", password=PASSWORD)
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    target = world.a.users["client"]
    assert _post_password(client, target) == 404
    with pytest.raises(NotPermitted):
        update_firm_user(firm=world.firm_a, user=target, actor=world.a.users[role],
                         role="firm_admin")
    target.refresh_from_db()
    assert target.check_password(PASSWORD) and target.membership.role == "client"


def test_the_groups_admin_is_gone(firm_admin):
    assert firm_admin.get("/admin/auth/group/").status_code == 404
