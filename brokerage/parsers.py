"""The API's one request parser: strict JSON, refused with a 400 naming the problem.

DRF's JSONParser lets through what a money system must not take: ``1e999`` (parsed to
infinity), repeated keys (the last silently wins), and a deeply nested body that exhausts
Python's recursion (a 500). This parser refuses each with a `ParseError` whose code names it:

- ``malformed_json``: not JSON, or not UTF-8;
- ``not_finite``: ``NaN``, ``Infinity``, ``-Infinity`` or a number beyond a double's range;
- ``duplicate_key``: a key given twice in one object;
- ``too_deep``: objects and arrays nested deeper than `MAX_DEPTH`;

and a body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` with `BodyTooLarge` (413): DRF reads the
stream itself, past the limit Django applies to ``request.body``.

The depth is measured on the text before decoding, so no body reaches the recursive decoder
deeper than the limit. Forms and multipart are not parsed: the API speaks JSON only (415).
This module imports no app (brokerage core).
"""

from __future__ import annotations

import json
import math
import re
from typing import IO, Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser, JSONParser

#: no request of this API nests deeper than a handful of levels; 64 leaves room and stays far
#: below Python's recursion limit (about 1,000 frames)
MAX_DEPTH = 64

# A JSON string (its escapes included) or one bracket: strings are skipped so that a bracket
# inside a string does not count. The unrolled form keeps the match linear.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self, limit: int | None = None) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit
        super().__init__(f"the body is larger than the {limit} bytes this API reads")


def read_limited(stream: IO[bytes]) -> bytes:
    """The whole body, refused once it passes Django's in-memory limit."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(raw) > limit:
        raise BodyTooLarge(limit)
    return raw


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                raise ParseError(f"the body nests objects and arrays deeper than {limit} levels",
                                 code="too_deep")
        elif token in "]}":
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise ParseError(f"{name} is not a number this API accepts: send a finite number",
                     code="not_finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ParseError(f"{text} is beyond the range of a number this API accepts",
                         code="not_finite")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ParseError(f"the key {key!r} is given twice in one object",
                             code="duplicate_key")
        obj[key] = value
    return obj


def loads_strict(text: str) -> Any:
    """``text`` decoded as JSON under the rules above; raises `ParseError`."""
    check_depth(text)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_object_without_duplicates)
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise ParseError(f"the body is not valid JSON: {exc}", code="malformed_json") from None


class StrictJSONParser(JSONParser):
    """DRF's JSON parser (media type, renderer for the browsable API's form), strictly."""

    def parse(self, stream: IO[bytes], media_type: str | None = None,
              parser_context: dict[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = read_limited(stream).decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"the body is not {encoding} text: {exc.reason}",
                             code="malformed_json") from None
        return loads_strict(text)


class UnparsedBodyParser(BaseParser):
    """Accepts any body and parses none of it, for views that read ``request.body`` themselves.

    Such a view (the calculator) must not have DRF parse its body behind its back: session
    authentication's CSRF check reads ``request.POST``, which makes DRF parse the whole body
    with the default parser, so a session caller would get that parser's refusals while a
    token caller gets the view's own. With this parser, both get the view's.
    """

    media_type = "*/*"

    def parse(self, stream: IO[bytes], media_type: str | None = None,
              parser_context: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}
