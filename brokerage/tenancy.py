"""Who belongs to which firm, the platform's own users, and the services that administer both.

Two kinds of people log in. A firm's people hold one Membership with a tenant role; their
firm's admin creates and changes them (audited on the firm's chain). The platform's people
(auditor, market-data operator) hold one PlatformRole and no Membership; management commands
create and change them (audited on the platform chain), and they write no tenant data. No one
is a Django superuser: rights come from the role, never from a flag.
"""

from __future__ import annotations

import getpass
from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import audit
from .errors import IllegalTransition, InvalidInput, NotFound, NotPermitted
from .models import Firm, Membership, PlatformRole, validate_time_zone
from .roles import STAFF_ROLES, PlatformRoleName, Role


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


def platform_role_of(user) -> str | None:
    """The user's platform role (auditor, market_data), or None for everyone else."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    return PlatformRole.objects.filter(user=user).values_list("role", flat=True).first()


def is_platform_auditor(user) -> bool:
    """Who may export every firm's audit trail (with a reason, recorded on the platform chain)."""
    return platform_role_of(user) == PlatformRoleName.AUDITOR and membership_of(user) is None


def require_tenant_actor(*, firm: Firm, actor, roles: Collection[str] | None = None) -> None:
    """Refuse a write to `firm`'s data by anyone but its own members (of `roles` if given).

    `actor=None` is the system itself (tasks, loaders, the demo seed). A platform user is
    refused whatever door they come through: the platform reads, it never writes a firm's book.
    A member of another firm is told the object does not exist (404, never a hint).
    """
    if actor is None:
        return
    if PlatformRole.objects.filter(user_id=actor.pk).exists():
        raise NotPermitted("platform users make no changes to a firm's data", field="actor")
    membership = membership_of(actor)
    if membership is None:
        raise NotPermitted("only a member of the firm changes its data", field="actor")
    if membership.firm_id != firm.pk:
        raise NotFound("no such object in your firm")
    if roles is not None and membership.role not in roles:
        raise NotPermitted(f"a {membership.get_role_display().lower()} may not do this",
                           field="actor")


def add_member(*, firm: Firm, user, role: Role | str, actor=None) -> Membership:
    """Make `user` a member of `firm` with `role` (a user belongs to exactly one firm)."""
    with transaction.atomic():
        if Membership.cross_firm.for_compliance(reason="one firm per user").filter(
            user=user
        ).exists():
            raise ValueError(f"user {user.username} already belongs to a firm")
        if PlatformRole.objects.filter(user=user).exists():
            raise NotPermitted(f"user {user.username} is a platform user and joins no firm",
                               field="user")
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


def set_firm_time_zone(*, firm: Firm, actor, time_zone: str) -> Firm:
    """The zone the firm's people see times in (an IANA name); set by its firm admin."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    try:
        validate_time_zone(time_zone)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], field="time_zone") from None
    with transaction.atomic():
        locked = Firm.objects.select_for_update().get(pk=firm.pk)
        before = locked.time_zone
        locked.time_zone = time_zone
        locked.save(update_fields=["time_zone"])
        audit.record(firm=locked, actor=actor, event_type="firm.time_zone_set", obj=locked,
                     before={"time_zone": before}, after={"time_zone": time_zone})
    return locked


def set_firm_intraday_regime(*, firm: Firm, actor, regime: str) -> Firm:
    """The regime the firm's new accounts take ("legacy_pdt" or "intraday": FINRA's intraday
    margin standard, phased in by account until 20 October 2027); set by its firm admin.
    Existing accounts move one by one (``accounts.services.set_regime``)."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    allowed = [value for value, _ in Firm._meta.get_field("intraday_regime").choices]
    if regime not in allowed:
        raise InvalidInput(f"{regime!r} is not a regime; one of {', '.join(allowed)}",
                           field="intraday_regime")
    with transaction.atomic():
        locked = Firm.objects.select_for_update().get(pk=firm.pk)
        before = locked.intraday_regime
        locked.intraday_regime = regime
        locked.save(update_fields=["intraday_regime"])
        audit.record(firm=locked, actor=actor, event_type="firm.intraday_regime_set",
                     obj=locked, before={"intraday_regime": before},
                     after={"intraday_regime": regime})
    return locked


# -- a firm's users, administered by its firm admin ------------------------------------------

