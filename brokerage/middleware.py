"""Puts the request's firm (from the user's membership), its time zone and a request id in
scope."""

from __future__ import annotations

import re
import uuid
import zoneinfo

from django.utils import timezone

from .scope import firm_scope, request_id_scope
from .tenancy import firm_of

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class TenantScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _SAFE_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        firm = firm_of(request.user)
        # Times are stored in UTC; pages (portal and admin) show them in the firm's zone.
        # Everyone without a firm sees settings.TIME_ZONE.
        if firm is not None:
            timezone.activate(zoneinfo.ZoneInfo(firm.time_zone))
        else:
            timezone.deactivate()
        try:
            with request_id_scope(request_id), firm_scope(firm):
                response = self.get_response(request)
        finally:
            timezone.deactivate()  # the next request on this thread starts from the default
        response["X-Request-ID"] = request_id
        return response
