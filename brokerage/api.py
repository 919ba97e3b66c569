"""The base every tenant API view uses: firm scope after DRF authentication, 404 across firms.

Session users get their firm from `TenantScopeMiddleware`; Basic/token users are only known
once DRF authenticates, so the scope is (re)entered in `initial()` and left in
`finalize_response()`. Querysets come from the scoped default manager, so another firm's id is
a 404, never a 403.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions, viewsets
from rest_framework.request import Request
from rest_framework.views import APIView

from .scope import _current_firm
from .tenancy import firm_of, is_staff_member


class TenantScopedMixin:
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        request._firm_scope_token = _current_firm.set(firm_of(request.user))

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


class TenantAPIView(TenantScopedMixin, APIView):
    permission_classes = [permissions.IsAuthenticated, IsFirmMember]


class TenantViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated, IsFirmMember]


def validated(serializer_class, request: Request) -> dict[str, Any]:
    """The request body through ``serializer_class``; DRF's 400 when it does not validate."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
