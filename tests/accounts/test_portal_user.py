"""A client's portal login is one of the firm's own client users, whichever door sets it: the
admin offers only those, refuses a foreign id posted anyway, and the service refuses it too."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts import services as book
from accounts.models import Client
from brokerage import audit
from brokerage.scope import firm_scope
from brokerage.tenancy import create_firm_user, update_firm_user
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db


def _form_data(client: Client, **overrides) -> dict[str, str]:
    """The client change form as the admin would post it, unchanged but for `overrides`."""
    data: dict[str, str] = {}
    for name in book.CLIENT_WRITABLE_FIELDS:
        value = client.portal_user_id if name == "portal_user" else getattr(client, name)
        if value is False:
            continue  # an unticked checkbox is absent from the post
        data[name] = "on" if value is True else "" if value is None else str(value)
    data.update({k: str(v) for k, v in overrides.items()})
    data["_save"] = "Save"
    return data


def _change_url(client: Client) -> str:
    return reverse("admin:accounts_client_change", args=[client.pk])


def _portal_user_id(client: Client) -> int | None:
    return Client.cross_firm.for_compliance(reason="test").get(pk=client.pk).portal_user_id


def test_the_form_offers_only_the_firms_own_unlinked_client_users(client, world):
    with firm_scope(world.firm_a):
        linked_elsewhere = create_firm_user(firm=world.firm_a, actor=None, username="alpha_c2",
                                            role="client")
        other = book.create_client(
            firm=world.firm_a, actor=None, kind="person", name="Other", email="o@a.example",
            born_or_incorporated_on=date(1980, 1, 1), investment_objective="growth",
            annual_income=Decimal(1), net_worth=Decimal(1), liquid_net_worth=Decimal(1),
            portal_user=linked_elsewhere)
    assert other.portal_user_id == linked_elsewhere.pk
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    page = client.get(_change_url(world.a.client))
    assert page.status_code == 200
    choices = {int(str(v)) for v, _ in
               page.context["adminform"].form.fields["portal_user"].choices if str(v)}
    assert choices == {world.a.users["client"].pk}  # not staff, not beta's, not linked elsewhere


def test_a_foreign_portal_user_posted_anyway_is_refused_and_nothing_is_written(client, world):
    foreign = world.b.users["client"]
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    events_before = audit.events_for(world.firm_a).count()
    response = client.post(_change_url(world.a.client),
                           _form_data(world.a.client, portal_user=foreign.pk))
    assert response.status_code == 200  # the form again, with its error; not a 302
    assert "portal_user" in response.context["adminform"].form.errors
    assert _portal_user_id(world.a.client) is None
    assert audit.events_for(world.firm_a).count() == events_before


def test_the_firms_own_client_user_is_linked_and_the_audit_shows_it(client, world):
    own = world.a.users["client"]
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    response = client.post(_change_url(world.a.client), _form_data(world.a.client,
                                                                   portal_user=own.pk))
    assert response.status_code == 302
    assert _portal_user_id(world.a.client) == own.pk
    event = audit.events_for(world.firm_a).filter(event_type="client.updated").last()
    assert event.before["portal_user"] is None
    assert event.after["portal_user"] == own.username
    assert event.actor == world.a.users["firm_admin"]


@pytest.mark.parametrize("who", ["foreign client", "own staff", "linked elsewhere"])
def test_the_service_refuses_a_portal_user_that_is_not_the_firms_free_client_user(world, who):
    admin = world.a.users["firm_admin"]
    with firm_scope(world.firm_a):
        if who == "linked elsewhere":
            user = world.a.users["client"]
            book.create_client(
                firm=world.firm_a, actor=admin, kind="person", name="First", email="f@a.example",
                born_or_incorporated_on=date(1980, 1, 1), investment_objective="growth",
                annual_income=Decimal(1), net_worth=Decimal(1), liquid_net_worth=Decimal(1),
                portal_user=user)
        else:
            user = world.b.users["client"] if who == "foreign client" else admin
        with pytest.raises(book.BookError) as refused:
            book.update_client(client=world.a.client, actor=admin, portal_user=user)
        assert refused.value.field == "portal_user"
        with pytest.raises(book.BookError) as refused:
            book.create_client(
                firm=world.firm_a, actor=admin, kind="person", name="New", email="n@a.example",
                born_or_incorporated_on=date(1980, 1, 1), investment_objective="growth",
                annual_income=Decimal(1), net_worth=Decimal(1), liquid_net_worth=Decimal(1),
                portal_user=user)
        assert refused.value.field == "portal_user"
        assert not Client.objects.filter(name="New").exists()
    assert _portal_user_id(world.a.client) is None


def test_an_unknown_client_field_is_refused_by_name(world):
    with firm_scope(world.firm_a), pytest.raises(book.BookError) as refused:
        book.update_client(client=world.a.client, actor=world.a.users["firm_admin"],
                           firm=world.firm_b)
    assert refused.value.field == "firm"


@pytest.mark.parametrize(("whose", "status"), [("own", 302), ("foreign", 200)])
def test_a_new_client_gets_only_the_firms_own_client_user(client, world, whose, status):
    user = world.a.users["client"] if whose == "own" else world.b.users["client"]
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    data = _form_data(world.a.client, name="New client", portal_user=user.pk)
    response = client.post(reverse("admin:accounts_client_add"), data)
    assert response.status_code == status
    created = Client.cross_firm.for_compliance(reason="test").filter(name="New client").first()
    if whose == "own":
        assert created.firm == world.firm_a and created.portal_user == user
        event = audit.events_for(world.firm_a).get(event_type="client.created",
                                                   object_id=str(created.pk))
        assert event.after["portal_user"] == user.username
    else:
        assert created is None
        assert "portal_user" in response.context["adminform"].form.errors


def test_a_client_whose_portal_user_was_deactivated_can_still_be_edited(client, world):
    # The form offers active users only, but a client's own current login stays a choice:
    # otherwise deactivating a client user locks every later edit of their client record.
    own = world.a.users["client"]
    admin = world.a.users["firm_admin"]
    with firm_scope(world.firm_a):
        book.update_client(client=world.a.client, actor=admin, portal_user=own)
        update_firm_user(firm=world.firm_a, user=own, actor=admin, is_active=False)
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    linked = Client.cross_firm.for_compliance(reason="test").get(pk=world.a.client.pk)
    response = client.post(_change_url(linked), _form_data(linked, phone="+1 212 555 0100"))
    assert response.status_code == 302
    edited = Client.cross_firm.for_compliance(reason="test").get(pk=world.a.client.pk)
    assert (edited.phone, edited.portal_user_id) == ("+1 212 555 0100", own.pk)
