"""One log line per request (method, path, status, duration), inside the request's scopes;
static files served by WhiteNoise."""

from __future__ import annotations

import logging
import os
import time

from django.utils.functional import empty
from whitenoise.middleware import WhiteNoiseMiddleware

from brokerage.models import Membership
from brokerage.scope import current_firm_or_none

from .logs import current_request

logger = logging.getLogger("pmargin.request")


def _firm_id(request) -> int | None:
    """The firm the request was served for: the session user's is in scope still; an API
    token's user was scoped inside the view only (``brokerage.api``), so it is looked up."""
    firm = current_firm_or_none()
    if firm is not None:
        return firm.pk
    user = getattr(getattr(request, "user", None), "_wrapped", getattr(request, "user", None))
    if user is None or user is empty or not getattr(user, "is_authenticated", False):
        return None
    return (Membership.cross_firm.for_compliance(reason="the firm of a request's log line")
            .filter(user=user).values_list("firm_id", flat=True).first())


class RequestLogMiddleware:
    """Placed after the tenant middleware: the request id and firm are in scope, and log lines
    written while the request is served carry its user (``operations.logs``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = current_request.set(request)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            level = logging.WARNING if response.status_code >= 500 else logging.INFO
            if logger.isEnabledFor(level):
                logger.log(level, "%s %s %s", request.method, request.path,
                           response.status_code, extra={
                               "method": request.method, "path": request.path,
                               "status": response.status_code, "duration_ms": duration_ms,
                               "firm_id": _firm_id(request)})
            return response
        finally:
            current_request.reset(token)


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, quiet until there is something to serve: STATIC_ROOT exists once
    `collectstatic` ran (``make serve``); before that (the tests, the demo, which serve static
    files through runserver) WhiteNoise would warn on every start."""

    def add_files(self, root, prefix=None):
        if os.path.isdir(root):
            super().add_files(root, prefix)
