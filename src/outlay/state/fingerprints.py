"""A worker's memory of the requests the loop guard counts: a body's canonical digest by the
SHA-256 of its bytes as sent, and a request's fingerprint with its row's name. An agent in a
loop sends the same bytes again and again, and the guard's whole cost was parsing, sorting
and hashing them each time; both maps are bounded, and a wrong entry cannot be made (each
is a function of its key)."""

from __future__ import annotations

import hashlib

from outlay.policy.loop_guard import body_digest, fingerprint

KEPT = 4096  # entries of each map before it starts over


def row_name(made: str, bucket_ms: int) -> str:
    """The name of a request's count row: its fingerprint and the guard's bucket width."""
    return f"{made}:{bucket_ms}"


class Fingerprints:
    def __init__(self) -> None:
        self._digests: dict[bytes, bytes] = {}
        # (key, method, route and path, body digest, bucket width) -> fingerprint, row name
        self._made: dict[tuple[str, str, str, bytes, int], tuple[str, str]] = {}

    def body_digest(self, body: bytes) -> bytes:
        """loop_guard.body_digest, made once for the same bytes."""
        sent = hashlib.sha256(body).digest()
        found = self._digests.get(sent)
        if found is None:
            if len(self._digests) >= KEPT:
                self._digests.clear()
            found = self._digests[sent] = body_digest(body)
        return found

    def of(self, key_id: str, method: str, path: str, body: bytes, digest: bytes | None,
           bucket_ms: int) -> tuple[str, str]:
        """The request's fingerprint (loop_guard.fingerprint; `digest`: its body's, when
        made already) and the name of its row: the fingerprint and the bucket width."""
        if digest is None:
            digest = self.body_digest(body)
        known = (key_id, method, path, digest, bucket_ms)
        found = self._made.get(known)
        if found is None:
            if len(self._made) >= KEPT:
                self._made.clear()
            made = fingerprint(key_id, method, path, body, digest)
            found = self._made[known] = (made, row_name(made, bucket_ms))
        return found
