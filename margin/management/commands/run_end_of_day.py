"""Start every firm's end-of-day run due now (or for one session) and sweep it in this
process: the accounts are valued for the close and calls are issued, updated and moved on."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from brokerage.models import Firm
from margin.end_of_day import due_runs, start_end_of_day
from margin.sweep import sweep_now


class Command(BaseCommand):
    help = "Run the end-of-day job: value every account for the close and issue margin calls."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--session", help="the session to close, YYYY-MM-DD (default: "
                                              "the last closed session of each firm)")
        parser.add_argument("--firm", help="one firm's slug (with --session)")

    def handle(self, *args, session: str | None = None, firm: str | None = None, **options):
        if session:
            try:
                day = date.fromisoformat(session)
            except ValueError:
                raise CommandError(f"--session: {session!r} is not a date") from None
            firms = Firm.objects.filter(slug=firm) if firm else Firm.objects.all()
            if firm and not firms.exists():
                raise CommandError(f"--firm: no firm {firm!r}")
            runs = [run for f in firms.order_by("pk") if (run := start_end_of_day(
                firm=f, calendar=f.exchange_calendar or "XNYS", session=day)) is not None]
        else:
            runs = due_runs()
        result = sweep_now()
        for run in runs:
            self.stdout.write(f"{run.firm.slug}: {run.calendar} {run.session} "
                              f"({run.accounts} accounts)")
        self.stdout.write(f"valued {result.computed}, kept {result.snapshots} snapshots")
