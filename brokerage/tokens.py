"""API tokens for scripts: created and revoked by firm admins (or the system, from
``manage.py create_api_token``), presented as ``Authorization: Bearer <token>``.

A token acts as its user, through the same tenancy path as a session (the user's membership
gives the firm and the role, `TenantScopedMixin` puts the firm in scope): it grants nothing
the user does not hold, and a read-only token only reads. A platform user's token (no firm) is
issued and revoked from a shell and audited on the platform chain. Only the token's sha256 is stored;
the secret is returned once, by `create_api_token`. Creation, the first use from an address
and revocation are audit events on the firm's chain, each in the transaction of its change.
This module imports no app (brokerage core).
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import audit
from .errors import IllegalTransition, InvalidInput, NotFound, NotPermitted
from .models import ApiToken, AuditEvent, Firm, Membership
from .roles import Role
from .tenancy import membership_of, platform_role_of, require_tenant_actor

#: every token starts so: secret scanners and people recognise it
TOKEN_SCHEME = "pmt_"
PREFIX_LENGTH = 12  # "pmt_" and 8 characters of the secret: enough to tell tokens apart
MAX_EXPIRES_DAYS = 3650
NAME_LENGTH = 100  # ApiToken.name
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenRefused(Exception):
    """The token authenticates no one (unknown, expired, revoked, its user gone or moved)."""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the whole token, shown once


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _snapshot(token: ApiToken) -> dict:
    return {"prefix": token.prefix, "name": token.name, "user": token.user.username,
            "read_only": token.read_only,
            "expires_at": token.expires_at, "revoked_at": token.revoked_at}


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def create_api_token(*, user, actor, read_only: bool = False,
                     expires_days: int | None = None, name: str = "") -> IssuedToken:
    """A new token for `user`, created by the system (``actor=None``, the management
    command) or, for a member of a firm, by that firm's admin. A platform user's token has no
    firm and is the system's to issue. The secret is in the result only."""
    firm = _firm_of_holder(user)
    if firm is not None:
        require_tenant_actor(firm=firm, actor=actor, roles={Role.FIRM_ADMIN})
    elif actor is not None:
        raise NotPermitted("a platform user's token is issued from a shell "
                           "(manage.py create_api_token)", field="user")
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        raise InvalidInput(f"between 1 and {MAX_EXPIRES_DAYS} days", field="expires_days")
    name = (name or "").strip()
    if len(name) > NAME_LENGTH:
        raise InvalidInput(f"at most {NAME_LENGTH} characters", field="name")
    secret = TOKEN_SCHEME + secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        token = ApiToken.cross_firm.for_compliance(reason="a token of the member's own firm").create(
            firm=firm, user=user, name=name, prefix=secret[:PREFIX_LENGTH],
            digest=digest_of(secret),
            read_only=read_only,
            expires_at=now + timedelta(days=expires_days) if expires_days else None,
            created_by=actor if actor is not None and actor.pk else None)
        after = _snapshot(token)
        if actor is None:
            after["os_user"] = _os_user()
        audit.record(firm=firm, actor=actor, event_type="api_token.created", obj=token,
                     after=after)
    return IssuedToken(token=token, secret=secret)


def _firm_of_holder(user) -> Firm | None:
    """The firm a token of `user` belongs to (None: a platform user's); refused for anyone else."""
    if not user.is_active:
        raise InvalidInput("tokens are for active users", field="user")
    membership: Membership | None = membership_of(user)
    if membership is not None:
        return membership.firm
    if platform_role_of(user) is None:
        raise InvalidInput("tokens are for members of a firm and platform users", field="user")
    return None


def revoke_api_token(*, token: ApiToken, actor) -> ApiToken:
    """Revoke a token of the admin's firm (or, by the system, any token): from now on it
    authenticates no one."""
    if token.firm is not None:
        require_tenant_actor(firm=token.firm, actor=actor, roles={Role.FIRM_ADMIN})
    elif actor is not None:
        raise NotPermitted("a platform user's token is revoked from a shell", field="token")
    with transaction.atomic():
        locked = ApiToken.cross_firm.for_compliance(reason="lock the firm's own token").filter(
            pk=token.pk, firm_id=token.firm_id).select_for_update().first()
        if locked is None:
            raise NotFound("no such token in your firm")
        if locked.revoked_at is not None:
            raise IllegalTransition("the token is already revoked", field="token")
        before = _snapshot(locked)
        locked.revoked_at = timezone.now()
        locked.revoked_by = actor if actor is not None and actor.pk else None
        locked.save(update_fields=["revoked_at", "revoked_by"])
        audit.record(firm=locked.firm, actor=actor, event_type="api_token.revoked", obj=locked,
                     before=before, after=_snapshot(locked))
    return locked


def authenticate(secret: str, *, address: str | None) -> ApiToken:
    """The live token `secret` names (its user loaded), its use noted; `TokenRefused` else.

    The first use from an address the token was never used from is audited, with the address.
    """
    token = ApiToken.cross_firm.for_compliance(reason="authenticate an API token").select_related(
        "user", "firm").filter(digest=digest_of(secret)).first()
    now = timezone.now()
    if token is None:
        raise TokenRefused("invalid token")
    if token.revoked_at is not None:
        raise TokenRefused("the token was revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused("the token has expired")
    try:
        holder_firm = _firm_of_holder(token.user)
    except InvalidInput:  # deactivated, or neither a member nor a platform user any more
        raise TokenRefused("the token's user is no longer active") from None
    if getattr(holder_firm, "pk", None) != token.firm_id:
        raise TokenRefused("the token's user no longer belongs where the token was issued")
    _note_use(token, address=address, now=now)
    return token


def _note_use(token: ApiToken, *, address: str | None, now) -> None:
    tokens = ApiToken.cross_firm.for_compliance(reason="note the token's use")
    if address is None or address == token.last_used_from:
        # Not one write per request: the time of use is kept to the minute.
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
            tokens.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return
    with transaction.atomic():
        # The UPDATE locks the token's row: concurrent first uses from one address wait here,
        # and the second sees the first's event.
        tokens.filter(pk=token.pk).update(last_used_at=now, last_used_from=address)
        seen = AuditEvent.objects.filter(
            chain=audit.chain_key(token.firm), object_type=token._meta.label_lower,
            object_id=str(token.pk), event_type="api_token.used_from_new_address",
            after__address=address).exists()
        if not seen:
            audit.record(firm=token.firm, actor=token.user, event_type="api_token.used_from_new_address",
                         obj=token, before={"address": token.last_used_from},
                         after={"prefix": token.prefix, "address": address})
    token.last_used_at, token.last_used_from = now, address
