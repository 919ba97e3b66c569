"""`manage.py load_prices FILE.csv`: store price observations; their holders are swept."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from margin.management.csv_load import load_file
from margin.market_data import load_prices
from margin.models import PriceObservation

COLUMNS = ("symbol", "price", "observed_at")


class Command(BaseCommand):
    help = (
        "Load prices of shared instruments from a CSV file. The file has a header row naming "
        "the columns symbol, price and observed_at, in any order (e.g. "
        "'symbol,price,observed_at'); one price per row: symbol is a listed shared instrument "
        "(e.g. SPY, AAPL, ETH), price a positive number, observed_at an ISO date and time "
        "(e.g. 2026-12-04T15:30:00-05:00; without an offset it is UTC), not in the future. "
        "Blank lines and lines starting with '#' are skipped. The load is all or nothing: any "
        "bad row stores nothing and every problem is listed with its line. Audited on the "
        "platform chain; once stored, the accounts holding the instruments (or options, "
        "perpetuals and LP positions on them) are marked dirty and their current margin is "
        "recomputed by the sweep within seconds (at once, in this process, without a broker)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV with the columns symbol,price,observed_at")
        parser.add_argument("--source", default=PriceObservation.Source.VENDOR,
                            choices=PriceObservation.Source.values,
                            help="where the prices come from (default: vendor)")

    def handle(self, *args, **options) -> None:
        path, source = Path(options["file"]), options["source"]
        stored = load_file(path, COLUMNS, "observations", lambda rows: load_prices(
            observations=rows, source=source, actor=None))
        symbols = sorted({p.instrument.symbol for p in stored})
        self.stdout.write(f"Loaded {len(stored)} prices from {path} (source "
                          f"{source}): {', '.join(symbols)}. Their holders are "
                          "marked dirty for the sweep.")
