"""Login throttling and lockout (django-axes), its audit trail, and unlock by a firm admin.

Every password login goes through `django.contrib.auth.authenticate` with the request, whatever
the door (/accounts/login/, /admin/login/), so django-axes' backend, first in
AUTHENTICATION_BACKENDS, sees every attempt. A user is locked out after AXES_FAILURE_LIMIT
failures and an address after LOGIN_ADDRESS_FAILURE_LIMIT, within the cool-off
(AXES_COOLOFF_TIME); a firm admin unlocks one of the firm's users sooner (`unlock_login`).
Failed and refused logins are recorded on the firm's chain of the user named (the platform
chain for a name no firm knows): with no one logged in, the actor is the system.
This module imports no app.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.dispatch import receiver
from django.utils import timezone

from . import audit
from .errors import NotFound
from .models import Membership
from .roles import Role
from .tenancy import require_tenant_actor

_NAME_LIMIT = 150  # Django's username length: an attacker's longer string is cut, not stored


class LoginLockoutHandler(AxesDatabaseHandler):
    """axes' database handler with a limit per kind: AXES_FAILURE_LIMIT failures lock a user
    out, LOGIN_ADDRESS_FAILURE_LIMIT an address (AXES_LOCKOUT_PARAMETERS = username, address).

    axes compares one count with one limit, so the address's count is scaled to the user's
    limit: the address reaches it exactly when it reaches its own."""

    def failures_by_kind(self, request, credentials=None) -> tuple[int, int]:
        by_user, by_address = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials))
        return by_user, by_address

    def get_failures(self, request, credentials=None) -> int:
        by_user, by_address = self.failures_by_kind(request, credentials)
        return max(by_user,
                   by_address * settings.AXES_FAILURE_LIMIT // settings.LOGIN_ADDRESS_FAILURE_LIMIT)


def client_address(request) -> str | None:
    """The address a login attempt comes from. Behind N trusted proxies
    (LOGIN_TRUSTED_PROXIES), the N-th entry from the right of X-Forwarded-For: the one the
    outermost trusted proxy appended (entries further left are the client's to forge). Else
    REMOTE_ADDR, the peer itself."""
    proxies = settings.LOGIN_TRUSTED_PROXIES
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
                 if a.strip()]
    if proxies > 0 and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def _cool_off_start():
    return timezone.now() - settings.AXES_COOLOFF_TIME


def with_recent_failed_logins(users: QuerySet) -> QuerySet:
    """Users annotated with `recent_failed_logins`: their failures within the cool-off."""
    failures = (AccessAttempt.objects.filter(username=OuterRef("username"),
                                             attempt_time__gte=_cool_off_start())
                .order_by().values("username").annotate(n=Sum("failures_since_start"))
                .values("n")[:1])
    return users.annotate(recent_failed_logins=Coalesce(Subquery(failures), 0))


def is_locked_out(recent_failed_logins: int) -> bool:
    """Whether so many failures lock a user out (their own, not their address's)."""
    return recent_failed_logins >= settings.AXES_FAILURE_LIMIT


def _chain_of(username: str):
    """The firm of the user so named and the user, or (None, None): the platform chain."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        return None, None
    membership = Membership.cross_firm.for_compliance(
        reason="record a failed login on the user's firm's chain").select_related(
        "firm").filter(user=user).first()
    return (membership.firm if membership else None), user


def _record_failed_login(request, credentials: dict[str, Any]) -> None:
    username = str(credentials.get("username") or "")[:_NAME_LIMIT]
    firm, user = _chain_of(username)
    by_user, by_address = LoginLockoutHandler().failures_by_kind(request, credentials)
    seen = {"username": username, "ip": getattr(request, "axes_ip_address", None) or "",
            "door": request.path[:200]}
    target = {"object_type": "auth.user", "object_id": user.pk if user else ""}
    with transaction.atomic():
        # axes refused the attempt before any password was checked: the account (or address)
        # was already locked out.
        if getattr(request, "axes_failures_since_start", None) is None and getattr(
                request, "axes_locked_out", False):
            audit.record(firm=firm, actor=None, event_type="login.refused_locked_out",
                         **target, after=seen)
            return
        audit.record(firm=firm, actor=None, event_type="login.failed", **target,
                     after={**seen, "failures": by_user, "address_failures": by_address})
        if getattr(request, "axes_locked_out", False):
            locked = [kind for kind, count, limit in (
                ("user", by_user, settings.AXES_FAILURE_LIMIT),
                ("address", by_address, settings.LOGIN_ADDRESS_FAILURE_LIMIT)) if count >= limit]
            audit.record(firm=firm, actor=None, event_type="login.locked_out", **target,
                         after={**seen, "locked": locked, "failures": by_user,
                                "address_failures": by_address,
                                "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)})


@receiver(user_login_failed, dispatch_uid="brokerage.logins.audit_failed_login")
def audit_failed_login(sender, credentials, request=None, **kwargs) -> None:
    # Connected after axes' own receiver (brokerage follows axes in INSTALLED_APPS), so the
    # request already says whether axes refused it, counted it, or locked it out.
    if request is None:
        return  # authenticate() without a request (a shell): no door, nothing to lock
    _record_failed_login(request, credentials)


def unlock_login(*, firm, user, actor) -> int:
    """Clear the failed logins of one of the firm's users (its firm admin's door); returns how
    many attempt records were cleared. An address's own lockout runs its cool-off."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    with transaction.atomic():
        member = Membership.cross_firm.for_compliance(reason="unlock the firm's own user").filter(
            user_id=user.pk).first()
        if member is None or member.firm_id != firm.pk:
            raise NotFound("no such user in your firm", field="user")
        was_locked = is_locked_out(with_recent_failed_logins(
            get_user_model().objects.filter(pk=user.pk)).get().recent_failed_logins)
        cleared, _ = AccessAttempt.objects.filter(username=user.username).delete()
        audit.record(firm=firm, actor=actor, event_type="login.unlocked", obj=user,
                     after={"username": user.username, "was_locked_out": was_locked,
                            "attempt_records_cleared": cleared})
    return cleared
