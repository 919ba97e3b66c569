"""The one DRF exception handler: every API refusal is ``{"errors": [{field, code, message}]}``.

Set as ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``. It answers for

- a service's `DomainError` (its own status and ``.errors``): views call services and let
  refusals propagate, they map nothing themselves;
- DRF's `ValidationError`, nested details flattened to one entry per problem with the field
  named by its path (``overrides.house.vol_shift``, ``items[2].qty``; a serializer's
  non-field errors name the object that holds them, ``""`` at the top);
- every other `APIException` (parse errors, 401 with the ``WWW-Authenticate`` header DRF
  chose, 403, 404, 405, 406, 413, 415, 429 with ``Retry-After``) and Django's `Http404`,
  `PermissionDenied` and `RequestDataTooBig`, as one entry with an empty field.

Anything else is a bug, not a refusal: it is left to Django's 500 (logged with its traceback).
This module imports no app (brokerage core).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from .errors import DomainError
from .parsers import BodyTooLarge
from .scope import current_request_id

ErrorEntry = dict[str, str]


def join(path: str, key: str | int) -> str:
    """``items`` + 2 -> ``items[2]``; ``overrides`` + ``house`` -> ``overrides.house``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def flatten(detail: Any, path: str = "") -> list[ErrorEntry]:
    """DRF's nested error detail as a flat list, each entry naming its field by path.

    A ListSerializer reports ``[{}, {}, {"qty": [...]}]`` (one dict per item, empty where the
    item is fine) and a ListField or DictField ``{2: [...]}``: both become ``items[2].qty`` /
    ``items[2]``. ``non_field_errors`` belong to the object that holds them.
    """
    if isinstance(detail, Mapping):
        entries: list[ErrorEntry] = []
        for key, value in detail.items():
            inner = path if key == api_settings.NON_FIELD_ERRORS_KEY else join(path, key)
            entries += flatten(value, inner)
        return entries
    if isinstance(detail, list | tuple):
        entries = []
        for index, item in enumerate(detail):
            if isinstance(item, Mapping | list | tuple):
                entries += flatten(item, join(path, index))
            else:
                entries += flatten(item, path)
        return entries
    code = getattr(detail, "code", None) or "invalid"
    return [{"field": path, "code": str(code), "message": str(detail)}]


def _entries(exc: exceptions.APIException) -> list[ErrorEntry]:
    if isinstance(exc, exceptions.ValidationError):
        return flatten(exc.detail) or [{"field": "", "code": "invalid", "message": "invalid input"}]
    if isinstance(exc.detail, Mapping | list):  # an APIException raised with structured detail
        return flatten(exc.detail)
    code = getattr(exc.detail, "code", None) or exc.default_code
    return [{"field": "", "code": str(code), "message": str(exc.detail)}]


def error_response(errors: list[ErrorEntry], status: int,
                   headers: dict[str, str] | None = None) -> Response:
    """The one error body; also what a view answers when it refuses without raising."""
    return Response({"errors": errors}, status=status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's hook: the one body for every refusal, ``None`` (a 500) for anything else."""
    if isinstance(exc, DomainError):
        set_rollback()
        return error_response(exc.errors, exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    elif isinstance(exc, RequestDataTooBig):  # request.body past DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = BodyTooLarge()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    # DRF's view puts the first authenticator's challenge on 401s (Bearer realm="api", the tokens).
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()
    return error_response(_entries(exc), exc.status_code, headers)


# -- what Django answers outside DRF's views, for paths under /api/ ---------------------------
# An unmatched URL and an unhandled exception never reach a DRF view, so its handler cannot
# answer them; an integrator under /api/ still gets the one body (and JSON), never an HTML page.
API_PREFIX = "/api/"


def _plain_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"errors": [{"field": "", "code": code, "message": message}]},
                        status=status)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: the one body under /api/, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return _plain_error("not_found", f"no API resource at {request.path}", 404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a bug, logged with its traceback; the caller gets the request id to
    quote, never the traceback."""
    if request.path.startswith(API_PREFIX):
        return _plain_error("server_error", "the server failed to answer; quote request id "
                            f"{current_request_id() or '(none)'} to support", 500)
    return defaults.server_error(request)
