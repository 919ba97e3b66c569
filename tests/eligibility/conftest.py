"""Fixtures for the eligibility tests: a firm-A desk with an account ready for portfolio margin.

`desk` builds on the shared two-firm `world`: the firm-A client gets a portal user, the PM risk
disclosure delivered and signed, and $200,000 of cash (above the $125,000 opening minimum), so
every rule passes until a test changes one thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client as TestClient
from django.utils import timezone

from accounts import services as book
from accounts.models import Account, Client
from brokerage.models import Firm
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import add_member
from eligibility.models import Application
from tests.factories import log_in, make_user

WEDNESDAY_BEFORE_THANKSGIVING = date(2026, 11, 25)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The world builds a dozen users; PBKDF2 would spend seconds per test hashing passwords.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@dataclass
class Desk:
    firm: Firm
    client: Client
    account: Account
    client_user: object
    admin: object  # firm_admin: may approve
    risk: object  # risk_officer: reviews (and may approve what others reviewed)
    risk2: object  # a second risk officer
    margin_desk: object  # may submit, never approve
    compliance: object  # reads only
    other_firm_admin: object
    other_firm: Firm


def deposit(account: Account, amount: str, actor=None) -> None:
    book.post_ledger_entry(account=account, kind="deposit", amount=Decimal(amount), actor=actor,
                           effective_at=timezone.now() - timedelta(minutes=1))


def withdraw(account: Account, amount: str, actor=None) -> None:
    book.post_ledger_entry(account=account, kind="withdrawal", amount=-Decimal(amount),
                           actor=actor, effective_at=timezone.now() - timedelta(minutes=1))


def sign_pm_disclosure(client: Client, actor, *, acknowledged: bool = True) -> None:
    book.deliver_disclosure(client=client, document="portfolio_margin", actor=actor,
                            acknowledged=acknowledged,
                            at=timezone.make_aware(datetime(2026, 11, 2, 10, 0)))


@pytest.fixture
def desk(world) -> Desk:
    users = world.a.users
    with firm_scope(world.firm_a):
        risk2 = make_user("alpha_risk_officer_2")
        add_member(firm=world.firm_a, user=risk2, role=Role.RISK_OFFICER)
        client = book.update_client(client=world.a.client, actor=users["firm_admin"],
                                    portal_user=users["client"])
        sign_pm_disclosure(client, users["firm_admin"])
        deposit(world.a.account, "200000", users["margin_desk"])
    return Desk(firm=world.firm_a, client=client, account=world.a.account,
                client_user=users["client"], admin=users["firm_admin"],
                risk=users["risk_officer"], risk2=risk2, margin_desk=users["margin_desk"],
                compliance=users["compliance_officer"], other_firm_admin=world.b.users["firm_admin"],
                other_firm=world.firm_b)


def someone_elses_account(desk: Desk, *, name: str, email: str) -> Account:
    """A Reg T account of another client of the desk's firm (not the client user's)."""
    client = book.create_client(
        firm=desk.firm, actor=desk.admin, kind="person", name=name, email=email,
        born_or_incorporated_on=date(1980, 1, 1), investment_objective="growth",
        annual_income=Decimal("1"), net_worth=Decimal("1"), liquid_net_worth=Decimal("1"))
    return book.open_account(client=client, number="ALPHA-0002", registration="individual",
                             margin_type="reg_t", actor=desk.admin)


def funded_account(desk: Desk, *, number: str, registration: str, margin_type: str,
                   cash: str) -> Account:
    """Another account of the desk's client, opened and funded with `cash`."""
    account = book.open_account(client=desk.client, number=number, registration=registration,
                                margin_type=margin_type, actor=desk.admin)
    book.post_ledger_entry(account=account, kind="deposit", amount=Decimal(cash), actor=None)
    return account


def logged_in(user, client_class: type[TestClient] = TestClient) -> TestClient:
    """A test client (Django's, or DRF's `APIClient`) with `user` logged in."""
    client = client_class()
    log_in(client, user)
    return client


def state_of(pk: int) -> str:
    """An application's state as stored now, whichever firm is in scope."""
    return Application.cross_firm.for_compliance(reason="test assertion").get(pk=pk).state


@pytest.fixture
def in_desk_firm(desk):
    with firm_scope(desk.firm):
        yield desk


def reviewed_application(desk: Desk, *, reviewer=None, recommendation: str = "approve",
                         submitter=None):
    """A client-submitted application reviewed by the risk officer (state under_review)."""
    from eligibility import services

    application = services.create_application(account=desk.account,
                                              actor=submitter or desk.client_user, submit=True,
                                              today=WEDNESDAY_BEFORE_THANKSGIVING)
    return services.review_application(application=application, reviewer=reviewer or desk.risk,
                                       recommendation=recommendation,
                                       notes="" if recommendation == "approve" else "too thin")
