"""Compliance exports: a firm's own chain through the API; every chain only for a platform
auditor, with a reason; both exports audited."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from brokerage import audit
from brokerage.models import AuditEvent
from brokerage.tenancy import create_platform_user
from tests.factories import PASSWORD, log_in

pytestmark = pytest.mark.django_db


def test_the_compliance_officer_exports_the_firms_own_chain(client, world):
    log_in(client, "alpha_compliance_officer", password=PASSWORD)
    response = client.get("/api/v1/audit/export")
    assert response.status_code == 200
    body = response.json()
    assert body["verified"] is True
    assert body["chain"] == audit.chain_key(world.firm_a)
    assert {row["firm"] for row in body["events"]} == {world.firm_a.pk}
    assert audit.events_for(world.firm_a).filter(event_type="audit.exported").exists()


def test_other_roles_cannot_export(client, world):
    log_in(client, "alpha_margin_desk", password=PASSWORD)
    assert client.get("/api/v1/audit/export").status_code == 403
    log_in(client, "alpha_client", password=PASSWORD)
    assert client.get("/api/v1/audit/export").status_code == 403


def test_a_platform_auditor_exports_every_chain_with_a_reason(world):
    create_platform_user(username="operator", role="auditor")
    out = StringIO()
    call_command("export_audit_trail", "--all-firms", "--user", "operator",
                 "--reason", "regulator request 2026-17", stdout=out)
    document = json.loads(out.getvalue())
    assert audit.chain_key(world.firm_a) in document and audit.chain_key(world.firm_b) in document
    event = AuditEvent.objects.get(event_type="audit.exported_cross_firm")
    assert event.after["reason"] == "regulator request 2026-17"
    assert (event.chain, event.actor_role) == (audit.PLATFORM_CHAIN, "platform_auditor")


def test_the_market_data_operator_does_not_export_the_trail(world):
    create_platform_user(username="prices", role="market_data")
    with pytest.raises(CommandError):
        call_command("export_audit_trail", "--all-firms", "--user", "prices",
                     "--reason", "curious", stdout=StringIO())


def test_a_tenant_user_cannot_export_across_firms(world):
    with pytest.raises(CommandError):
        call_command("export_audit_trail", "--all-firms", "--user", "alpha_compliance_officer",
                     "--reason", "curious", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("export_audit_trail", "--firm", "beta", "--user",
                     "alpha_compliance_officer", stdout=StringIO())
