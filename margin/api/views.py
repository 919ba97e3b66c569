"""``POST /api/v1/margin/calculate``: the calculator over HTTP (CALCULATOR.md).

Authenticated (the project's DRF authentication: an API token or a session with its CSRF token),
stateless and firm-neutral: it reads no tenant data, so the same request gives the same bytes
whoever sends it and however they log in. The raw body goes to `margin.calculator.run` (not
DRF's parsed data, so big integers and key order survive) and its bytes come back unchanged:
the same as ``manage.py margin_calc``, its 400 included.

DRF never parses this body. Session authentication's CSRF check reads ``request.POST``, which
used to make DRF parse the body with the API's JSON parser before the view ran: a session
caller then got that parser's answers (a NaN refused in DRF's words, a 3,000-deep body a 500,
a text/plain body a 415) where a token caller got the calculator's own. So the raw body is read
before authentication and the view's only parser accepts anything and parses nothing.
Refusals before the calculator runs (no login: 401; a session without its CSRF token: 403; a
body past DATA_UPLOAD_MAX_MEMORY_SIZE: 413) are the API's one error body, which has the
calculator's error shape.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.http.request import RawPostDataException
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from brokerage.api_schema import ErrorsSerializer
from brokerage.parsers import UnparsedBodyParser
from margin.calculator import BAD_REQUEST, error_body, run

JSON = "application/json"


class MarginCalculateView(APIView):
    permission_classes = [IsAuthenticated]
    writes_nothing = True  # a POST that only computes: read-only API tokens may call it
    parser_classes = [UnparsedBodyParser]

    def initialize_request(self, request: HttpRequest, *args, **kwargs) -> Request:
        try:
            request.body  # noqa: B018 - read (and keep) the raw body before anything parses it
        except (RawPostDataException, RequestDataTooBig):  # post() meets it again and says so
            pass
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        request={JSON: OpenApiTypes.OBJECT},
        responses={200: OpenApiTypes.OBJECT, 400: ErrorsSerializer},
        summary="Margin calculator: portfolio margin, Reg T, SPAN, VaR and collateral",
        description="Request and response as specified in CALCULATOR.md (v1).",
    )
    def post(self, request: Request) -> HttpResponse:
        try:
            raw = request.body
        except RawPostDataException:
            return HttpResponse(error_body("", "malformed_json", "send the request as a JSON "
                                           "body (Content-Type: application/json)"),
                                status=BAD_REQUEST, content_type=JSON)
        status, body = run(raw)
        return HttpResponse(body, status=status, content_type=JSON)
