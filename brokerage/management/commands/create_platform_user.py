"""Create a platform user: no firm, a platform role, no tenant write. Audited on the platform
chain.

    manage.py create_platform_user USERNAME --role auditor|market_data [--email ...]
        [--password-env VAR | --password-stdin]

Without a password source the user gets an unusable password and the command prints how to
set one (`manage.py platform_user USERNAME --set-password ...`, audited too).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from brokerage.errors import DomainError
from brokerage.roles import PlatformRoleName
from brokerage.tenancy import create_platform_user

from ._platform_password import add_password_arguments, password_from


class Command(BaseCommand):
    stealth_options = ("stdin",)  # call_command(..., stdin=...) in tests, as createsuperuser
    help = "Create a platform user (auditor or market-data operator), audited."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=PlatformRoleName.values)
        parser.add_argument("--email", default="")
        add_password_arguments(parser)

    def handle(self, *args, **options) -> None:
        password = password_from(options)
        try:
            user = create_platform_user(username=options["username"], role=options["role"],
                                        email=options["email"], password=password)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created platform user {user.username} ({options['role']}).")
        if password is None:
            self.stdout.write(
                "No password yet (unusable). Set one with:\n"
                f"  manage.py platform_user {user.username} --set-password --password-stdin")
