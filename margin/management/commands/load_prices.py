"""`manage.py load_prices FILE.csv`: store price observations; their holders are swept."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from margin.market_data import MarketDataError, load_prices
from margin.models import PriceObservation

COLUMNS = ("symbol", "price", "observed_at")
_ROW = re.compile(r"^observations\[(\d+)\]")


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
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: cannot read ({exc})") from None
        rows, lines = _rows(path, text)
        try:
            stored = load_prices(observations=rows, source=options["source"], actor=None)
        except MarketDataError as exc:
            problems = [f"{path}:{_where(e['field'], lines)}: {e['message']}"
                        for e in exc.errors]
            raise CommandError("nothing loaded:\n  " + "\n  ".join(problems)) from None
        symbols = sorted({p.instrument.symbol for p in stored})
        self.stdout.write(f"Loaded {len(stored)} prices from {path} (source "
                          f"{options['source']}): {', '.join(symbols)}. Their holders are "
                          "marked dirty for the sweep.")


def _rows(path: Path, text: str) -> tuple[list[dict[str, str]], list[int]]:
    """The data rows as dicts and the file line of each (for the error messages)."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise CommandError(f"{path}: no header row (expected the columns "
                           f"{','.join(COLUMNS)})")
    header = [name.strip().lower() for name in next(csv.reader([numbered[0][1]]), [])]
    if sorted(header) != sorted(COLUMNS):
        raise CommandError(f"{path}:{numbered[0][0]}: the header must name the columns "
                           f"symbol, price and observed_at, got {','.join(header)!r}")
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    for n, line in numbered[1:]:
        values = next(csv.reader([line]), [])
        if len(values) != len(header):
            raise CommandError(f"{path}:{n}: expected {len(header)} fields "
                               f"({','.join(header)}), got {len(values)}")
        rows.append(dict(zip(header, (v.strip() for v in values), strict=True)))
        lines.append(n)
    return rows, lines


def _where(field: str, lines: list[int]) -> str:
    """``observations[3].price`` as ``line 5 (price)``; other fields as they are."""
    match = _ROW.match(field)
    if not match or int(match.group(1)) >= len(lines):
        return field
    rest = field[match.end():].lstrip(".")
    return f"line {lines[int(match.group(1))]}" + (f" ({rest})" if rest else "")