USER_FIELDS = ("first_name", "last_name", "email", "is_active")


def _user_snapshot(user, membership: Membership) -> dict[str, Any]:
    return {"username": user.username, **{name: getattr(user, name) for name in USER_FIELDS},
            "role": membership.role, "is_staff": user.is_staff}


def _checked_password(password: str, user, field: str = "password") -> str:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput("; ".join(exc.messages), field=field) from None
    return password


def _validated(user) -> None:
    """The model's own checks (username characters, email), refused as a DomainError."""
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput("; ".join(messages), field=field) from None


def _set_initial_password(user, password: str | None) -> None:
    # No password given: unusable until someone sets one through an audited door.
    if password:
        user.set_password(_checked_password(password, user))
    else:
        user.set_unusable_password()


def firm_users(firm: Firm):
    """The users of one firm (members of every role): what its admin sees and manages."""
    return get_user_model().objects.filter(
        pk__in=Membership.cross_firm.for_compliance(reason="the firm's own users").filter(
            firm=firm).values("user_id"))


def _firm_member(*, firm: Firm, user) -> Membership:
    membership = Membership.cross_firm.for_compliance(
        reason="lock the firm's own user").select_for_update().filter(user_id=user.pk).first()
    if membership is None or membership.firm_id != firm.pk:
        raise NotFound("no such user in your firm", field="user")
    return membership


def _keep_an_active_admin(*, firm: Firm, user, was_admin: bool, role: str,
                          is_active: bool) -> None:
    """A firm without an active admin could no longer administer its users: refuse that."""
    if not was_admin or (role == Role.FIRM_ADMIN and is_active):
        return
    others = Membership.cross_firm.for_compliance(reason="the firm keeps an admin").filter(
        firm=firm, role=Role.FIRM_ADMIN, user__is_active=True).exclude(user_id=user.pk)
    if not others.exists():
        raise NotPermitted("the firm keeps at least one active firm admin", field="role")


def check_firm_user_change(*, firm: Firm, user, role: str, is_active: bool) -> None:
    """What `update_firm_user` would refuse about a role or active change (for forms)."""
    membership = Membership.cross_firm.for_compliance(reason="the firm keeps an admin").filter(
        firm=firm, user_id=user.pk).first()
    if membership is None:
        raise NotFound("no such user in your firm", field="user")
    was_active = get_user_model().objects.filter(pk=user.pk).values_list(
        "is_active", flat=True).first()
    _keep_an_active_admin(firm=firm, user=user, role=role, is_active=is_active,
                          was_admin=membership.role == Role.FIRM_ADMIN and bool(was_active))


def create_firm_user(*, firm: Firm, actor, username: str, role: Role | str, email: str = "",
                     first_name: str = "", last_name: str = "",
                     password: str | None = None):
    """A new user of `firm` with `role`, created by its firm admin (or the system)."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    if role not in Role.values:
        raise InvalidInput(f"{role!r} is not a firm role", field="role")
    User = get_user_model()
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise InvalidInput(f"the username {username!r} is taken", field="username")
        user = User(username=username, email=email, first_name=first_name, last_name=last_name,
                    is_staff=role in STAFF_ROLES)
        _validated(user)
        _set_initial_password(user, password)
        user.save()
        membership = Membership(firm=firm, user=user, role=Role(role))
        membership.save()
        audit.record(firm=firm, actor=actor, event_type="user.created", obj=user,
                     after={**_user_snapshot(user, membership), "password_set": bool(password)})
    return user


def update_firm_user(*, firm: Firm, user, actor, **changes: Any):
    """Change a firm user's name, email, role or active flag (deactivate: is_active=False)."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    unknown = set(changes) - {*USER_FIELDS, "role"}
    if unknown:
        raise InvalidInput("not a user field that can be changed", field=sorted(unknown)[0])
    if "role" in changes and changes["role"] not in Role.values:
        raise InvalidInput(f"{changes['role']!r} is not a firm role", field="role")
    User = get_user_model()
    with transaction.atomic():
        membership = _firm_member(firm=firm, user=user)
        user = User.objects.select_for_update().get(pk=user.pk)
        before = _user_snapshot(user, membership)
        role = changes.pop("role", membership.role)
        for name, value in changes.items():
            setattr(user, name, value)
        _keep_an_active_admin(firm=firm, user=user, role=role, is_active=user.is_active,
                              was_admin=before["role"] == Role.FIRM_ADMIN and before["is_active"])
        user.is_staff = role in STAFF_ROLES  # the admin door follows the role
        _validated(user)
        user.save()
        if role != membership.role:
            membership.role = Role(role)
            membership.save(update_fields=["role"])
        after = _user_snapshot(user, membership)
        event = ("user.deactivated" if before["is_active"] and not user.is_active
                 else "user.reactivated" if user.is_active and not before["is_active"]
                 else "user.updated")
        audit.record(firm=firm, actor=actor, event_type=event, obj=user, before=before,
                     after=after)
    return user


