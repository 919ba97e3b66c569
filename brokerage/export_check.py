"""Offline verification of an audit export: the file, its signed manifest and the published
public key; no database, no secret. Imports nothing of Django, so a third party can read it.

It holds when: the manifest's signature verifies under the public key given; the file's sha256
and row count are the manifest's; every row belongs to a chain the export covers, at or before
the checkpoint it ends on; rows of a chain come in order and each row that follows its
predecessor (consecutive seq) links to it (prev_hash); the first and last hashes are the
manifest's; and an export of whole chains (no date or type filter) holds every row from #1 to
its checkpoint, the last one's hash being the checkpoint's. One byte changed, a row removed or
added, and it fails, saying where.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ZERO = "0" * 64


def load_public_key(text: str) -> Ed25519PublicKey:
    """A PEM public key (``manage.py audit_public_key``) or its 64 hex characters."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def _canonical(document: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def _rows(data: bytes, file_format: str) -> list[dict[str, Any]]:
    text = data.decode("utf-8")
    if file_format == "csv":
        return [{**row, "seq": int(row["seq"])} for row in csv.DictReader(io.StringIO(text))]
    return [json.loads(line) for line in text.splitlines() if line]


def check_export(export: bytes, manifest: dict[str, Any], public_key: Ed25519PublicKey
                 ) -> list[str]:
    """What is wrong with an export (empty: it holds)."""
    try:
        public_key.verify(bytes.fromhex(str(manifest.get("signature", ""))), _canonical(manifest))
    except (InvalidSignature, ValueError):
        return ["the manifest's signature does not verify under this public key"]
    problems = []
    described = manifest["file"]
    if hashlib.sha256(export).hexdigest() != described["sha256"]:
        problems.append("the file's sha256 is not the manifest's (the file was altered)")
    try:
        rows = _rows(export, described["format"])
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        return [*problems, f"the file does not parse as {described['format']}: {exc}"]
    if len(rows) != described["rows"]:
        problems.append(f"the file holds {len(rows)} rows, the manifest {described['rows']}")
    if rows and (rows[0]["hash"], rows[-1]["hash"]) != (manifest["first_hash"],
                                                        manifest["last_hash"]):
        problems.append("the first or last row's hash is not the manifest's")
    problems += _links(rows, manifest)
    return problems


def _links(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    through = {chain: int(seq) for chain, seq in manifest["through"].items()}
    checkpoints = {c["chain"]: c for c in manifest["checkpoints"]}
    previous: dict[str, dict[str, Any]] = {}
    for row in rows:
        chain, seq = row["chain"], row["seq"]
        where = f"{chain}#{seq}"
        if chain not in through or seq > through[chain] or seq < 1:
            problems.append(f"{where}: not a row the export covers")
            continue
        before = previous.get(chain)
        if before is not None and seq <= before["seq"]:
            problems.append(f"{where}: out of order or repeated")
            continue
        expected_prev = (before["hash"] if before is not None and seq == before["seq"] + 1
                         else ZERO if seq == 1 else None)
        if expected_prev is not None and row["prev_hash"] != expected_prev:
            problems.append(f"{where}: prev_hash does not link to the row before")
        previous[chain] = row
    unfiltered = not any(manifest["range"].get(k) for k in ("since", "until", "event_types"))
    if unfiltered:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["chain"]] = counts.get(row["chain"], 0) + 1
        for chain, seq in through.items():
            if counts.get(chain, 0) != seq:
                problems.append(f"{chain}: {counts.get(chain, 0)} rows, the checkpoint ends at "
                                f"#{seq} (rows removed)")
            elif seq and previous[chain]["hash"] != checkpoints[chain]["hash"]:
                problems.append(f"{chain}: the last row is not the checkpoint's")
    return problems


def check_files(export: Path, manifest: Path, public_key: Path) -> list[str]:
    return check_export(export.read_bytes(), json.loads(manifest.read_text(encoding="utf-8")),
                        load_public_key(public_key.read_text(encoding="utf-8")))
