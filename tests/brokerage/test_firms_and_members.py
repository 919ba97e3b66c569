"""Opening a firm (the platform's chain) and adding its members (the firm's chain)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from brokerage import audit
from brokerage.errors import InvalidInput
from brokerage.models import AuditEvent, Firm, Membership
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import create_firm, create_firm_user, role_of

pytestmark = pytest.mark.django_db


def test_a_firm_is_opened_on_the_platform_chain_and_refused_twice() -> None:
    firm = create_firm(name="Gamma Clearing", slug="gamma")
    event = AuditEvent.objects.get(chain=audit.PLATFORM_CHAIN, event_type="firm.created")
    assert event.after == {"name": "Gamma Clearing", "slug": "gamma",
                           "exchange_calendar": "XNYS"}
    assert event.object_id == str(firm.pk)
    for name, slug, field in (("Other name", "gamma", "slug"), ("Gamma Clearing", "g2", "name")):
        with pytest.raises(InvalidInput) as refused:
            create_firm(name=name, slug=slug)
        assert refused.value.field == field
    assert Firm.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="firm.created").count() == 1


def test_members_get_their_role_staff_the_desk_and_nobody_is_a_superuser() -> None:
    firm = create_firm(name="Gamma Clearing", slug="gamma")
    admin = create_firm_user(firm=firm, username="gamma.admin", email="a@gamma.example",
                             password="pw-123456789", role=Role.FIRM_ADMIN, actor=None)
    client = create_firm_user(firm=firm, username="gamma.client", email="c@gamma.example",
                              password="pw-123456789", role="client", actor=admin)
    assert role_of(admin) == Role.FIRM_ADMIN and role_of(client) == Role.CLIENT
    assert admin.is_staff and not client.is_staff
    assert not admin.is_superuser and not client.is_superuser
    assert client.check_password("pw-123456789")
    trail = [(e.event_type, e.actor.username if e.actor else None, e.after)
             for e in audit.events_for(firm)]
    assert trail[1:] == [
        ("user.created", "gamma.admin",
         {"username": "gamma.client", "first_name": "", "last_name": "",
          "email": "c@gamma.example", "is_active": True, "role": "client", "is_staff": False,
          "password_set": True}),
    ]
    assert not any("pw-123456789" in str(after) for _, _, after in trail)  # never the password
    assert audit.verify_chain(audit.chain_key(firm)) is None


def test_a_taken_username_or_an_unknown_role_is_refused_and_nothing_is_written() -> None:
    firm = create_firm(name="Gamma Clearing", slug="gamma")
    create_firm_user(firm=firm, username="gamma.admin", email="a@gamma.example",
                     password="pw-123456789", role=Role.FIRM_ADMIN, actor=None)
    for username, role, field in (("gamma.admin", Role.CLIENT, "username"),
                                  ("gamma.new", "superuser", "role")):
        with pytest.raises(InvalidInput) as refused:
            create_firm_user(firm=firm, username=username, email="x@gamma.example",
                             password="pw-123456789", role=role, actor=None)
        assert refused.value.field == field
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["gamma.admin"]
    with firm_scope(firm):
        assert Membership.objects.count() == 1
    assert audit.events_for(firm).count() == 1
