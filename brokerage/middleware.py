"""Puts the request's firm (from the user's membership), its time zone and a request id in
scope; ends idle and overlong sessions; holds a session that owes its second factor at the
code step."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from . import second_factor
from .api_errors import API_PREFIX
from .scope import firm_scope, request_id_scope
from .tenancy import firm_of, is_staff_member

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


SESSION_STARTED_AT = "session_started_at"
SESSION_LAST_SEEN_AT = "session_last_seen_at"


class SessionExpiryMiddleware:
    """Ends a session idle too long or open too long: staff after STAFF_SESSION_IDLE_S idle,
    clients after CLIENT_SESSION_IDLE_S, everyone SESSION_ABSOLUTE_S after the login (whose
    signal starts the clock, brokerage.signals). The request then goes on as anonymous: a page
    asks for the login, the API answers 401. (A password change ends every session of the user
    by itself: Django checks the session's password hash on each request.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            session = request.session
            now = timezone.now().timestamp()
            started = session.setdefault(SESSION_STARTED_AT, now)
            last_seen = session.get(SESSION_LAST_SEEN_AT, started)
            idle_limit = (settings.STAFF_SESSION_IDLE_S if is_staff_member(request.user)
                          else settings.CLIENT_SESSION_IDLE_S)
            if now - last_seen > idle_limit or now - started > settings.SESSION_ABSOLUTE_S:
                logout(request)
            else:
                session[SESSION_LAST_SEEN_AT] = now
        return self.get_response(request)


# Where a session that owes its second factor may still go: the login steps and static files.
_OPEN_TO_UNVERIFIED = ("/accounts/login/", "/accounts/logout/", "/accounts/otp/", "/static/",
                       "/admin/login/", "/admin/logout/")


class SecondFactorMiddleware:
    """A staff session (or an enrolled client's) without a verified code sees no page: it is
    sent to the code step, or to enrolment when it has no authenticator yet. The API under
    /api/ is left to DRF, whose session authentication refuses the same sessions
    (`brokerage.api_auth.VerifiedSessionAuthentication`); Bearer tokens are not asked."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if (request.user.is_authenticated and not path.startswith(_OPEN_TO_UNVERIFIED)
                and not path.startswith(API_PREFIX)
                and second_factor.second_factor_missing(request.user)):
            step = ("otp-verify" if second_factor.has_authenticator(request.user)
                    else "otp-enrol")
            return redirect(f"{reverse(step)}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)
