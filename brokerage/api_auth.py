"""``Authorization: Bearer <token>``: DRF's authentication for scripts (`brokerage.tokens`).

Listed first in ``DEFAULT_AUTHENTICATION_CLASSES``: DRF answers an anonymous request with the
first authenticator's challenge, so a 401 carries ``WWW-Authenticate: Bearer realm="api"``.
The token authenticates its user; the firm and the role then come from the user's membership,
as for a session (`brokerage.api.TenantScopedMixin`). A read-only token is refused any unsafe
method here, before any view runs, so no endpoint can forget it; the one exception is a view
that declares ``writes_nothing = True`` (the calculator: a POST that only computes).
This module imports no app.
"""

from __future__ import annotations

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from . import second_factor, tokens


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        words = authentication.get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None  # another scheme (Basic) or none: the next authenticator's turn
        if len(words) != 2:
            raise exceptions.AuthenticationFailed("the Bearer header takes one token, no spaces")
        try:
            secret = words[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid token") from None
        try:
            token = tokens.authenticate(secret, address=request.META.get("REMOTE_ADDR"))
        except tokens.TokenRefused as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if (token.read_only and request.method not in permissions.SAFE_METHODS
                and not getattr(view, "writes_nothing", False)):
            raise exceptions.PermissionDenied(
                f"the token {token.prefix}... is read-only: it may not {request.method}",
                code="read_only_token")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """The schema's security scheme for the tokens (drf-spectacular finds it by the class)."""

    target_class = BearerTokenAuthentication
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "an API token (`manage.py create_api_token` or "
                               "POST /api/v1/tokens/)"}


class VerifiedSessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication (with its CSRF check), refusing a session that owes its
    second factor: a staff session, or an enrolled client's, whose code was not verified
    (`brokerage.second_factor`). Scripts use tokens and are never asked for a code."""

    def authenticate(self, request):
        authenticated = super().authenticate(request)
        if authenticated is not None and second_factor.second_factor_missing(authenticated[0]):
            raise exceptions.PermissionDenied(
                "this session has not verified its second factor: enter the code at "
                "/accounts/otp/ (or call the API with a token)", code="second_factor_required")
        return authenticated


class VerifiedSessionScheme(SessionScheme):
    """The schema's session scheme (`cookieAuth`), as for DRF's own session authentication."""

    target_class = VerifiedSessionAuthentication
