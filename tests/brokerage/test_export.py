"""Compliance exports: a firm's own chain through the API (csv or jsonl, date range, event type,
streamed, a signed manifest beside it that verifies offline); every chain only for a platform
auditor, with a reason; every export audited."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from brokerage import audit
from brokerage.audit_keys import public_key_pem
from brokerage.export_check import check_export, load_public_key
from brokerage.models import AuditEvent
from brokerage.tenancy import create_platform_user
from brokerage.tokens import create_api_token

pytestmark = pytest.mark.django_db


def bearer(user) -> Client:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {create_api_token(user=user, actor=None).secret}")
    assert client.get("/api/v1/").status_code == 200  # its first use from this address: audited
    return client


def _download(client: Client, query: str = ""):
    response = client.get(f"/api/v1/audit/export{query}")
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content)
    manifest_url = response["Link"].split(";")[0].strip("<>")
    manifest = client.get(manifest_url)
    assert manifest.status_code == 200, manifest.content
    return response, body, manifest.json()


def test_the_compliance_officer_exports_the_firms_own_chain_and_it_verifies_offline(world):
    client = bearer(world.a.users["compliance_officer"])
    response, body, manifest = _download(client)
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert {row["firm"] for row in rows} == {world.firm_a.pk}
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    assert manifest["file"]["rows"] == len(rows) and manifest["verified"] is True
    assert manifest["firm"]["slug"] == world.firm_a.slug
    assert manifest["exported_by"] == {"user": "alpha_compliance_officer",
                                       "role": "compliance_officer"}
    assert manifest["checkpoints"][0]["seq"] == rows[-1]["seq"] == manifest["through"][
        audit.chain_key(world.firm_a)]
    key = load_public_key(public_key_pem())
    assert check_export(body, manifest, key) == []
    export = AuditEvent.objects.get(chain=audit.chain_key(world.firm_a),
                                    seq=int(response["X-Audit-Export"]))
    assert export.event_type == "audit.exported"
    # one byte of one row changed: the offline check says so
    tampered = body.replace(b'"actor_role":"system"', b'"actor_role":"systen"', 1)
    assert tampered != body and check_export(tampered, manifest, key)
    # a row removed, with the manifest's count "fixed" but not re-signed: the signature fails
    shorter = b"".join(body.splitlines(keepends=True)[:-1])
    assert check_export(shorter, manifest, key)
    assert check_export(shorter, {**manifest, "file": {**manifest["file"], "rows": len(rows) - 1}},
                        key) == ["the manifest's signature does not verify under this public key"]


def test_csv_with_a_date_range_and_event_types(world):
    client = bearer(world.a.users["firm_admin"])
    today = timezone.localdate()
    _, body, manifest = _download(
        client, f"?file_format=csv&since={today - timedelta(days=1)}&until={today}"
                "&event_type=membership.created&event_type=account.opened")
    lines = body.decode().splitlines()
    assert lines[0].startswith("chain,seq,firm,actor")
    assert {line.split(",")[5] for line in lines[1:]} <= {"membership.created", "account.opened"}
    assert manifest["file"]["rows"] == len(lines) - 1 > 0
    assert manifest["range"]["event_types"] == ["account.opened", "membership.created"]
    assert check_export(body, manifest, load_public_key(public_key_pem())) == []
    _, body, manifest = _download(client, f"?since={today + timedelta(days=1)}")
    assert body == b"" and manifest["file"]["rows"] == 0


@pytest.mark.parametrize(("query", "field"), [
    ("?fromat=csv", "fromat"), ("?file_format=xml", "file_format"), ("?since=yesterday", "since"),
    ("?since=2026-02-02&until=2026-01-01", "since")])
def test_a_bad_query_is_a_400_naming_it_and_writes_nothing(world, query, field):
    client = bearer(world.a.users["compliance_officer"])
    before = AuditEvent.objects.count()
    response = client.get(f"/api/v1/audit/export{query}")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field
    assert AuditEvent.objects.count() == before


def test_other_roles_cannot_export_nor_read_a_manifest(world):
    _, _, _ = _download(bearer(world.a.users["compliance_officer"]))
    seq = AuditEvent.objects.filter(event_type="audit.exported").get().seq
    for role in ("margin_desk", "client"):
        client = bearer(world.a.users[role])
        assert client.get("/api/v1/audit/export").status_code == 403
        assert client.get(f"/api/v1/audit/export/{seq}/manifest").status_code == 403
    other = bearer(world.b.users["compliance_officer"])
    assert other.get(f"/api/v1/audit/export/{seq}/manifest").status_code == 404


def test_the_command_writes_the_file_and_its_manifest_and_they_verify(world, tmp_path):
    out = tmp_path / "trail.csv"
    call_command("export_audit_trail", "--firm", "alpha", "--user", "alpha_compliance_officer",
                 "--file-format", "csv", "--output", str(out), stdout=StringIO())
    key = tmp_path / "public.pem"
    call_command("audit_public_key", stdout=(buffer := StringIO()))
    key.write_text(buffer.getvalue())
    result = StringIO()
    call_command("verify_audit_chain", "--export", str(out), "--manifest",
                 f"{out}.manifest.json", "--public-key", str(key), stdout=result)
    assert "OK" in result.getvalue()
    out.write_bytes(out.read_bytes().replace(b"membership.created", b"membership.createX", 1))
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", "--export", str(out), "--manifest",
                     f"{out}.manifest.json", "--public-key", str(key), stdout=(bad := StringIO()))
    assert "sha256" in bad.getvalue()


def test_a_platform_auditor_exports_every_chain_with_a_reason(world, tmp_path):
    create_platform_user(username="operator", role="auditor")
    out = tmp_path / "all.jsonl"
    call_command("export_audit_trail", "--all-firms", "--user", "operator",
                 "--reason", "regulator request 2026-17", "--output", str(out),
                 stdout=StringIO())
    chains = {json.loads(line)["chain"] for line in out.read_text().splitlines()}
    assert {audit.chain_key(world.firm_a), audit.chain_key(world.firm_b)} <= chains
    event = AuditEvent.objects.get(event_type="audit.exported_cross_firm")
    assert event.after["reason"] == "regulator request 2026-17"
    assert (event.chain, event.actor_role) == (audit.PLATFORM_CHAIN, "platform_auditor")
    manifest = json.loads((tmp_path / "all.jsonl.manifest.json").read_text())
    assert manifest["firm"] is None and manifest["reason"] == "regulator request 2026-17"
    assert check_export(out.read_bytes(), manifest, load_public_key(public_key_pem())) == []


def test_the_market_data_operator_does_not_export_the_trail(world, tmp_path):
    create_platform_user(username="prices", role="market_data")
    with pytest.raises(CommandError):
        call_command("export_audit_trail", "--all-firms", "--user", "prices",
                     "--reason", "curious", "--output", str(tmp_path / "x"), stdout=StringIO())


def test_a_tenant_user_cannot_export_across_firms(world, tmp_path):
    with pytest.raises(CommandError):
        call_command("export_audit_trail", "--all-firms", "--user", "alpha_compliance_officer",
                     "--reason", "curious", "--output", str(tmp_path / "x"), stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("export_audit_trail", "--firm", "beta", "--user",
                     "alpha_compliance_officer", "--output", str(tmp_path / "x"),
                     stdout=StringIO())
    assert not AuditEvent.objects.filter(event_type__startswith="audit.exported").exists()
