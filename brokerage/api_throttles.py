"""Throttles of the API, counted in Django's configured cache (``CACHES["default"]``: Redis in
production, so every web process shares the counts).

Rates are settings (``API_THROTTLE_RATES``: ``{"anon", "user", "token"}``, DRF's rate strings
such as ``"600/min"``), read at each request rather than once at import (DRF's own classes
freeze ``DEFAULT_THROTTLE_RATES`` when they load), so an operator's change and a test's
override both take effect. A request over its rate is a 429 in the one error body with
``Retry-After`` (`brokerage.api_errors`). This module imports no app (brokerage core).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches
from rest_framework import throttling


def _token_of(request):
    from .models import ApiToken  # DRF loads throttle classes before the app registry is ready

    return request.auth if isinstance(request.auth, ApiToken) else None


class _SettingsRate:
    cache = None  # set per request: the configured cache, never DRF's import-time default

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        self.cache = caches["default"]
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class AnonymousThrottle(_SettingsRate, throttling.AnonRateThrottle):
    """Requests without credentials, per address."""

    scope = "anon"


class UserThrottle(_SettingsRate, throttling.UserRateThrottle):
    """A signed-in session, per user (token requests are counted by `TokenThrottle`)."""

    scope = "user"

    def get_cache_key(self, request, view) -> str | None:
        if _token_of(request) is not None or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TokenThrottle(_SettingsRate, throttling.SimpleRateThrottle):
    """A script's requests, per API token."""

    scope = "token"

    def get_cache_key(self, request, view) -> str | None:
        token = _token_of(request)
        if token is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.pk}
