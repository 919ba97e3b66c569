"""/metrics (served to allowed addresses or a bearer secret only) and the JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from django.test import Client

from operations.logs import JsonFormatter


def _metrics(**extra):
    return Client().get("/metrics", **extra)


def _value(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} not in the exposition"
    return float(match.group(1))


def test_metrics_are_for_allowed_addresses_or_the_bearer_secret(db, settings):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1", "10.8.0.0/16"]
    settings.METRICS_BEARER_TOKEN = "s3cret-scraper"
    assert _metrics(REMOTE_ADDR="127.0.0.1").status_code == 200
    assert _metrics(REMOTE_ADDR="10.8.4.2").status_code == 200
    refused = _metrics(REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403 and b"pmargin_" not in refused.content
    assert _metrics(REMOTE_ADDR="203.0.113.9",
                    HTTP_AUTHORIZATION="Bearer s3cret-scraper").status_code == 200
    assert _metrics(REMOTE_ADDR="203.0.113.9",
                    HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    settings.METRICS_BEARER_TOKEN = ""  # no secret set: a bearer gets nothing
    assert _metrics(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_metrics_read_the_backlog_calls_and_ages_from_the_database(world):
    from brokerage.audit_anchors import take_checkpoint
    from margin.dirty import mark_accounts

    take_checkpoint(reason="test: a checkpoint")
    before = _metrics(REMOTE_ADDR="127.0.0.1")
    assert before["Content-Type"].startswith("text/plain")
    text = before.content.decode()
    assert _value(text, "pmargin_dirty_accounts") == 0
    for kind in ("reg_t", "maintenance", "house", "collateral", "intraday"):
        assert _value(text, "pmargin_open_margin_calls", f'{{kind="{kind}"}}') == 0
    # Both firms' accounts are not valued yet; their setup was audited just now.
    assert _value(text, "pmargin_current_margin_never_valued", '{firm="alpha"}') == 1
    assert 0 <= _value(text, "pmargin_audit_checkpoint_age_seconds", '{kind="signed_checkpoint"}') < 60
    # django-prometheus's request metrics are there too.
    assert "django_http_requests_total_by_method_total" in text

    mark_accounts([world.a.account.pk, world.b.account.pk], request=False)
    text = _metrics(REMOTE_ADDR="127.0.0.1").content.decode()
    assert _value(text, "pmargin_dirty_accounts") == 2
    assert 0 <= _value(text, "pmargin_sweep_lag_seconds") < 60


def test_a_value_makes_the_current_margin_age_per_firm(world):
    from tests.factories import value_each_firms_account

    value_each_firms_account(world)
    text = _metrics(REMOTE_ADDR="127.0.0.1").content.decode()
    for firm in ("alpha", "beta"):
        assert 0 <= _value(text, "pmargin_current_margin_age_seconds", f'{{firm="{firm}"}}') < 60
        assert _value(text, "pmargin_current_margin_never_valued", f'{{firm="{firm}"}}') == 0


@pytest.fixture
def json_lines():
    """The request logger's lines, formatted as production formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pmargin.request")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # production's level (development's is WARNING)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_request_logs_one_json_line_with_its_id_user_and_firm(world, json_lines):
    from brokerage.tokens import create_api_token

    user = world.a.users["risk_officer"]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {create_api_token(user=user, actor=None).secret}")
    answer = api.get(f"/api/v1/accounts/{world.a.account.number}/margin",
                     HTTP_X_REQUEST_ID="trace-42.a_b")
    assert answer["X-Request-ID"] == "trace-42.a_b"
    insane = Client().get("/healthz", HTTP_X_REQUEST_ID="no spaces; or <tags>")
    generated = insane["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)

    first, second = json_lines()
    assert {"time", "level", "logger", "message", "request_id", "user_id", "firm_id"} <= set(first)
    assert first["request_id"] == "trace-42.a_b" and first["logger"] == "pmargin.request"
    assert first["user_id"] == user.pk and first["firm_id"] == world.firm_a.pk
    assert first["status"] == answer.status_code and first["path"].endswith("/margin")
    assert second["request_id"] == generated and second["user_id"] is None
    assert second["firm_id"] is None and second["level"] == "INFO"
