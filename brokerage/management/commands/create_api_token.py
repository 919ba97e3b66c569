"""Create an API token for a firm member and print it, once (only its sha256 is stored).

    manage.py create_api_token USERNAME [--read-only] [--expires-days N] [--name TEXT]

The token acts as USERNAME, with that user's role in that user's firm; it is sent as
``Authorization: Bearer <token>``. Its creation is audited on the firm's chain (the actor is
the system; the OS account that ran the command is recorded). Firm admins create and revoke
tokens through ``/api/v1/tokens/`` as well.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from brokerage.errors import DomainError
from brokerage.tokens import MAX_EXPIRES_DAYS, create_api_token


class Command(BaseCommand):
    help = "Create an API token for a firm member; prints the token once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true",
                            help="the token may only read (GET, HEAD, OPTIONS)")
        parser.add_argument("--expires-days", type=int, default=None,
                            help=f"days until it expires (1-{MAX_EXPIRES_DAYS}); default never")
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        try:
            issued = create_api_token(user=user, actor=None, read_only=options["read_only"],
                                      expires_days=options["expires_days"],
                                      name=options["name"])
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        token = issued.token
        kind = "read-only" if token.read_only else "read-write"
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
        self.stderr.write(f"Created a {kind} token {token.prefix}... for {user.username} "
                          f"({expiry}). It is shown this once:")
        self.stdout.write(issued.secret)
