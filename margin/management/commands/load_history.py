"""`manage.py load_history FILE.csv`: store daily closes for historical VaR."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from margin.market_data import MarketDataError
from margin.market_history import ROW_FIELDS, load_daily_closes
from margin.models import DailyClose

_ROW = re.compile(r"^rows\[(\d+)\]")


def _fields(line: str) -> list[str]:
    return next(csv.reader([line]), [])


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
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: cannot read ({exc})") from None
        rows, lines = self._rows(path, text)
        try:
            count = load_daily_closes(rows=rows, source=options["source"], actor=None)
        except MarketDataError as exc:
            problems = [f"{path}:{self._where(e['field'], lines)}: {e['message']}"
                        for e in exc.errors]
            raise CommandError("nothing loaded:\n  " + "\n  ".join(problems)) from None
        self.stdout.write(f"Loaded {count} daily closes from {path} (source {options['source']}).")

    @staticmethod
    def _rows(path: Path, text: str) -> tuple[list[dict[str, str]], list[int]]:
        """The data rows as dicts and the file line of each (for the error messages)."""
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                    if line.strip() and not line.lstrip().startswith("#")]
        if not numbered:
            raise CommandError(f"{path}: no header row (expected the columns symbol,date,close)")
        header = [name.strip().lower() for name in _fields(numbered[0][1])]
        if sorted(header) != sorted(ROW_FIELDS):
            raise CommandError(f"{path}:{numbered[0][0]}: the header must name the columns "
                               f"symbol, date and close, got {','.join(header)!r}")
        rows: list[dict[str, str]] = []
        lines: list[int] = []
        for n, line in numbered[1:]:
            values = _fields(line)
            if len(values) != len(header):
                raise CommandError(f"{path}:{n}: expected {len(header)} fields "
                                   f"({','.join(header)}), got {len(values)}")
            rows.append(dict(zip(header, (v.strip() for v in values), strict=True)))
            lines.append(n)
        return rows, lines

    @staticmethod
    def _where(field: str, lines: list[int]) -> str:
        """``rows[3].close`` as ``line 5 (close)``; other fields as they are."""
        match = _ROW.match(field)
        if not match or int(match.group(1)) >= len(lines):
            return field
        rest = field[match.end():].lstrip(".")
        return f"line {lines[int(match.group(1))]}" + (f" ({rest})" if rest else "")
