"""`manage.py import_executions FILE.csv --firm SLUG --user USERNAME`: book executions."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerage.models import Firm
from brokerage.scope import firm_scope
from brokerage.tenancy import firm_of
from margin.executions.services import book_batch, parse_ticket
from margin.management.csv_load import load_file

COLUMNS = ("client_execution_id", "account", "instrument", "side", "quantity", "price", "fees",
           "trade_time")


class Command(BaseCommand):
    help = (
        "Book executions from a CSV file, as a staff user of a firm. The file has a header row "
        "naming the columns client_execution_id, account, instrument, side, quantity, price, "
        "fees and trade_time, in any order (e.g. 'client_execution_id,account,instrument,side,"
        "quantity,price,fees,trade_time'); one execution per row: client_execution_id the "
        "firm-unique id of the fill (a row whose id is already booked books nothing again), "
        "account an account number of the firm, instrument a listed symbol or id (e.g. NVDA, "
        "'NVDA 270115P120'), side buy or sell, quantity a positive number of shares or "
        "contracts, price a non-negative price per share (per unit before the multiplier), "
        "fees a non-negative amount (may be empty: 0), trade_time an ISO date and time (e.g. "
        "2026-12-04T15:30:00-05:00; empty: now). Blank lines and lines starting with '#' are "
        "skipped. Every execution passes the pre-trade check; the file is booked all or "
        "nothing: a bad row or a rejected order books none, and every problem is listed with "
        "its line. Each execution moves the position and the cash ledger through the book's "
        "services, audited, and marks the account dirty for the sweep."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV with the columns " + ",".join(COLUMNS))
        parser.add_argument("--firm", required=True, help="the firm's slug")
        parser.add_argument("--user", required=True,
                            help="the staff user booking (margin desk, risk officer or admin)")

    def handle(self, *args, **options) -> None:
        firm = Firm.objects.filter(slug=options["firm"]).first()
        if firm is None:
            raise CommandError(f"no firm {options['firm']!r}")
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None or firm_of(user) != firm:
            raise CommandError(f"{options['user']!r} is not a user of {firm.slug}")
        path = Path(options["file"])

        def book(rows):
            tickets = [parse_ticket(row, f"executions[{k}].") for k, row in enumerate(rows)]
            return book_batch(firm=firm, actor=user, tickets=tickets)

        with firm_scope(firm):
            booked = load_file(path, COLUMNS, "executions", book)
        new = sum(1 for _, created in booked if created)
        self.stdout.write(f"Booked {new} executions from {path} ({len(booked) - new} already "
                          "booked: nothing twice). Their accounts are marked dirty for the "
                          "sweep.")
