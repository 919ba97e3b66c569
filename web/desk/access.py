"""Who may open a desk page: a staff member of the request's firm, of the roles the view names.

A client, a platform user or a staff member without the role gets a 403 (the page exists, it is
not theirs); objects are read through the tenant managers in the request's firm scope, so
another firm's object is a 404 (``desk_object``), never a hint that it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from brokerage.roles import STAFF_ROLES, Role
from brokerage.scope import current_firm_or_none
from brokerage.tenancy import role_of

EVERY_STAFF_ROLE: frozenset[str] = frozenset(STAFF_ROLES)


def desk_view(roles: Collection[str] = EVERY_STAFF_ROLE) -> Callable:
    """Decorate a desk view: logged in, a staff member of a firm, holding one of `roles`.

    The view finds ``request.desk_role`` set (the role, for pages that show more to some roles).
    The allowed roles are kept on the view (``desk_roles``) so the tests walk every desk URL
    with every role (tests/desk/test_access.py).
    """
    allowed = frozenset(Role(r) for r in roles)

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            role = role_of(request.user)
            if role not in STAFF_ROLES or current_firm_or_none() is None:
                raise PermissionDenied("the desk is for the firm's staff")
            if role not in allowed:
                raise PermissionDenied(f"a {Role(role).label.lower()} may not open this page")
            request.desk_role = role
            request.desk_role_label = Role(role).label
            return view(request, *args, **kwargs)

        wrapped.desk_roles = allowed  # type: ignore[attr-defined]
        return wrapped

    return decorate


def desk_object(queryset: QuerySet | type[Model], **lookup: Any) -> Any:
    """The object of the request's firm matching `lookup`, else a 404 (another firm's too)."""
    if isinstance(queryset, type):
        queryset = queryset.objects.all()
    found = queryset.filter(**lookup).first()
    if found is None:
        raise Http404(f"no such {queryset.model._meta.verbose_name} in your firm")
    return found
