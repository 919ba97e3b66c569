"""One log line per request (method, path, status, duration), inside the request's scopes."""

from __future__ import annotations

import logging
import time

from .logs import current_request

logger = logging.getLogger("pmargin.request")


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
            logger.log(level, "%s %s %s", request.method, request.path, response.status_code,
                       extra={"method": request.method, "path": request.path,
                              "status": response.status_code, "duration_ms": duration_ms})
            return response
        finally:
            current_request.reset(token)
