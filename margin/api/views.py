"""``POST /api/v1/margin/calculate``: the calculator over HTTP (CALCULATOR.md).

Authenticated (the project's DRF authentication: session or basic), stateless and firm-neutral:
it reads no tenant data, so the same request gives the same bytes whoever sends it. The raw
body goes to `margin.calculator.run` (not DRF's parsed data, so big integers and key order
survive) and its bytes come back unchanged: the same as ``manage.py margin_calc``.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.http.request import RawPostDataException
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from margin.calculator import BAD_REQUEST, error_body, run

JSON = "application/json"


class MarginCalculateView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request={JSON: OpenApiTypes.OBJECT},
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
        summary="Margin calculator: portfolio margin, Reg T, SPAN, VaR and collateral",
        description="Request and response as specified in CALCULATOR.md (v1).",
    )
    def post(self, request: Request) -> HttpResponse:
        try:
            raw = request.body
        except RawPostDataException:  # a form or multipart body was parsed already
            return HttpResponse(error_body("", "malformed_json", "send the request as a JSON "
                                           "body (Content-Type: application/json)"),
                                status=BAD_REQUEST, content_type=JSON)
        status, body = run(raw)
        return HttpResponse(body, status=status, content_type=JSON)
