"""Start every firm's end-of-day run due now (or for one session) and sweep it in this
process: the accounts are valued for the close and calls are issued, updated and moved on."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.end_of_day import due_runs, start_end_of_day
from margin.models import MarginCall
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
        sweep_now()  # under eager Celery the runs have swept already: this finds nothing left
        for run in runs:
            self.stdout.write(f"{run.firm.slug}: {run.calendar} {run.session} "
                              f"({run.accounts} accounts)")
        for closed in sorted({run.firm for run in runs}, key=lambda f: f.pk):
            with firm_scope(closed):
                calls = MarginCall.objects.filter(status__in=MarginCall.OPEN_STATES).select_related(
                    "account").order_by("due_date", "pk")
                for call in calls:
                    self.stdout.write(f"  {closed.slug} {call.account.number} {call.kind} "
                                      f"{call.status} ${call.amount_due:,} due {call.due_date}")
