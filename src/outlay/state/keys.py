"""Key and token secrets: made random, stored only as SHA-256 (they are high-entropy); and
the filter of key listings, shared by the SQL stores."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any


def new_secret() -> str:
    return "olk_" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_filter(agent: str | None, active_at_ms: int | None, mark: str
               ) -> tuple[str, list[Any]]:
    """The WHERE clause of a key listing (keys `k`) and its arguments: the keys of `agent`,
    those still usable at `active_at_ms`; `mark` is the driver's placeholder."""
    where: list[str] = []
    args: list[Any] = []
    if agent is not None:
        where.append(f"k.agent = {mark}")
        args.append(agent)
    if active_at_ms is not None:
        where.append(f"k.revoked_ms IS NULL AND (k.expires_ms IS NULL OR k.expires_ms > {mark})")
        args.append(active_at_ms)
    return (" WHERE " + " AND ".join(where) if where else ""), args
