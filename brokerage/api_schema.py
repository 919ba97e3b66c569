"""The API schema (/api/schema/) documents the one error body on every status a view can give.

``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``. drf-spectacular documents the success response
only; a contract test (schemathesis) then flags every 400/401/403/404 as undocumented. Each
operation here gets the ``Errors`` component on:

- 400 for a write (a body that does not parse or validate) or a list (query values);
- 401 and 403 for every view that needs a login (403: a role or firm the view refuses, or a
  session write without its CSRF token);
- 404 where the path names an object (another firm's is a 404 too);
- 429 for every throttled view (all of them: ``brokerage.api_throttles``), with Retry-After;
- 409 and 422 for a write to a firm's objects, where a service may refuse it as a conflict or
  an illegal transition (409) or as well formed but refused by the rules (422), per the view's
  ``refusal_statuses``.

A status the operation declares itself (``@extend_schema(responses=...)``) is kept as declared.
Request bodies of `InputSerializer`s say ``additionalProperties: false``: unknown fields are
refused. This module imports no app (brokerage core).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication

from .api import InputSerializer

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ErrorSerializer(serializers.Serializer):
    field = serializers.CharField(
        allow_blank=True,
        help_text="the field, by path (`overrides.house.vol_shift`, `positions[3].strike`, a "
                  "query parameter's name); empty for the request as a whole")
    code = serializers.CharField(
        help_text="stable and machine-readable: `required`, `unknown_field`, `not_finite`, "
                  "`too_deep`, `not_authenticated`, `not_found`, `four_eyes`, `conflict`, ...")
    message = serializers.CharField(help_text="the problem in words, for people")


class ErrorsSerializer(serializers.Serializer):
    """Every API error: one entry per problem."""

    errors = ErrorSerializer(many=True)


DESCRIPTIONS: dict[int, str] = {
    400: "The request does not parse or validate; nothing was written.",
    401: "No credentials, or wrong ones (an API token or a session login).",
    403: ("The user's firm or role may not do this, a session write lacks its CSRF token, "
          "or a read-only token tried to write."),
    404: "No such object in the user's firm.",
    409: "The object is not in a state this step applies to, or changed meanwhile.",
    422: "Well formed, but the rules refuse it as it stands.",
    429: "Too many requests for the caller's rate (brokerage.api_throttles); retry after "
         "Retry-After seconds.",
}


def _is(cls: Any, *bases: type) -> bool:
    # A composed permission (`IsAuthenticated & IsFirmStaff`) is an operand, not a class.
    return isinstance(cls, type) and issubclass(cls, bases)


def _needs_login(view: Any) -> bool:
    return not all(_is(p, permissions.AllowAny) for p in view.permission_classes)


def _refuses_beyond_login(view: Any, method: str) -> bool:
    checks_more = any(not _is(p, permissions.IsAuthenticated, permissions.AllowAny)
                      for p in view.permission_classes)
    csrf = method in WRITES and any(_is(a, SessionAuthentication)
                                    for a in view.authentication_classes)
    return checks_more or csrf


class AutoSchema(openapi.AutoSchema):
    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        # An input serializer refuses fields it does not declare: the schema says so.
        mapped = super()._map_basic_serializer(serializer, direction)
        if isinstance(serializer, InputSerializer):
            mapped["additionalProperties"] = False
        return mapped

    def _takes_query(self) -> bool:
        """A read with query parameters of its own (a date, a file format) refuses bad values."""
        return any(p.get("in") == "query" for p in self._get_parameters())

    def error_statuses(self) -> list[int]:
        view, method = self.view, self.method
        statuses: list[int] = []
        if method in WRITES or self._is_list_view() or self._takes_query():
            statuses.append(400)
        if _needs_login(view):
            statuses.append(401)
            if _refuses_beyond_login(view, method):
                statuses.append(403)
        if "{" in self.path:
            statuses.append(404)
        if method in WRITES:
            statuses += getattr(view, "refusal_statuses", ())
        if view.throttle_classes:
            statuses.append(429)
        return statuses

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction=direction)
        for status in self.error_statuses():
            if str(status) not in responses:
                body = self._get_response_for_code(ErrorsSerializer, str(status),
                                                   direction=direction)
                body["description"] = DESCRIPTIONS[status]
                if status == 401:
                    body["headers"] = {"WWW-Authenticate": {
                        "schema": {"type": "string"},
                        "description": 'the challenge, `Bearer realm="api"`'}}
                if status == 429:
                    body["headers"] = {"Retry-After": {
                        "schema": {"type": "integer"},
                        "description": "seconds to wait before the next request"}}
                responses[str(status)] = body
        return responses
