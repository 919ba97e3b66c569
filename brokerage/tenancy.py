"""Who belongs to which firm, and tenant-aware helpers shared by admin and API."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from . import audit
from .errors import InvalidInput
from .models import Firm, Membership
from .roles import STAFF_ROLES, Role


def membership_of(user) -> Membership | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        return Membership.cross_firm.for_compliance(reason="resolve the user's own firm").select_related(
            "firm"
        ).get(user=user)
    except Membership.DoesNotExist:
        return None


def firm_of(user) -> Firm | None:
    membership = membership_of(user)
    return membership.firm if membership else None


def role_of(user) -> str | None:
    membership = membership_of(user)
    return membership.role if membership else None


def is_staff_member(user) -> bool:
    return role_of(user) in STAFF_ROLES


def is_platform_operator(user) -> bool:
    """The installation's own staff: no firm; every cross-firm read they make is audited."""
    return bool(getattr(user, "is_authenticated", False) and user.is_superuser
                and membership_of(user) is None)


def add_member(*, firm: Firm, user, role: Role | str, actor=None) -> Membership:
    """Make `user` a member of `firm` with `role` (a user belongs to exactly one firm)."""
    with transaction.atomic():
        if Membership.cross_firm.for_compliance(reason="one firm per user").filter(
            user=user
        ).exists():
            raise ValueError(f"user {user.username} already belongs to a firm")
        membership = Membership.objects.model(firm=firm, user=user, role=Role(role))
        membership.save()
        audit.record(firm=firm, actor=actor, event_type="membership.created", obj=membership,
                     after={"user": user.username, "role": str(role)})
    return membership


def create_firm(*, name: str, slug: str, actor=None, exchange_calendar: str = "XNYS") -> Firm:
    """Open a tenant. Firms are the platform's to open, so this is audited on its chain."""
    with transaction.atomic():
        for field, value in (("slug", slug), ("name", name)):
            if Firm.objects.filter(**{field: value}).exists():
                raise InvalidInput(f"a firm with {field} {value!r} already exists", field=field)
        firm = Firm(name=name, slug=slug, exchange_calendar=exchange_calendar)
        firm.full_clean()
        firm.save()
        audit.record(firm=None, actor=actor, event_type="firm.created", obj=firm,
                     after={"name": name, "slug": slug, "exchange_calendar": exchange_calendar})
    return firm


def create_member(*, firm: Firm, username: str, email: str, password: str, role: Role | str,
                  actor=None) -> Membership:
    """A new login of `firm` with `role`: the user and its membership in one transaction,
    audited on the firm's chain (never the password).

    Staff roles may open the staff desk (is_staff); clients only their portal. Nobody made here
    is a superuser: what a member may do comes from the role.
    """
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput(f"{role!r} is not a firm role", field="role") from None
    User = get_user_model()
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise InvalidInput(f"the username {username!r} is taken", field="username")
        user = User.objects.create_user(username=username, email=email, password=password,
                                        is_staff=role in STAFF_ROLES)
        audit.record(firm=firm, actor=actor, event_type="user.created", object_type="auth.user",
                     object_id=user.pk,
                     after={"username": username, "email": email, "is_staff": user.is_staff})
        return add_member(firm=firm, user=user, role=role, actor=actor)
