"""`manage.py demo_otp_code USERNAME`: the code a demo staff user's authenticator shows now.

Demo only (the secrets of the demo's authenticators are printed by `seed_demo`, so they protect
nothing): refused outside the demo settings.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from brokerage.second_factor import current_code


class Command(BaseCommand):
    help = "Print the current TOTP code of a demo user (demo settings only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        if not settings.DEMO:
            raise CommandError("demo_otp_code runs only under the demo settings "
                               "(DJANGO_DEBUG=1 PMARGIN_DEMO=1, as `make demo` sets)")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
        if device is None:
            raise CommandError(f"{username} has no authenticator")
        self.stdout.write(current_code(device))
