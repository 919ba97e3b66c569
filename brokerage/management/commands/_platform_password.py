"""Where a platform user's password comes from: an environment variable or stdin, never the
command line (it would sit in the shell history and in `ps` for every local user to read)."""

from __future__ import annotations

import os
import sys

from django.core.management.base import CommandError, CommandParser


def add_password_arguments(parser: CommandParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-env", metavar="VAR",
                        help="read the password from this environment variable")
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin")


def password_from(options: dict) -> str | None:
    if options.get("password_env"):
        value = os.environ.get(options["password_env"], "")
        if not value:
            raise CommandError(f"the environment variable {options['password_env']} is empty")
        return value
    if options.get("password_stdin"):
        value = (options.get("stdin") or sys.stdin).readline().rstrip("\r\n")
        if not value:
            raise CommandError("no password on stdin")
        return value
    return None
