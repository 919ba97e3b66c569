"""The audit trail's keys: read from the environment (through settings), never from the database.

- Row hashes are HMAC-SHA256 under a key named by its id; each row records the id it was hashed
  with, so keys rotate: ``AUDIT_HMAC_KEY`` (hex, at least 32 bytes) is the key new rows are
  hashed with, ``AUDIT_HMAC_KEY_ID`` its id, and ``AUDIT_HMAC_RETIRED_KEYS`` (``id:hex,id:hex``)
  the earlier keys, which still verify the rows they hashed and hash nothing new.
- Checkpoints and export manifests are signed with an Ed25519 key: ``AUDIT_SIGNING_KEY`` is its
  32-byte seed as 64 hex characters; ``AUDIT_SIGNING_RETIRED_PUBLIC_KEYS`` (hex, comma
  separated) the public keys of earlier signing keys, whose anchors still verify.

With ``DJANGO_DEBUG=1`` and a variable unset (the demo, a developer's shell), the key is
generated once into ``var/`` (git ignores it) and reused by every process, never one per process:
the demo's web server, its eager tasks and a later ``verify_audit_chain`` agree. Production
(``DJANGO_DEBUG=0``) refuses to start without both variables (brokerage/settings.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")
HMAC_KEY_FILE = "audit-hmac.key"
SIGNING_KEY_FILE = "audit-signing.key"


@dataclass(frozen=True)
class HmacKeyring:
    current_id: str
    keys: dict[str, bytes]

    def row_hash(self, key_id: str, prev_hash: str, canonical: str) -> str:
        """HMAC-SHA256 of one row: its key id, the previous hash and its canonical content."""
        key = self.keys.get(key_id)
        if key is None:
            raise UnknownKey(key_id)
        message = f"{key_id}\n{prev_hash}\n{canonical}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()


class UnknownKey(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"hashed with key {key_id!r}, which this installation does not hold "
                         "(AUDIT_HMAC_KEY / AUDIT_HMAC_RETIRED_KEYS)")
        self.key_id = key_id


def _hex_key(value: str, name: str) -> bytes:
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} is not hexadecimal") from None
    if len(key) < 32:
        raise ImproperlyConfigured(f"{name} must be at least 32 bytes (64 hex characters)")
    return key


def _generated_once(name: str) -> str:
    """A 32-byte secret in var/NAME, created by the first process that asks (atomically: a
    second process racing it reads the first one's file) and reused ever after."""
    path = Path(settings.AUDIT_KEY_DIR) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
        draft.write_text(secrets.token_hex(32) + "\n")
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # fails if another process won: its key is the key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


@lru_cache(maxsize=1)
def hmac_keyring() -> HmacKeyring:
    keys: dict[str, bytes] = {}
    for entry in filter(None, (e.strip() for e in settings.AUDIT_HMAC_RETIRED_KEYS.split(","))):
        key_id, _, value = entry.partition(":")
        if not KEY_ID.match(key_id):
            raise ImproperlyConfigured(f"AUDIT_HMAC_RETIRED_KEYS: bad key id {key_id!r}")
        keys[key_id] = _hex_key(value, f"AUDIT_HMAC_RETIRED_KEYS[{key_id}]")
    if settings.AUDIT_HMAC_KEY:
        current_id = settings.AUDIT_HMAC_KEY_ID
        if not KEY_ID.match(current_id):
            raise ImproperlyConfigured(f"AUDIT_HMAC_KEY_ID: bad key id {current_id!r}")
        current = _hex_key(settings.AUDIT_HMAC_KEY, "AUDIT_HMAC_KEY")
    elif settings.AUDIT_DEVELOPMENT_KEYS:
        current = bytes.fromhex(_generated_once(HMAC_KEY_FILE))
        # The id names the key itself: a regenerated development key never passes for the old.
        current_id = "dev-" + hashlib.sha256(current).hexdigest()[:8]
    else:
        raise ImproperlyConfigured("AUDIT_HMAC_KEY must be set when DJANGO_DEBUG=0")
    if current_id in keys and keys[current_id] != current:
        raise ImproperlyConfigured(f"key id {current_id!r} names two different keys")
    keys[current_id] = current
    return HmacKeyring(current_id=current_id, keys=keys)


@lru_cache(maxsize=1)
def signing_key() -> Ed25519PrivateKey:
    seed = settings.AUDIT_SIGNING_KEY
    if not seed:
        if not settings.AUDIT_DEVELOPMENT_KEYS:
            raise ImproperlyConfigured("AUDIT_SIGNING_KEY must be set when DJANGO_DEBUG=0")
        seed = _generated_once(SIGNING_KEY_FILE)
    try:
        raw = bytes.fromhex(seed.strip())
    except ValueError:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY is not hexadecimal") from None
    if len(raw) != 32:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY is a 32-byte seed: 64 hex characters")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_hex(key: Ed25519PublicKey | None = None) -> str:
    key = key or signing_key().public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_key_pem() -> str:
    return signing_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def trusted_public_keys() -> dict[str, Ed25519PublicKey]:
    """hex -> key: the current signing key's public half and the retired ones."""
    trusted = {public_key_hex(): signing_key().public_key()}
    for value in filter(None, (v.strip() for v in
                               settings.AUDIT_SIGNING_RETIRED_PUBLIC_KEYS.split(","))):
        trusted[value.lower()] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))
    return trusted


def sign(message: bytes) -> str:
    return signing_key().sign(message).hex()


def signature_holds(public_key: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _forget_keys(*, setting: str, **kwargs) -> None:
    if setting.startswith("AUDIT_"):
        hmac_keyring.cache_clear()
        signing_key.cache_clear()


setting_changed.connect(_forget_keys)
