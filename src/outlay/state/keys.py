"""Key and token secrets: made random, stored only as SHA-256 (they are high-entropy)."""

from __future__ import annotations

import hashlib
import secrets


def new_secret() -> str:
    return "olk_" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
