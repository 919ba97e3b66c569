"""The desk's lists read their rows' people in the list's own query: a page of audit events
costs the same whoever acted (the actor is nullable, so Django's changelist does not join it
by itself)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from brokerage import audit
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_audit_list_reads_its_actors_in_one_query(client, world):
    log_in(client, "alpha_compliance_officer", password=PASSWORD)
    url = reverse("admin:brokerage_auditevent_changelist")
    before = _queries(client, url)
    with transaction.atomic():
        for role in ("firm_admin", "risk_officer", "margin_desk", "client"):
            audit.record(firm=world.firm_a, actor=world.a.users[role],
                         event_type="test.acted", object_type="test", object_id=1, after={})
    assert _queries(client, url) == before


def test_the_risk_parameter_list_opens(client, world):
    log_in(client, "alpha_risk_officer", password=PASSWORD)
    assert client.get(reverse("admin:margin_riskparameterset_changelist")).status_code == 200
