"""Revoke an API token by the prefix its lists show (``pmt_`` and eight characters).

    manage.py revoke_api_token PREFIX

The shell's door, for any token (a platform user's tokens have no other); firm admins revoke
their firm's tokens through ``/api/v1/tokens/{id}/revoke/`` and the desk. Audited on the
token's chain (the firm's, or the platform's).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from brokerage.errors import DomainError
from brokerage.models import ApiToken
from brokerage.tokens import revoke_api_token


class Command(BaseCommand):
    help = "Revoke an API token, named by its prefix."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, **options) -> None:
        prefix = options["prefix"].removesuffix("...")
        matches = list(ApiToken.cross_firm.for_compliance(
            reason="a shell revokes a token by its prefix").filter(prefix=prefix)[:2])
        if len(matches) != 1:
            raise CommandError(f"{len(matches) or 'no'} tokens with the prefix {prefix!r}")
        try:
            token = revoke_api_token(token=matches[0], actor=None)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Revoked {token.prefix}... of {token.user.username}.")
