"""What `load_prices`, `load_history` and `import_executions` share: a CSV file of market data, read with its line
numbers, handed to the loader whole, and the loader's refusals told by file line.

The loaders validate (all or nothing, every bad row named by its index in the list they were
given); this only reads the file and turns ``observations[3].price`` back into ``line 5
(price)`` so whoever prepared the file can find it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from brokerage.errors import DomainError


def _fields(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _listed(columns: Sequence[str]) -> str:
    return f"{', '.join(columns[:-1])} and {columns[-1]}"


def read_rows(path: Path, columns: Sequence[str]) -> tuple[list[dict[str, str]], list[int]]:
    """The data rows as dicts and the file line of each. Blank and '#' lines are skipped; the
    header names `columns` in any order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read ({exc})") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise CommandError(f"{path}: no header row (expected the columns {','.join(columns)})")
    header = [name.strip().lower() for name in _fields(numbered[0][1])]
    if sorted(header) != sorted(columns):
        raise CommandError(f"{path}:{numbered[0][0]}: the header must name the columns "
                           f"{_listed(columns)}, got {','.join(header)!r}")
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


def where(field: str, lines: list[int], list_name: str) -> str:
    """``<list_name>[3].price`` as ``line 5 (price)``; other fields as they are."""
    match = re.match(rf"^{re.escape(list_name)}\[(\d+)\]", field)
    if not match or int(match.group(1)) >= len(lines):
        return field
    rest = field[match.end():].lstrip(".")
    return f"line {lines[int(match.group(1))]}" + (f" ({rest})" if rest else "")


def load_file(path: Path, columns: Sequence[str], list_name: str,
              load: Callable[[list[dict[str, str]]], Any]) -> Any:
    """Read `path` and hand its rows to `load`; a refusal lists every problem by file line."""
    rows, lines = read_rows(path, columns)
    try:
        return load(rows)
    except DomainError as exc:
        problems = [f"{path}:{where(e['field'], lines, list_name)}: {e['message']}"
                    for e in exc.errors]
        raise CommandError("nothing loaded:\n  " + "\n  ".join(problems)) from None
