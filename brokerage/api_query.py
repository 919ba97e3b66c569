"""Query values of every list endpoint: bounded pagination and filters, a 400 naming the
parameter when a value is out of range (DRF passed such values to PostgreSQL: a 500).

Kept apart from `brokerage.api` because DRF imports its DEFAULT_PAGINATION_CLASS and
DEFAULT_FILTER_BACKENDS while `rest_framework.generics` loads: this module imports no DRF view.
It imports no app either (brokerage core).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.db import models
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from django_filters.utils import get_model_field
from drf_spectacular.utils import extend_schema_field
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

#: PostgreSQL's bigint, the type of every id here: a query value beyond it is a 400, not a
#: database error
BIGINT_MAX = 2**63 - 1

_DIGITS = re.compile(r"[0-9]{1,20}")


def query_integer(request: Request, name: str, *, default: int, lower: int, upper: int) -> int:
    """The query parameter ``name`` as an integer in [lower, upper]; absent or empty: default.

    Only plain ASCII digits are read (``int()`` would also take ``+1``, ``1_0`` and other
    scripts' digits); anything else, or a value outside the range, is a 400 naming ``name``.
    """
    text = request.query_params.get(name, "")
    if text == "":
        return default
    if not _DIGITS.fullmatch(text) or not lower <= int(text) <= upper:
        raise ValidationError({name: [f"{name} must be an integer from {lower} to {upper}"]},
                              code="out_of_range")
    return int(text)


class Pagination(pagination.LimitOffsetPagination):
    """``limit`` 1..`max_limit` (default `default_limit`), ``offset`` 0..`max_offset`.

    DRF's own class passes any integer on to the database (``limit=9223372036854775808`` is a
    500 from PostgreSQL) and silently replaces a bad value by the default; here a bad value is
    a 400 naming the parameter.
    """

    default_limit = 100
    max_limit = 1000
    #: the largest integer a JSON client (JavaScript) holds exactly; far beyond any listing here
    max_offset = 2**53 - 1

    def get_limit(self, request: Request) -> int:
        return query_integer(request, self.limit_query_param, default=self.default_limit,
                             lower=1, upper=self.max_limit)

    def get_offset(self, request: Request) -> int:
        return query_integer(request, self.offset_query_param, default=0, lower=0,
                             upper=self.max_offset)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        bounds = {self.limit_query_param: (1, self.max_limit, self.default_limit),
                  self.offset_query_param: (0, self.max_offset, 0)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            lower, upper, default = bounds[parameter["name"]]
            parameter["schema"].update(minimum=lower, maximum=upper, default=default)
        return parameters


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 moment, given to the database in UTC: PostgreSQL refuses an offset beyond
    15:59 (``-19:23`` is a valid ISO offset, and was a 500); a moment that has no UTC
    equivalent (year 1 minus an offset) is a 400."""

    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        if moment is None or moment.tzinfo is None:
            return moment
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("this moment is out of range", code="invalid") from None


_INTEGER_COLUMNS = (models.IntegerField, models.AutoField, models.BigAutoField,
                    models.SmallAutoField)


class FilterSet(filters.FilterSet):
    """Base of every API filterset (`FilterBackend` refuses others).

    Any number filter on an integer column, declared or generated (``account`` ->
    ``account_id``), reads a whole number in PostgreSQL's bigint range: django-filter's
    NumberFilter reads a decimal, so ``?account=1e30`` reached the database as a number no id
    column holds (a 500); now it is a 400 naming the parameter.
    """

    @classmethod
    def get_filters(cls) -> dict[str, Any]:
        found = super().get_filters()
        model = cls._meta.model
        for declared in found.values():
            if isinstance(declared, filters.DateTimeFilter):
                declared.field_class = UtcDateTimeField
            # Exactly NumberFilter: its range and "in" variants build their own fields.
            if model is None or type(declared) is not filters.NumberFilter:
                continue
            column = get_model_field(model, declared.field_name)
            if isinstance(column, models.ForeignKey):
                column = column.target_field
            if isinstance(column, _INTEGER_COLUMNS):
                declared.field_class = forms.IntegerField
                declared.extra.setdefault("min_value", -BIGINT_MAX - 1)
                declared.extra.setdefault("max_value", BIGINT_MAX)
                # The schema says so too (drf-spectacular would call it a "number").
                extend_schema_field({"type": "integer", "format": "int64",
                                     "minimum": declared.extra["min_value"],
                                     "maximum": declared.extra["max_value"]})(declared)
        return found


class FilterBackend(filters.DjangoFilterBackend):
    """django-filter's backend, for filtersets built on `FilterSet` only (bounded values)."""

    filterset_base = FilterSet

    def get_filterset_class(self, view: Any, queryset: models.QuerySet | None = None):
        filterset_class = super().get_filterset_class(view, queryset)
        if filterset_class is not None and not issubclass(filterset_class, FilterSet):
            raise TypeError(f"{type(view).__name__}.filterset_class must derive from "
                            "brokerage.api_query.FilterSet (bounded query values)")
        return filterset_class


class CursorPagination(pagination.CursorPagination):
    """Newest first by `ordering`, ``limit`` 1..`max_page_size`; an opaque ``cursor``.

    For histories that only grow (snapshots, the audit trail): a page does not shift when rows
    are appended meanwhile, as an offset's would. A cursor that does not decode is a 400 naming
    it (DRF answers a 404, as if the list were missing).
    """

    ordering = ("-pk",)
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"

    def get_page_size(self, request: Request) -> int:
        return query_integer(request, self.page_size_query_param, default=self.page_size,
                             lower=1, upper=self.max_page_size)

    def decode_cursor(self, request: Request):
        from rest_framework.exceptions import NotFound

        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["not a cursor this list gave"]},
                                  code="invalid_cursor") from None

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size,
                                           default=self.page_size)
        return parameters
