"""The daily margin report of one firm as CSV, for compliance: each account's requirement,
equity and excess as the day ended and its open margin calls (stdout, or --output FILE)."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.calls.record import account_csv


class Command(BaseCommand):
    help = "Print the daily margin report: per account requirement, equity, excess, open calls."

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
            text = account_csv(day)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")


def _parse(value: str):
    return date.fromisoformat(value)
