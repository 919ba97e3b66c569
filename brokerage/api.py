"""The base every tenant API view uses: firm scope after DRF authentication, 404 across firms,
one way to read a request body. (Pagination and filters, which DRF's settings import while
its views load, are in `brokerage.api_query`.)

Session users get their firm from `TenantScopeMiddleware`; token users are only known
once DRF authenticates, so the scope is (re)entered in `initial()` and left in
`finalize_response()`. Querysets come from the scoped default manager, so another firm's id is
a 404, never a 403.

Refusals are not rendered here: views call services and let their `DomainError` propagate;
`brokerage.api_errors.exception_handler` turns it, and DRF's own errors, into the one body.
Input goes through `validated(InputSerializer subclass, request)`: the body must be a JSON
object (parsed strictly by `brokerage.parsers.StrictJSONParser`) and an unknown field is refused,
at any depth, before anything is written.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from .api_query import BIGINT_MAX
from .errors import InvalidInput
from .roles import Role
from .scope import _current_firm
from .tenancy import firm_of, is_staff_member, role_of


class TenantScopedMixin:
    #: what a write here may be refused with besides 400/401/403/404: the services'
    #: IllegalTransition and Conflict (409); the API schema documents these
    refusal_statuses: tuple[int, ...] = (409,)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        firm = firm_of(request.user)
        request._firm_scope_token = _current_firm.set(firm)
        # Token users are known only now: their times too are the firm's zone (the
        # middleware did this for session users; it deactivates the zone after the response).
        if firm is not None:
            timezone.activate(zoneinfo.ZoneInfo(firm.time_zone))

    def finalize_response(self, request, response, *args, **kwargs):
        token = getattr(request, "_firm_scope_token", None)
        if token is not None:
            _current_firm.reset(token)
            request._firm_scope_token = None
        return super().finalize_response(request, response, *args, **kwargs)


class IsFirmMember(permissions.BasePermission):
    message = "only members of a firm use this endpoint"

    def has_permission(self, request, view) -> bool:
        return firm_of(request.user) is not None


class IsFirmStaff(permissions.BasePermission):
    message = "only the firm's staff use this endpoint"

    def has_permission(self, request, view) -> bool:
        return is_staff_member(request.user)


class IsFirmAdmin(permissions.BasePermission):
    message = "only the firm's admins use this endpoint"

    def has_permission(self, request, view) -> bool:
        return role_of(request.user) == Role.FIRM_ADMIN


class TenantAPIView(TenantScopedMixin, APIView):
    permission_classes = [permissions.IsAuthenticated, IsFirmMember]


class TenantViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    """A firm's objects. Subclasses define `scoped_queryset()`, not `get_queryset()`.

    The schema is generated for no firm (an anonymous check, a platform user): drf-spectacular
    builds each view with ``swagger_fake_view`` set and only needs the model, so it gets an
    empty queryset of the serializer's model that reads nothing and needs no firm in scope.
    """

    permission_classes = [permissions.IsAuthenticated, IsFirmMember]
    # Any segment reaches the view, so a malformed id (``0.5``) is the API's 404 body, not
    # Django's HTML page for an unmatched URL.
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> models.QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.get_serializer_class().Meta.model._base_manager.none()
        return self.scoped_queryset()

    def scoped_queryset(self) -> models.QuerySet:
        # Django's own idiom for a view that was not told what it lists (GenericAPIView does
        # the same for a missing queryset): a programming error, found at the first request.
        raise ImproperlyConfigured(f"{type(self).__name__} defines no scoped_queryset()")


# Request bodies --------------------------------------------------------------------------------

class InputSerializer(serializers.Serializer):
    """Base of every input serializer: a field it does not declare is refused, naming it, and
    so is a value not of its field's JSON type.

    A typo must not be dropped silently (``acount_type`` would otherwise create an application
    with the default type). Nested serializers built on this base check their own keys, so the
    error names the path (``overrides.house.vol_shitf``). Read-only fields count as unknown:
    the caller cannot set them.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        # An integer without bounds gets the database's: a 400 rather than PostgreSQL's
        # "bigint out of range" (a 500) when it reaches a query.
        fields = super().get_fields()
        for field in fields.values():
            if isinstance(field, serializers.IntegerField):
                if field.max_value is None:
                    field.max_value = BIGINT_MAX
                    field.validators.append(MaxValueValidator(BIGINT_MAX, message=(
                        f"Ensure this value is less than or equal to {BIGINT_MAX}.")))
                if field.min_value is None:
                    field.min_value = -BIGINT_MAX - 1
                    field.validators.append(MinValueValidator(-BIGINT_MAX - 1, message=(
                        f"Ensure this value is greater than or equal to {-BIGINT_MAX - 1}.")))
        return fields

    def to_internal_value(self, data: Any) -> Any:
        refused: dict[str, Any] = {}
        if isinstance(data, Mapping):
            writable = {name: field for name, field in self.fields.items()
                        if not field.read_only}
            refused.update(ValidationError(
                {str(key): [f"unknown field {key!r}"] for key in data if key not in writable},
                code="unknown_field").detail)
            refused.update(ValidationError(
                {key: [message] for key, message in _wrong_json_types(data, writable)},
                code="invalid").detail)
        try:
            value = super().to_internal_value(data)
        except ValidationError as exc:
            if refused and isinstance(exc.detail, dict):
                exc.detail.update(refused)
            raise
        if refused:
            raise ValidationError(refused)
        return value


