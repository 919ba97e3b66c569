"""Tenant isolation: scoped querysets, admin changelists, 404 across firms, fail-closed reads."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from accounts import services as book
from accounts.models import Account, Client, Instrument, LedgerEntry, Position
from brokerage.models import Membership, TenantModel
from brokerage.scope import NoFirmInScope, firm_scope
from tests.factories import PASSWORD, log_in, shared_instrument

pytestmark = pytest.mark.django_db


def tenant_models():
    return [m for m in apps.get_models() if issubclass(m, TenantModel)]


def _populate(world):
    stock = shared_instrument("ACME")
    for fw in (world.a, world.b):
        with firm_scope(fw.firm):
            admin_user = fw.users["firm_admin"]
            book.post_ledger_entry(account=fw.account, kind="deposit", amount=Decimal("1000"),
                                   actor=admin_user)
            book.set_position(account=fw.account, instrument=stock, quantity=Decimal(10),
                              actor=admin_user)
            book.deliver_disclosure(client=fw.client, document="portfolio_margin",
                                    actor=admin_user)


def test_every_tenant_model_is_scoped_to_the_firm_in_scope(world):
    _populate(world)
    assert len(tenant_models()) >= 6
    for model in tenant_models():
        with firm_scope(world.firm_a):
            firms_seen = set(model.objects.values_list("firm_id", flat=True))
        assert firms_seen <= {world.firm_a.pk}, model
        if model.cross_firm.for_compliance(reason="test").filter(firm=world.firm_b).exists():
            with firm_scope(world.firm_a):
                assert not model.objects.filter(firm=world.firm_b).exists(), model


@pytest.mark.parametrize("model", [Client, Account, Position, LedgerEntry, Membership])
def test_a_read_without_a_firm_in_scope_raises(world, model):
    with pytest.raises(NoFirmInScope):
        list(model.objects.all())


def test_cross_firm_read_is_explicit_and_states_a_reason(world):
    assert Account.cross_firm.for_compliance(reason="test").count() == 2
    with pytest.raises(ValueError):
        Account.cross_firm.for_compliance(reason="")


def test_shared_instruments_are_visible_to_both_firms_but_lp_instruments_are_not(world):
    shared = shared_instrument("ACME")
    lp = Instrument.cross_firm.for_compliance(reason="test").create(
        firm=world.firm_b, symbol="LP-1", kind="uniswap_v3_lp", product_class="crypto",
        class_group="ETH", product_group="ETH")
    with firm_scope(world.firm_a):
        assert set(Instrument.objects.values_list("pk", flat=True)) == {shared.pk}
    with firm_scope(world.firm_b):
        assert set(Instrument.objects.values_list("pk", flat=True)) == {shared.pk, lp.pk}


def _admin_models():
    return [model for model in admin.site._registry if model._meta.app_label in
            ("accounts", "brokerage", "margin", "eligibility")]


def test_every_admin_changelist_shows_only_its_own_firm(client, world):
    _populate(world)
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    b_account = world.b.account
    for model in _admin_models():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert b_account.number not in body, url
        assert world.b.client.name not in body, url


def test_another_firms_object_is_a_404_in_the_admin(client, world):
    log_in(client, "alpha_risk_officer", password=PASSWORD)
    url = reverse("admin:accounts_account_change", args=[world.b.account.pk])
    assert client.get(url).status_code == 404
    own = reverse("admin:accounts_account_change", args=[world.a.account.pk])
    assert client.get(own).status_code == 200


def test_tenant_users_hold_no_global_model_permission(world):
    for fw in (world.a, world.b):
        for user in fw.users.values():
            assert not user.user_permissions.exists()
            assert not user.is_superuser


def test_a_client_user_cannot_enter_the_staff_admin(client, world):
    log_in(client, "alpha_client", password=PASSWORD)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302  # not staff: sent to the login page


def test_a_user_belongs_to_exactly_one_firm(world):
    from brokerage.tenancy import add_member

    with pytest.raises(ValueError):
        add_member(firm=world.firm_b, user=world.a.users["margin_desk"], role="margin_desk")
