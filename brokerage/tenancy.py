"""Who belongs to which firm, and tenant-aware helpers shared by admin and API."""

from __future__ import annotations

from django.db import transaction

from . import audit
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
