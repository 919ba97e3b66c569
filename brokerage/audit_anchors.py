"""Signed checkpoints of the audit chains' heads, written outside the database.

A checkpoint is one JSON file in ``AUDIT_ANCHOR_DIR``: every head it covers (chain, seq, hash),
when it was taken and why, the signer's public key and an Ed25519 signature over the canonical
JSON of the rest. Files are created exclusively (never overwritten) and made read-only; the
directory is append-only by convention here and by a retention lock in production (object
storage). `verify_audit_chain` trusts these files, not the database: a head rolled back, a
chain rewritten or deleted no longer matches the latest checkpoint of its chain.

Checkpoints are taken after the heads they cover are committed (beat, the end of
``seed_demo``, every export), so a rolled-back transaction never leaves a checkpoint ahead of
its chain.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from . import audit_keys
from .models import AuditChainHead

KIND = "pmargin.audit.checkpoint"


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """What is signed: the document without its signature, keys sorted, no spaces."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def signed(document: dict[str, Any]) -> dict[str, Any]:
    document = {**document, "public_key": audit_keys.public_key_hex()}
    return {**document, "signature": audit_keys.sign(canonical_bytes(document))}


def anchor_dir() -> Path:
    return Path(settings.AUDIT_ANCHOR_DIR)


@dataclass(frozen=True)
class Checkpoint:
    chain: str
    seq: int
    hash: str
    taken_at: str
    file: str

    def as_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, "seq": self.seq, "hash": self.hash,
                "taken_at": self.taken_at, "anchor": self.file}


def take_checkpoint(*, reason: str, chains: Iterable[str] | None = None) -> list[Checkpoint]:
    """Sign the current heads (all, or those of `chains`) and write them to a new anchor file.
    Chains without an event yet are left out. Returns what was written."""
    heads = AuditChainHead.objects.filter(seq__gt=0).order_by("chain")
    if chains is not None:
        heads = heads.filter(chain__in=list(chains))
    now = datetime.now(UTC)
    taken_at = now.isoformat()
    rows = [{"chain": h.chain, "seq": h.seq, "hash": h.last_hash} for h in heads]
    if not rows:
        return []
    document = signed({"kind": KIND, "version": 1, "taken_at": taken_at, "reason": reason,
                       "heads": rows})
    folder = anchor_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{os.getpid()}-{secrets.token_hex(3)}.json"
    with open(folder / name, "x", encoding="utf-8") as handle:  # never overwrites
        json.dump(document, handle, sort_keys=True, indent=1)
    os.chmod(folder / name, 0o444)
    return [Checkpoint(r["chain"], r["seq"], r["hash"], taken_at, name) for r in rows]


def _newest_signed() -> Iterator[tuple[Path, dict[str, Any]]]:
    """The anchor files whose signature verifies under a trusted key, newest first (their names
    begin with the time they were taken), read one at a time: a caller stops at what it needs."""
    folder = anchor_dir()
    if not folder.is_dir():
        return
    trusted = audit_keys.trusted_public_keys()
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        key = (trusted.get(str(document.get("public_key", "")).lower())
               if isinstance(document, dict) and document.get("kind") == KIND else None)
        if key is not None and audit_keys.signature_holds(
                key, str(document.get("signature", "")), canonical_bytes(document)):
            yield path, document


def latest_checkpoint_time() -> datetime | None:
    """When the newest anchor file whose signature verifies was taken, or None: what readiness
    and metrics report as the audit checkpoint's age. A probe costs one file, not the whole
    directory."""
    for _path, document in _newest_signed():
        return datetime.fromisoformat(document["taken_at"])
    return None


def latest_checkpoint(chain: str) -> Checkpoint | None:
    """The newest signed checkpoint that covers `chain` (what a page shows beside the chain),
    reading files newest first until one names it. `read_anchors` is the verifier's full read."""
    for path, document in _newest_signed():
        for head in document.get("heads", []):
            if head.get("chain") == chain:
                return Checkpoint(chain, int(head["seq"]), head["hash"], document["taken_at"],
                                  path.name)
    return None


@dataclass(frozen=True)
class AnchorProblem:
    file: str
    reason: str


def read_anchors() -> tuple[dict[str, Checkpoint], list[AnchorProblem]]:
    """The latest checkpoint of each chain over every anchor file whose signature verifies
    under a trusted key, and the files that fail (each a problem: a forged or edited anchor)."""
    latest: dict[str, Checkpoint] = {}
    problems: list[AnchorProblem] = []
    trusted = audit_keys.trusted_public_keys()
    for path, document in _documents(problems):
        key = trusted.get(str(document.get("public_key", "")).lower())
        if key is None:
            problems.append(AnchorProblem(path.name, "signed by a key this installation does not "
                                                     "trust"))
            continue
        if not audit_keys.signature_holds(key, str(document.get("signature", "")),
                                          canonical_bytes(document)):
            problems.append(AnchorProblem(path.name, "its signature does not verify (altered)"))
            continue
        for head in document.get("heads", []):
            checkpoint = Checkpoint(head["chain"], int(head["seq"]), head["hash"],
                                    document["taken_at"], path.name)
            known = latest.get(checkpoint.chain)
            if known is None or checkpoint.seq > known.seq:
                latest[checkpoint.chain] = checkpoint
    return latest, problems


def _documents(problems: list[AnchorProblem]) -> Iterator[tuple[Path, dict[str, Any]]]:
    folder = anchor_dir()
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(AnchorProblem(path.name, f"unreadable ({exc})"))
            continue
        if not isinstance(document, dict) or document.get("kind") != KIND:
            problems.append(AnchorProblem(path.name, "not a checkpoint"))
            continue
        yield path, document
