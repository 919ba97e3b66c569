"""Puts the request's firm (from the user's membership) and a request id in scope."""

from __future__ import annotations

import re
import uuid

from .scope import firm_scope, request_id_scope
from .tenancy import firm_of

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class TenantScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _SAFE_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        with request_id_scope(request_id), firm_scope(firm_of(request.user)):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
