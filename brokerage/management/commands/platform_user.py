"""Change a platform user: role, active or not, password. Each change is audited on the
platform chain.

    manage.py platform_user USERNAME                         show the user and their role
    manage.py platform_user USERNAME --role market_data
    manage.py platform_user USERNAME --deactivate | --activate
    manage.py platform_user USERNAME --set-password (--password-env VAR | --password-stdin)
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from brokerage.errors import DomainError
from brokerage.models import PlatformRole
from brokerage.roles import PlatformRoleName
from brokerage.tenancy import change_platform_user

from ._platform_password import add_password_arguments, password_from


class Command(BaseCommand):
    stealth_options = ("stdin",)  # call_command(..., stdin=...) in tests, as createsuperuser
    help = "Change a platform user's role, deactivate or activate them, or set a password."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=PlatformRoleName.values)
        active = parser.add_mutually_exclusive_group()
        active.add_argument("--deactivate", action="store_true")
        active.add_argument("--activate", action="store_true")
        parser.add_argument("--set-password", action="store_true")
        add_password_arguments(parser)

    def handle(self, *args, **options) -> None:
        username = options["username"]
        password = password_from(options)  # a password source given means: set it
        if options["set_password"] and password is None:
            raise CommandError("--set-password needs --password-env VAR or --password-stdin")
        is_active = True if options["activate"] else False if options["deactivate"] else None
        if options["role"] is None and is_active is None and password is None:
            role = PlatformRole.objects.select_related("user").filter(
                user__username=username).first()
            if role is None:
                raise CommandError(f"no platform user {username!r}")
            state = "active" if role.user.is_active else "deactivated"
            self.stdout.write(f"{username}: {role.role}, {state}")
            return
        try:
            user = change_platform_user(username=username, role=options["role"],
                                        is_active=is_active, password=password)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        role = PlatformRole.objects.get(user=user).role
        state = "active" if user.is_active else "deactivated"
        self.stdout.write(f"{username}: {role}, {state}")