# DRF coerces: `"submit": 0` is False, `"reason": 0` is "0", `"account": "7"` is 7. A JSON API
# takes each value in the type its field documents; a number where a string belongs is a typo
# or a client bug, refused like an unknown field. (Decimals keep taking numbers or strings.)
_JSON_TYPES: tuple[tuple[type[serializers.Field], type | tuple[type, ...], str], ...] = (
    (serializers.BooleanField, bool, "a boolean (true or false)"),
    (serializers.IntegerField, int, "an integer"),
    (serializers.CharField, str, "a string"),
    (serializers.ListField, list, "an array"),
    (serializers.DictField, dict, "an object"),
)


def _wrong_json_types(data: Mapping[str, Any], fields: Mapping[str, serializers.Field]
                      ) -> list[tuple[str, str]]:
    wrong = []
    for name, value in data.items():
        field = fields.get(name)
        if field is None or (value is None and field.allow_null):
            continue
        for field_class, json_type, described in _JSON_TYPES:
            if isinstance(field, field_class):
                fits = isinstance(value, json_type) and not (
                    json_type is int and isinstance(value, bool))
                if not fits:
                    wrong.append((name, f"must be {described}, not {_json_kind(value)}"))
                break
    return wrong


class NoInput(InputSerializer):
    """The body of an action that takes none: empty, ``{}``, and nothing else."""


def username(*, allow_null: bool = True) -> serializers.SlugRelatedField:
    """A user in a response, by username, read-only; by default null until someone acts (the
    schema says so, so a contract test accepts the null)."""
    return serializers.SlugRelatedField(slug_field="username", read_only=True,
                                        allow_null=allow_null)


def validated(serializer_class: type[InputSerializer], request: Request) -> dict[str, Any]:
    """The request body through ``serializer_class``: a 400 naming every problem otherwise.

    The body must be a JSON object (an absent body reads as ``{}``); the serializer must derive
    from `InputSerializer`, so unknown fields are refused for every write the same way.
    """
    if not (isinstance(serializer_class, type) and issubclass(serializer_class, InputSerializer)):
        raise TypeError(f"{serializer_class!r} is not an InputSerializer: unknown fields would "
                        "pass unchecked")
    data = request.data
    if not isinstance(data, Mapping):
        raise InvalidInput(f"the body must be a JSON object, not {_json_kind(data)}",
                           code="not_an_object")
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _json_kind(value: Any) -> str:
    kinds = ((bool, "a boolean"), (list, "an array"), (str, "a string"),
             (int | float, "a number"), (type(None), "null"), (Mapping, "an object"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "a non-object")
