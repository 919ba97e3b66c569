"""Keyed row hashes (HMAC, with the key id on each row) and triggers on the chain heads.

Existing rows are re-hashed under the current key, not kept as unkeyed "legacy" rows: a verifier
that accepted a plain SHA-256 row anywhere would accept a chain a database administrator
rewrote and labelled legacy. Each chain is first verified under the old plain SHA-256 rule and
the migration stops, naming the chain and event, if it does not hold (re-keying must not launder
an alteration). The old head's hash is kept in an `audit.rekeyed` event appended to each chain,
so an export taken before ties to the re-keyed chain.
"""

import hashlib
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import migrations, models
from django.utils import timezone

from brokerage.append_only import append_only, drop_append_only, forward_only_head

ZERO = "0" * 64


def _content(row) -> dict:
    return {
        "chain": row.chain, "seq": row.seq, "firm": row.firm_id, "actor": row.actor_id,
        "actor_role": row.actor_role, "event_type": row.event_type,
        "object_type": row.object_type, "object_id": row.object_id, "before": row.before,
        "after": row.after, "request_id": row.request_id,
        "created_at": row.created_at.isoformat(),
    }


def _canonical(row) -> str:
    return json.dumps(_content(row), sort_keys=True, separators=(",", ":"),
                      cls=DjangoJSONEncoder)


def rekey(apps, schema_editor) -> None:
    from brokerage.audit_keys import hmac_keyring

    AuditEvent = apps.get_model("brokerage", "AuditEvent")
    AuditChainHead = apps.get_model("brokerage", "AuditChainHead")
    chains = sorted(set(AuditEvent.objects.values_list("chain", flat=True).distinct()))
    if not chains:
        return
    keyring = hmac_keyring()
    for chain in chains:
        legacy_prev, keyed_prev, last_seq = ZERO, ZERO, 0
        for row in AuditEvent.objects.filter(chain=chain).order_by("seq"):
            canonical = _canonical(row)
            legacy = hashlib.sha256((legacy_prev + canonical).encode()).hexdigest()
            if (row.seq != last_seq + 1 or row.prev_hash != legacy_prev or row.hash != legacy):
                raise RuntimeError(
                    f"audit chain {chain} does not verify at event #{last_seq + 1} under its old "
                    "plain SHA-256 hashes: investigate before re-keying (nothing was changed)")
            keyed = keyring.row_hash(keyring.current_id, keyed_prev, canonical)
            AuditEvent.objects.filter(pk=row.pk).update(
                key_id=keyring.current_id, prev_hash=keyed_prev, hash=keyed)
            legacy_prev, keyed_prev, last_seq = legacy, keyed, row.seq
        head, _ = AuditChainHead.objects.get_or_create(chain=chain)
        if head.seq != last_seq or head.last_hash != legacy_prev:
            raise RuntimeError(f"audit chain {chain}: its head (#{head.seq}) does not match its "
                               f"last event (#{last_seq}): investigate before re-keying")
        marker = AuditEvent(
            chain=chain, seq=last_seq + 1, firm_id=int(chain.split(":")[1])
            if chain.startswith("firm:") else None, actor_id=None, actor_role="system",
            event_type="audit.rekeyed", object_type="audit.chain", object_id=chain,
            before={"hash": "sha256", "head": legacy_prev, "seq": last_seq},
            after={"hash": "hmac-sha256", "key_id": keyring.current_id, "head": keyed_prev},
            request_id="", created_at=timezone.now(), prev_hash=keyed_prev,
            key_id=keyring.current_id)
        # Stored exactly as hashed: the JSON round trip of audit.record's _jsonable.
        marker.before = json.loads(json.dumps(marker.before))
        marker.after = json.loads(json.dumps(marker.after))
        marker.hash = keyring.row_hash(keyring.current_id, keyed_prev, _canonical(marker))
        marker.save()
        AuditChainHead.objects.filter(pk=head.pk).update(seq=marker.seq, last_hash=marker.hash)


class Migration(migrations.Migration):
    dependencies = [("brokerage", "0005_api_tokens")]

    operations = [
        drop_append_only("brokerage_auditevent"),
        migrations.AddField(
            model_name="auditevent", name="key_id",
            field=models.CharField(default="", help_text="the HMAC key the hash was made with",
                                   max_length=16),
            preserve_default=False,
        ),
        migrations.RunPython(rekey, migrations.RunPython.noop),
        append_only("brokerage_auditevent"),
        forward_only_head("brokerage_auditchainhead", "brokerage_auditevent"),
    ]
