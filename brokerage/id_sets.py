"""Large sets of ids in queries: one array parameter on PostgreSQL.

A sweep chunk filters on thousands of account and instrument ids at a time. As a Python list
each id becomes its own placeholder, which psycopg finds and fills in Python (measured: a
fifth of a 2,000-account chunk's database time went into placing parameters). ``id_set(ids)``
gives an ``__in`` filter one text parameter, unnested by the server; SQLite (the embedded demo)
keeps the list.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models.expressions import RawSQL


def id_set(ids: Iterable[int]) -> RawSQL | list[int]:
    """``ids`` for ``field__in=``: ``SELECT unnest('{1,2,...}'::bigint[])`` on PostgreSQL."""
    unique = sorted({int(i) for i in ids})
    if connection.vendor != "postgresql":
        return unique
    return RawSQL("SELECT unnest(%s::bigint[])", ["{" + ",".join(map(str, unique)) + "}"])


def text_set(values: Iterable[str]) -> RawSQL | list[str]:
    """``values`` (text, e.g. hashes) for ``field__in=``, as ``id_set`` does for ids."""
    unique = sorted(set(values))
    if connection.vendor != "postgresql":
        return unique
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in unique)
    return RawSQL("SELECT unnest(%s::text[])", ["{" + ",".join(quoted) + "}"])
