"""The current-firm scope: every read of tenant data happens inside one, or raises.

The scope is a context variable set by `TenantScopeMiddleware` for a request, by
`firm_scope(firm)` in tasks, commands and tests. Reads of tenant models go through
`TenantManager`, which filters by the firm in scope and raises `NoFirmInScope` without one
(fail closed). The one way around it is `Model.cross_firm.for_compliance(reason=...)`,
greppable, for platform operators' audited cross-firm reads.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from .models import Firm

_current_firm: contextvars.ContextVar[Firm | None] = contextvars.ContextVar(
    "current_firm", default=None
)
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class NoFirmInScope(RuntimeError):
    """A tenant read was attempted with no firm in scope."""


def current_firm() -> Firm:
    firm = _current_firm.get()
    if firm is None:
        raise NoFirmInScope(
            "no firm in scope: tenant data is read inside firm_scope(firm) or a request of a "
            "firm member; cross-firm reads use Model.cross_firm.for_compliance(reason=...)"
        )
    return firm


def current_firm_or_none() -> Firm | None:
    return _current_firm.get()


@contextmanager
def firm_scope(firm: Firm | None) -> Iterator[Firm | None]:
    token = _current_firm.set(firm)
    try:
        yield firm
    finally:
        _current_firm.reset(token)


def current_request_id() -> str:
    return _request_id.get()


@contextmanager
def request_id_scope(request_id: str) -> Iterator[str]:
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


class TenantQuerySet(models.QuerySet):
    pass


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    """Default manager of tenant models: only the firm in scope, raises without one."""

    def get_queryset(self) -> TenantQuerySet:
        return super().get_queryset().filter(firm=current_firm())


class SharedOrTenantManager(TenantManager):
    """Reference data that is shared (firm is null) or owned by one firm (LP instruments)."""

    def get_queryset(self) -> TenantQuerySet:
        return models.Manager.from_queryset(TenantQuerySet).get_queryset(self).filter(
            models.Q(firm__isnull=True) | models.Q(firm=current_firm())
        )


class CrossFirmManager(models.Manager):
    """The explicit unscoped path. Callers say why; the caller's service audits the read."""

    def for_compliance(self, *, reason: str) -> models.QuerySet:
        if not reason:
            raise ValueError("a cross-firm read states its reason")
        return super().get_queryset()


class AppendOnlyQuerySet(TenantQuerySet):
    """Bulk update/delete refused too (the database trigger is the last line)."""

    def update(self, **kwargs):
        raise PermissionError(f"{self.model._meta.label} rows are append-only")

    def delete(self):
        raise PermissionError(f"{self.model._meta.label} rows are append-only")


class AppendOnlyTenantManager(TenantManager):
    _queryset_class = AppendOnlyQuerySet


class AppendOnlyCrossFirmManager(CrossFirmManager):
    """The cross-firm path of an append-only model: reads only, bulk writes refused as well."""

    _queryset_class = AppendOnlyQuerySet


def lock_in_firm(model: type[models.Model], pk: int, *, missing: Exception) -> models.Model:
    """Row `pk` of `model`, read through its scoped manager and locked FOR UPDATE; `missing`
    is raised when the current firm has no such row (another firm's row reads as missing)."""
    try:
        return model.objects.select_for_update().get(pk=pk)
    except model.DoesNotExist:
        raise missing from None
