"""Model rows as the text of a PostgreSQL ``COPY ... FROM STDIN`` (text format), built a column
at a time.

The sweep writes a chunk's history snapshots and current-margin rows with COPY. Handing
psycopg one Python row at a time (``Copy.write_row``) looks up a dumper and escapes every value
in Python: a quarter of a 2,000-account chunk's write. Here each column is turned into text in
one pass (a C-level ``map`` where the column holds one type), each column is checked for the
characters COPY escapes once, and the lines are joined; the server parses each column's text
as psycopg's own text dumpers would have sent it (``str`` of an int, a ``Decimal``, a
``datetime`` or ``date``; ``t``/``f``; JSON as Django's adapter dumps it), so the stored values
are the same. A value of any other type goes through the connection's own dumper.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import models

#: COPY's NULL in text format
NULL = "\\N"
#: what COPY's text format escapes (psycopg escapes the same set)
_SPECIAL = re.compile(r"[\\\t\n\r\b\f\v]")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\f": "\\f",
            "\v": "\\v"}


def _bool_text(value: bool) -> str:
    return "t" if value else "f"


#: the text psycopg's text dumper sends for each of these exact types (``str(obj)``)
_AS_TEXT: dict[type, Callable[[Any], str]] = {
    int: str, str: str, Decimal: str, datetime: str, date: str, float: repr, bool: _bool_text}


def column_text(field: models.Field, values: Sequence[Any], connection,
                json_texts: Sequence[str | None] | None = None) -> list[str]:
    """Each value of ``field``'s column as COPY text (escaped; ``\\N`` for None).

    A JSON field's value is dumped as Django's adapter does (``get_json_dumps(encoder)``),
    unless ``json_texts`` gives its text already (a text of the same JSON value: the server
    parses it into the same ``jsonb``). Any other field's value is first prepared as
    ``get_db_prep_save`` would, except where that is the value itself (an int, text, a date or
    a time; a ``Decimal`` for a decimal field): a call per value and field was a tenth of a
    chunk's write."""
    texts: list[str | None]
    if isinstance(field, models.JSONField):
        from django.db.backends.postgresql.operations import get_json_dumps

        dumps = get_json_dumps(field.encoder)  # what the jsonb adapter dumps with
        texts = [None if value is None else text if text is not None else dumps(value)
                 for value, text in zip(values, json_texts or [None] * len(values),
                                        strict=True)]
    else:
        texts = _texts(_prepared(field, values, connection), connection)
    if _SPECIAL.search("".join(filter(None, texts))):
        texts = [None if t is None else _SPECIAL.sub(_escape, t) for t in texts]
    return [NULL if t is None else t for t in texts]


def _escape(match: re.Match) -> str:
    return _ESCAPES[match.group()]


def _prepared(field: models.Field, values: Sequence[Any], connection) -> Sequence[Any]:
    """``get_db_prep_save`` of the values it would change (a number not yet a ``Decimal``, a
    naive time the field makes aware under USE_TZ, a truth value not yet a bool)."""
    if isinstance(field, models.DecimalField | models.BooleanField):
        kept = Decimal if isinstance(field, models.DecimalField) else bool
        return [v if v is None or type(v) is kept else field.get_db_prep_save(v, connection)
                for v in values]
    if isinstance(field, models.DateTimeField):
        return [v if v is None or (type(v) is datetime and v.tzinfo is not None)
                else field.get_db_prep_save(v, connection) for v in values]
    return values


def _texts(values: Sequence[Any], connection) -> list[str | None]:
    """Unescaped text of prepared values (None for None): one ``map`` where the column holds
    one known type."""
    types = set(map(type, values))
    nulls = type(None) in types
    types.discard(type(None))
    if len(types) <= 1:
        convert = _AS_TEXT.get(next(iter(types))) if types else None
        if convert is not None and not nulls:
            return list(map(convert, values))
        if convert is not None or not types:
            return [None if v is None else convert(v) for v in values]
    return [None if v is None else _AS_TEXT[type(v)](v) if type(v) in _AS_TEXT
            else _dumped(v, connection) for v in values]


def _dumped(value: Any, connection) -> str:
    """What the connection's own text dumper sends for a value of another type."""
    from psycopg.adapt import PyFormat, Transformer

    dumper = Transformer(connection.connection).get_dumper(value, PyFormat.TEXT)
    return bytes(dumper.dump(value)).decode()


def copy_text(columns: Sequence[list[str]]) -> str:
    """The COPY text of rows given as columns of text (``column_text``), one line per row."""
    if not columns or not columns[0]:
        return ""
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"
