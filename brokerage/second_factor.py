"""The second factor (django-otp): TOTP for every staff role, for clients who choose it, and
recovery codes (django-otp's static device) for a lost authenticator.

A staff session, or the session of anyone who enrolled, counts only once a code was verified in
it (`second_factor_missing`): `SecondFactorMiddleware` sends such a session's pages to the code
step (or to enrolment, for staff without a device) and `VerifiedSessionAuthentication` refuses
its API calls. Bearer tokens are the non-interactive path and are not asked for a code.
Enrolment, a recovery code spent and a wrong code are recorded on the user's firm's chain (the
platform chain for a platform user). This module imports no app.
"""

from __future__ import annotations

import time
from base64 import b32encode

from django.conf import settings
from django.db import transaction
from django_otp import devices_for_user, user_has_device
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import audit
from .errors import InvalidInput, NotPermitted
from .tenancy import firm_of, is_staff_member

AUTHENTICATOR = "authenticator"
RECOVERY_CODES = "recovery codes"


def requires_second_factor(user) -> bool:
    """Staff always; anyone else once they enrolled."""
    if not getattr(user, "is_authenticated", False):
        return False
    return is_staff_member(user) or user_has_device(user, confirmed=True)


def second_factor_missing(user) -> bool:
    """A logged-in session that still owes its code (django-otp's middleware installed
    `is_verified` on the request's user)."""
    if not getattr(user, "is_authenticated", False):
        return False
    verified = getattr(user, "is_verified", None)
    return not (verified is not None and verified()) and requires_second_factor(user)


def has_authenticator(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def start_enrolment(*, user) -> TOTPDevice:
    """The user's pending authenticator (a new secret), shown until a code confirms it."""
    if has_authenticator(user):
        raise NotPermitted("this user already has an authenticator", field="user")
    with transaction.atomic():
        device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR, confirmed=False)
    return device


def _new_recovery_codes(user) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_CODES, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.SECOND_FACTOR_RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def confirm_enrolment(*, user, device: TOTPDevice, token: str) -> list[str]:
    """Confirm the pending authenticator with a code from it; returns the new recovery codes
    (shown once). A wrong code changes nothing."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=user)
        if device.confirmed:
            raise NotPermitted("this authenticator is already confirmed", field="otp_token")
        if not device.verify_token(token.strip()):
            raise InvalidInput("the code does not match: enter the 6 digits the authenticator "
                               "shows now", field="otp_token")
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _new_recovery_codes(user)
        audit.record(firm=firm_of(user), actor=user, event_type="second_factor.enrolled",
                     object_type="auth.user", object_id=user.pk,
                     after={"username": user.username, "recovery_codes": len(codes)})
    return codes


def verify_code(*, user, token: str):
    """The device (authenticator or recovery codes) that accepts `token`, or None; a recovery
    code is spent by its use. django-otp throttles each device after a wrong code."""
    token = token.strip().replace(" ", "").lower()
    with transaction.atomic():
        device = None
        for candidate in devices_for_user(user, confirmed=True, for_verify=True):
            if candidate.verify_token(token):
                device = candidate
                break
        firm = firm_of(user)
        if device is None:
            audit.record(firm=firm, actor=user, event_type="second_factor.failed",
                         object_type="auth.user", object_id=user.pk,
                         after={"username": user.username})
        elif isinstance(device, StaticDevice):
            audit.record(firm=firm, actor=user, event_type="second_factor.recovery_code_used",
                         object_type="auth.user", object_id=user.pk,
                         after={"username": user.username,
                                "recovery_codes_left": device.token_set.count()})
    return device


def base32_secret(device: TOTPDevice) -> str:
    """The secret as authenticator apps take it typed in (base32, no padding)."""
    return b32encode(device.bin_key).decode("ascii").rstrip("=")


def current_code(device: TOTPDevice) -> str:
    """The code the device's authenticator shows now (the demo's `demo_otp_code`)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def issue_authenticator(*, user, actor=None) -> TOTPDevice:
    """A confirmed authenticator made for the user by the system (`actor=None`: the demo seed,
    which prints its secret beside the login) rather than enrolled by them; recorded."""
    with transaction.atomic():
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
        if device is not None:
            return device
        device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR, confirmed=True)
        audit.record(firm=firm_of(user), actor=actor, event_type="second_factor.issued",
                     object_type="auth.user", object_id=user.pk,
                     after={"username": user.username})
    return device
