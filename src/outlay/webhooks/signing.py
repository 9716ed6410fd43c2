"""Standard Webhooks signatures: HMAC-SHA256 over "{id}.{timestamp}.{body}" with the
endpoint's secret, sent as `webhook-signature: v1,<base64>`. Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not a webhook secret: {exc}") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """One signature, "v1,<base64 HMAC-SHA256>"."""
    data = body.encode() if isinstance(body, str) else body
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + data,
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int,
                     body: bytes | str) -> str:
    """The `webhook-signature` value: one signature per secret in force, space-separated,
    so a receiver holding either secret verifies while a rotation overlaps."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def headers(secrets: Iterable[str], msg_id: str, timestamp: int,
            body: bytes | str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }
