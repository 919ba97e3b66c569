"""One shape for the commands that write a firm's daily compliance CSV (the 4220 margin record,
the daily margin report): `--date`, `--firm`, `--output`, refusals named by argument."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from brokerage.models import Firm
from brokerage.scope import firm_scope


class DailyCsvCommand(BaseCommand):
    #: the day's CSV of the firm in scope
    render: Callable[[date], str]

    def add_arguments(self, parser) -> None:
        parser.add_argument("--date", required=True, help="the day, YYYY-MM-DD")
        parser.add_argument("--firm", required=True, help="the firm's slug")
        parser.add_argument("--output", help="write to this file instead of stdout")

    def handle(self, *args, date: str, firm: str, output: str | None = None, **options):
        try:
            day = _parse(date)
        except ValueError:
            raise CommandError(f"--date: {date!r} is not a date (YYYY-MM-DD)") from None
        found = Firm.objects.filter(slug=firm).first()
        if found is None:
            raise CommandError(f"--firm: no firm {firm!r}")
        with firm_scope(found):
            text = self.render(day)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")


def _parse(value: str) -> date:
    return date.fromisoformat(value)
