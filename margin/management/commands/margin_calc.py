"""``python manage.py margin_calc PORTFOLIO.json`` (or ``-`` for standard input).

Prints the calculator's result on stdout and exits 0; on bad input prints
``{"errors": [...]}`` on stderr, nothing on stdout, and exits with status 2. The bytes are
those ``POST /api/v1/margin/calculate`` answers (both call `margin.calculator.run`).
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO, TextIO

from django.core.management.base import BaseCommand, CommandParser

from margin.calculator import OK, error_body, run

EXIT_BAD_INPUT = 2


def _plain(text: str) -> str:
    return text


class Command(BaseCommand):
    help = "Margin calculator (CALCULATOR.md): reads a portfolio request, prints the result."
    requires_system_checks: list[str] = []  # stateless: no database, no models
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("portfolio", help="request JSON file, or '-' for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            raw = self._read(options["portfolio"], options.get("stdin") or sys.stdin)
        except OSError as exc:
            self._fail(error_body("", "unreadable", f"cannot read {options['portfolio']}: "
                                                    f"{exc.strerror or exc}"))
        status, body = run(raw)
        if status != OK:
            self._fail(body)
        # The body is exact bytes: no colour, no extra line ending.
        self.stdout.write(body.decode("ascii"), style_func=_plain, ending="")

    @staticmethod
    def _read(name: str, stdin: TextIO | BinaryIO) -> bytes:
        if name != "-":
            with open(name, "rb") as handle:
                return handle.read()
        stream = getattr(stdin, "buffer", stdin)
        data = stream.read()
        return data.encode("utf-8") if isinstance(data, str) else data

    def _fail(self, body: bytes) -> None:
        self.stderr.write(body.decode("ascii"), style_func=_plain, ending="")
        self.stderr.flush()
        raise SystemExit(EXIT_BAD_INPUT)
