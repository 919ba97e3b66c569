"""/healthz, /readyz and /metrics: plain Django views, outside DRF (no authentication, no
throttling, no session), answering JSON or Prometheus' text format."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import health, metrics


@never_cache
@require_safe
def healthz(request) -> JsonResponse:
    """The process answers (touches no database, no broker)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request) -> JsonResponse:
    ready, checks = health.readiness()
    return JsonResponse({"status": "ready" if ready else "unready", "checks": checks},
                        status=200 if ready else 503)


def metrics_allowed(request) -> bool:
    """From an address in METRICS_ALLOWED_IPS (networks allowed), or with
    ``Authorization: Bearer <METRICS_BEARER_TOKEN>`` when that is set."""
    secret = settings.METRICS_BEARER_TOKEN
    supplied = request.headers.get("Authorization", "")
    if secret and hmac.compare_digest(supplied.encode(), f"Bearer {secret}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False)
               for network in settings.METRICS_ALLOWED_IPS if network)


@never_cache
@require_safe
def prometheus_metrics(request) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse({"errors": [{"field": None, "code": "forbidden",
                                         "message": "metrics are not served to this client"}]},
                            status=403)
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
