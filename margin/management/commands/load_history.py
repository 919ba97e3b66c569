"""`manage.py load_history FILE.csv`: store daily closes for historical VaR."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from margin.management.csv_load import load_file
from margin.market_history import ROW_FIELDS, load_daily_closes
from margin.models import DailyClose


class Command(BaseCommand):
    help = (
        "Load daily closes of underlyings from a CSV file, for historical VaR (METHODOLOGY.md "
        "section 5). The file has a header row naming the columns symbol, date and close, in "
        "any order (e.g. 'symbol,date,close'); one close per row: symbol is a shared "
        "instrument that can be an underlying (stock, ETF, index, future, crypto), date is "
        "ISO (YYYY-MM-DD, not in the future), close a positive number. Blank lines and lines "
        "starting with '#' are skipped. The load is all or nothing: any bad row stores nothing "
        "and every problem is listed with its line. A close already stored for a day is "
        "replaced (a synthetic close never replaces a real one). Audited on the platform "
        "chain; the accounts holding the instruments are recomputed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV with the columns symbol,date,close")
        parser.add_argument("--source", default=DailyClose.Source.VENDOR,
                            choices=DailyClose.Source.values,
                            help="where the closes come from (default: vendor)")

    def handle(self, *args, **options) -> None:
        path, source = Path(options["file"]), options["source"]
        count = load_file(path, ROW_FIELDS, "rows", lambda rows: load_daily_closes(
            rows=rows, source=source, actor=None))
        self.stdout.write(f"Loaded {count} daily closes from {path} (source {source}).")
