"""Secrets Outlay must keep in clear to use (webhook signing secrets), sealed at rest with
OUTLAY_SECRET_KEY: AES-256-GCM (an AEAD from `cryptography`) under a key derived from it by
HKDF-SHA256. A sealed value names the key that sealed it, so older keys can still open
values while `outlay rotate-secret-key` re-seals them; without a key, values stay in clear."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from outlay.state.base import StateError

PREFIX = "sealed:v1:"
_INFO = b"outlay secrets at rest v1"
_AAD = b"outlay"


class SealError(StateError):
    """A sealed value no configured key opens (the key is missing or wrong)."""


def _derive(key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.encode())


def _key_id(derived: bytes) -> str:
    return hashlib.sha256(b"outlay key id" + derived).hexdigest()[:12]


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


class Sealer:
    """Seals with `key` (nothing: values are kept in clear) and opens with it or any of
    `old_keys`."""

    def __init__(self, key: str | None = None, old_keys: Sequence[str] = ()) -> None:
        self._current: tuple[str, AESGCM] | None = None
        self._by_id: dict[str, AESGCM] = {}
        for i, raw in enumerate([key, *old_keys] if key else list(old_keys)):
            derived = _derive(raw)
            aead = AESGCM(derived)
            self._by_id[_key_id(derived)] = aead
            if i == 0 and key:
                self._current = (_key_id(derived), aead)

    @property
    def sealing(self) -> bool:
        return self._current is not None

    def seal(self, secret: str) -> str:
        if self._current is None:
            return secret
        key_id, aead = self._current
        nonce = os.urandom(12)
        body = nonce + aead.encrypt(nonce, secret.encode(), _AAD)
        return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(body).decode()}"

    def open(self, stored: str) -> str:
        if not is_sealed(stored):
            return stored
        key_id, _, text = stored[len(PREFIX):].partition(":")
        aead = self._by_id.get(key_id)
        if aead is None:
            raise SealError("a stored secret is sealed with a key Outlay was not given: set "
                            "OUTLAY_SECRET_KEY (or OUTLAY_OLD_SECRET_KEYS) to the key that "
                            "sealed it")
        try:
            body = base64.urlsafe_b64decode(text)
            return aead.decrypt(body[:12], body[12:], _AAD).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealError("a stored secret failed to open: it was altered") from exc

    def reseal(self, stored: str) -> str:
        """The value sealed with the current key (in clear when there is none)."""
        return self.seal(self.open(stored))

    def open_optional(self, stored: str | None) -> str | None:
        return None if stored is None else self.open(stored)
