"""Staff logins are audited (DEVELOPERS.md: every state change that matters)."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.dispatch import receiver

from . import audit
from .tenancy import membership_of


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs) -> None:
    membership = membership_of(user)
    if membership is None and not user.is_superuser:
        return
    if membership is not None and membership.role == "client":
        return
    with transaction.atomic():
        audit.record(
            firm=membership.firm if membership else None,
            actor=user,
            event_type="staff.login",
            object_type="auth.user",
            object_id=user.pk,
            after={"ip": request.META.get("REMOTE_ADDR", "") if request else ""},
        )
