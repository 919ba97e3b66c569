"""Builders for test data, written through the services (so audit events exist too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.contrib.auth import get_user_model

from accounts import services as book
from accounts.models import Account, Client, Instrument
from brokerage.models import Firm
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import add_member

PASSWORD = "correct-horse-battery"


@dataclass
class FirmWorld:
    firm: Firm
    users: dict[str, object] = field(default_factory=dict)
    client: Client | None = None
    account: Account | None = None


@dataclass
class World:
    firm_a: Firm
    firm_b: Firm
    a: FirmWorld
    b: FirmWorld


def log_in(client, user, *, password: str | None = None, second_factor: bool = True) -> bool:
    """The one way tests log a user in on a test client, through the real mechanisms.

    With a password: Django's authenticate with a request, as the login door calls it (so
    django-axes counts a failure); without: `force_login`. Then a staff user (or anyone with an
    authenticator) gets a confirmed TOTP device verified in that session by `django_otp.login`,
    what the code step does; `second_factor=False` leaves the session owing its code.
    Returns whether the user is logged in."""
    from django.http import HttpRequest
    from django.test import RequestFactory
    from django_otp import login as otp_login
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from brokerage.second_factor import AUTHENTICATOR, requires_second_factor

    if isinstance(user, str):
        username = user
        user = get_user_model().objects.filter(username=username).first()
    else:
        username = user.username
    if password is not None:
        door = RequestFactory().post("/accounts/login/")
        if not client.login(request=door, username=username, password=password):
            return False
    else:
        client.force_login(user)
    if second_factor and requires_second_factor(user):
        device = (TOTPDevice.objects.filter(user=user, confirmed=True).first()
                  or TOTPDevice.objects.create(user=user, name=AUTHENTICATOR, confirmed=True))
        request = HttpRequest()
        request.session, request.user = client.session, user
        otp_login(request, device)
        request.session.save()
    return True


def make_user(username: str, *, staff: bool = True):
    User = get_user_model()
    return User.objects.create_user(username=username, password=PASSWORD, is_staff=staff,
                                    email=f"{username}@example.com")


def make_firm(slug: str) -> FirmWorld:
    firm = Firm.objects.create(name=f"Firm {slug.upper()}", slug=slug)
    world = FirmWorld(firm=firm)
    for role in Role:
        user = make_user(f"{slug}_{role.value}", staff=role != Role.CLIENT)
        add_member(firm=firm, user=user, role=role)
        world.users[role.value] = user
    with firm_scope(firm):
        admin = world.users[Role.FIRM_ADMIN.value]
        world.client = book.create_client(
            firm=firm, actor=admin, kind="person", name=f"Client of {slug}",
            email=f"client@{slug}.example", born_or_incorporated_on=date(1970, 1, 1),
            investment_objective="growth", years_trading_stocks=10, years_trading_options=5,
            options_approval_level=4, annual_income=Decimal("250000"),
            net_worth=Decimal("2000000"), liquid_net_worth=Decimal("900000"),
        )
        world.account = book.open_account(client=world.client, number=f"{slug.upper()}-0001",
                                          registration="individual", margin_type="reg_t",
                                          actor=admin, opened_on=date(2025, 1, 2))
    return world


def make_world() -> World:
    a, b = make_firm("alpha"), make_firm("beta")
    return World(firm_a=a.firm, firm_b=b.firm, a=a, b=b)


def shared_instrument(symbol: str, kind: str = "stock", product_class: str = "equity",
                      **extra) -> Instrument:
    instrument, _ = Instrument.cross_firm.for_compliance(reason="test reference data").get_or_create(
        symbol=symbol, firm=None,
        defaults={"kind": kind, "product_class": product_class, "class_group": symbol,
                  "product_group": symbol, **extra})
    return instrument


def value_each_firms_account(world: World, *, value: bool = True) -> World:
    """Each firm's account holds 10 ACME at 100, is granted to its client user and valued once
    (a snapshot the portal shows; ``value=False`` leaves the valuing to the test)."""
    from django.utils import timezone

    from margin.market_data import load_prices
    from margin.tasks import recompute_accounts

    stock = shared_instrument("ACME")
    load_prices(observations=[{"symbol": "ACME", "price": "100",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    for fw in (world.a, world.b):
        with firm_scope(fw.firm):
            admin = fw.users[Role.FIRM_ADMIN.value]
            book.set_position(account=fw.account, instrument=stock, quantity=Decimal(10),
                              actor=admin)
            book.grant_account_access(account=fw.account, user=fw.users[Role.CLIENT.value],
                                      actor=admin)
        if value:
            recompute_accounts(fw.firm.pk, [fw.account.pk])
    return world
