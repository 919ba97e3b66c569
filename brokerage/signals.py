"""Logins of staff and platform users are audited; no user is ever saved as a superuser; no
one writes a firm's data but its own members (or the system)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone

from . import audit
from .errors import NotPermitted
from .middleware import SESSION_LAST_SEEN_AT, SESSION_STARTED_AT
from .models import AuditEvent, Membership
from .tenancy import membership_of, platform_role_of, require_tenant_actor


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs) -> None:
    ip = request.META.get("REMOTE_ADDR", "") if request else ""
    membership = membership_of(user)
    if membership is None:
        platform_role = platform_role_of(user)
        if platform_role is None:
            return
        with transaction.atomic():  # the platform's own people: on the platform chain
            audit.record(firm=None, actor=user, event_type="platform.login",
                         object_type="auth.user", object_id=user.pk,
                         after={"ip": ip, "role": platform_role})
        return
    if membership.role == "client":
        return
    with transaction.atomic():
        audit.record(firm=membership.firm, actor=user, event_type="staff.login",
                     object_type="auth.user", object_id=user.pk, after={"ip": ip})


@receiver(user_logged_in, dispatch_uid="brokerage.signals.start_session_clock")
def start_session_clock(sender, request, user, **kwargs) -> None:
    """The clock of the session's idle and absolute limits (SessionExpiryMiddleware)."""
    if request is not None and hasattr(request, "session"):
        now = timezone.now().timestamp()
        request.session[SESSION_STARTED_AT] = now
        request.session[SESSION_LAST_SEEN_AT] = now


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def refuse_superusers(sender, instance, **kwargs) -> None:
    # A superuser bypasses every role, scope and audit rule (and `createsuperuser` would still
    # make one): rights come from a firm role or a platform role, never from this flag.
    if instance.is_superuser:
        raise NotPermitted("no user is a superuser: platform users are created with "
                           "`manage.py create_platform_user USERNAME --role auditor|market_data`",
                           field="is_superuser")


@receiver(pre_save, sender=AuditEvent)
def refuse_outside_actors(sender, instance: AuditEvent, **kwargs) -> None:
    """The backstop behind every service's own check: each change to a firm's data is recorded
    on its chain inside the change's transaction, so refusing the record refuses the change.
    A platform user, or a member of another firm, is never the actor of a firm's event."""
    if instance.firm_id is None or instance.actor_id is None:
        return  # the platform chain, or the system acting
    member_of = Membership.cross_firm.for_compliance(reason="the actor's own firm").filter(
        user_id=instance.actor_id).values_list("firm_id", flat=True).first()
    if member_of != instance.firm_id:
        require_tenant_actor(firm=instance.firm, actor=instance.actor)
