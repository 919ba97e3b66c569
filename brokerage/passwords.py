"""The demo's published password, refused everywhere but the demo.

The demo prints its password (README, `seed_demo`): anyone who reads them knows it. So nobody
may choose it (`PublishedPasswordValidator`, in AUTH_PASSWORD_VALIDATORS), and a user who holds
it anyway (a demo database served with production settings) cannot log in with it outside the
demo (`PasswordBackend`): only under `settings.DEMO` (DJANGO_DEBUG=1 and PMARGIN_DEMO=1, what
`make demo` sets) does it open a session. `demo.seed` sets it through `set_password`, which
runs no validator, and only under the demo settings. This module imports no app.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError

DEMO_PASSWORD = "demo-pass-2026"
PUBLISHED_PASSWORDS = frozenset({DEMO_PASSWORD})


class PublishedPasswordValidator:
    """Refuses a password this project publishes (the demo's)."""

    def validate(self, password: str, user=None) -> None:
        if password in PUBLISHED_PASSWORDS:
            raise ValidationError("this password is published with the demo; choose another",
                                  code="password_published")

    def get_help_text(self) -> str:
        return "Your password can't be the demo's published password."


class PasswordBackend(ModelBackend):
    """Django's username-and-password check, except that the demo's password opens nothing
    outside the demo."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if password in PUBLISHED_PASSWORDS and not settings.DEMO:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
