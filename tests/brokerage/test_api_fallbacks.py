"""Under /api/, what Django answers outside DRF's views is the one error body too: an unmatched
URL is a JSON 404 and an unhandled exception a JSON 500 with the request id, no traceback.
Elsewhere Django's own pages stand."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import path

from brokerage.urls import urlpatterns as project_urls
from tests.factories import log_in

pytestmark = pytest.mark.django_db


def _explode(request):
    raise RuntimeError("a bug with a secret in its message: hunter2")


urlpatterns = [path("api/v1/explode", _explode), path("explode", _explode), *project_urls]
handler404 = "brokerage.api_errors.page_not_found"
handler500 = "brokerage.api_errors.server_error"


def test_an_unmatched_api_url_is_the_one_404_body_elsewhere_djangos_page(world):
    client = Client()
    log_in(client, world.a.users["firm_admin"])
    answer = client.get("/api/v1/no-such-resource/")
    assert answer.status_code == 404 and answer["Content-Type"] == "application/json"
    assert answer.json() == {"errors": [{"field": "", "code": "not_found",
                                         "message": "no API resource at /api/v1/no-such-resource/"}]}
    assert "text/html" in client.get("/no-such-page/")["Content-Type"]


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_an_unhandled_exception_under_api_is_a_json_500_with_the_request_id():
    client = Client(raise_request_exception=False)
    answer = client.get("/api/v1/explode", HTTP_X_REQUEST_ID="req-123")
    assert answer.status_code == 500 and answer["Content-Type"] == "application/json"
    (error,) = answer.json()["errors"]
    assert error["code"] == "server_error" and "req-123" in error["message"]
    assert "hunter2" not in answer.content.decode() and answer["X-Request-ID"] == "req-123"
    page = client.get("/explode")
    assert page.status_code == 500 and "text/html" in page["Content-Type"]