def set_firm_user_password(*, firm: Firm, user, actor, password: str):
    """Reset a firm user's password (the firm admin's door; the password is never recorded)."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    with transaction.atomic():
        _firm_member(firm=firm, user=user)
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        user.set_password(_checked_password(password, user))
        user.save(update_fields=["password"])
        audit.record(firm=firm, actor=actor, event_type="user.password_set", obj=user,
                     after={"username": user.username})
    return user


def invite_firm_user(*, firm: Firm, actor, username: str, role: Role | str, email: str,
                     site_url: str, first_name: str = "", last_name: str = ""):
    """A new user of `firm` without a password, mailed (on commit) a link to set one.

    The link carries Django's password-reset token (`default_token_generator`): it expires
    after PASSWORD_RESET_TIMEOUT and dies once a password is set (the token hashes the
    password). `site_url` is the address the invitee opens it at (the inviting request's).
    """
    email = (email or "").strip()
    if not email:
        raise InvalidInput("an invitation needs the invitee's e-mail address", field="email")
    with transaction.atomic():
        user = create_firm_user(firm=firm, actor=actor, username=username, role=role,
                                email=email, first_name=first_name, last_name=last_name)
        audit.record(firm=firm, actor=actor, event_type="user.invited", obj=user,
                     after={"username": user.username, "email": email, "role": str(role)})
        _mail_invitation(firm=firm, user=user, role=str(role), actor=actor, site_url=site_url)
    return user


def resend_invitation(*, firm: Firm, user, actor, site_url: str):
    """A new invitation link for a firm user who has not chosen a password yet (the first
    expired or was lost); the earlier link still works until a password is set."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    with transaction.atomic():
        membership = _firm_member(firm=firm, user=user)
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        if not user.is_active:
            raise IllegalTransition(f"{user.username} is deactivated: reactivate them first",
                                    field="user")
        if user.has_usable_password():
            raise IllegalTransition(f"{user.username} has already chosen a password",
                                    field="user")
        if not user.email:
            raise InvalidInput(f"{user.username} has no e-mail address to send it to",
                               field="email")
        audit.record(firm=firm, actor=actor, event_type="user.invitation_resent", obj=user,
                     after={"username": user.username, "email": user.email})
        _mail_invitation(firm=firm, user=user, role=membership.role, actor=actor,
                         site_url=site_url)
    return user


def _mail_invitation(*, firm: Firm, user, role: str, actor, site_url: str) -> None:
    link = site_url.rstrip("/") + invitation_path(user)
    subject = f"{firm.name}: your login to the portfolio-margin back office"
    body = render_to_string("registration/invitation_email.txt", {
        "firm_name": firm.name, "user": user, "role": Role(role).label, "link": link,
        "inviter": (actor.get_full_name() or actor.username) if actor else firm.name,
        "valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)})
    recipient = user.email

    def send() -> None:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient], fail_silently=False)

    # The mail leaves only if the transaction commits (DESIGN.md: side effects on commit).
    transaction.on_commit(send, robust=True)


def invitation_path(user) -> str:
    """The set-password page of `user`'s invitation (uid and a password-reset token)."""
    return reverse("invitation-accept", kwargs={
        "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user)})


def invited_user(uidb64: str, token: str):
    """The active user an invitation link names, if its token still holds; else None."""
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (TypeError, ValueError, OverflowError):
        return None
    user = get_user_model().objects.filter(pk=pk, is_active=True).first()
    if user is None or not default_token_generator.check_token(user, token):
        return None
    return user


def accept_invitation(*, user, token: str, password: str):
    """The invitee sets their own password through the link (the token checked again under
    the row lock, so one link sets one password); recorded on their firm's chain."""
    with transaction.atomic():
        locked = get_user_model().objects.select_for_update().filter(
            pk=user.pk, is_active=True).first()
        if locked is None or not default_token_generator.check_token(locked, token):
            raise NotPermitted("this link has expired or was already used: ask your firm "
                               "admin for a new invitation", field="token")
        locked.set_password(_checked_password(password, locked, field="new_password1"))
        locked.save(update_fields=["password"])
        audit.record(firm=firm_of(locked), actor=locked, event_type="user.invitation_accepted",
                     obj=locked, after={"username": locked.username})
    return locked


def reset_second_factor(*, firm: Firm, user, actor) -> int:
    """Forget a firm user's authenticator and recovery codes (a lost phone): staff enrol a new
    one at their next page, a client logs in with the password alone until they enrol again.
    Returns how many devices were removed; refused when there is none."""
    require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    with transaction.atomic():
        _firm_member(firm=firm, user=user)
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        devices = [(TOTPDevice, "authenticator"), (StaticDevice, "recovery codes")]
        removed = {label: model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
                   for model, label in devices}
        if not any(removed.values()):
            raise IllegalTransition(f"{user.username} has no second factor to reset",
                                    field="user")
        audit.record(firm=firm, actor=actor, event_type="second_factor.reset", obj=user,
                     after={"username": user.username, "devices_removed": removed})
    return sum(removed.values())


# -- the platform's own users, administered by management commands ---------------------------

def _operator_note() -> dict[str, str]:
    # Commands run from a server shell with no logged-in user: the OS account says who ran them.
    try:
        return {"os_user": getpass.getuser()}
    except (KeyError, OSError):
        return {"os_user": ""}


def _platform_snapshot(user, role: str) -> dict[str, Any]:
    return {"username": user.username, "email": user.email, "role": role,
            "is_active": user.is_active}


def create_platform_user(*, username: str, role: PlatformRoleName | str, email: str = "",
                         password: str | None = None, actor=None):
    """A platform user (no firm, no tenant write), recorded on the platform chain."""
    if role not in PlatformRoleName.values:
        raise InvalidInput(f"{role!r} is not a platform role ({', '.join(PlatformRoleName.values)})",
                           field="role")
    User = get_user_model()
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise InvalidInput(f"the username {username!r} is taken", field="username")
        # is_staff stays False: the tenant admin has nothing for a platform user to see.
        user = User(username=username, email=email, is_staff=False, is_superuser=False)
        _validated(user)
        _set_initial_password(user, password)
        user.save()
        PlatformRole.objects.create(user=user, role=PlatformRoleName(role))
        audit.record(firm=None, actor=actor, event_type="platform_user.created", obj=user,
                     after={**_platform_snapshot(user, str(role)), "password_set": bool(password),
                            **_operator_note()})
    return user


def _locked_platform_user(username: str):
    User = get_user_model()
    user = User.objects.select_for_update().filter(username=username).first()
    platform_role = PlatformRole.objects.select_for_update().filter(user=user).first() if user else None
    if platform_role is None:
        raise NotFound(f"no platform user {username!r}", field="username")
    return user, platform_role


def change_platform_user(*, username: str, actor=None, role: PlatformRoleName | str | None = None,
                         is_active: bool | None = None, password: str | None = None):
    """Change a platform user's role, activate or deactivate them, or set their password."""
    if role is not None and role not in PlatformRoleName.values:
        raise InvalidInput(f"{role!r} is not a platform role ({', '.join(PlatformRoleName.values)})",
                           field="role")
    with transaction.atomic():
        user, platform_role = _locked_platform_user(username)
        before = _platform_snapshot(user, platform_role.role)
        if role is not None and role != platform_role.role:
            platform_role.role = PlatformRoleName(role)
            platform_role.save(update_fields=["role", "updated_at"])
        if is_active is not None:
            user.is_active = is_active
        if password:
            user.set_password(_checked_password(password, user))
        user.save(update_fields=["is_active", "password"])
        after = _platform_snapshot(user, platform_role.role)
        event = ("platform_user.deactivated" if before["is_active"] and not user.is_active
                 else "platform_user.changed")
        audit.record(firm=None, actor=actor, event_type=event, obj=user, before=before,
                     after={**after, "password_set": bool(password), **_operator_note()})
    return user
