"""The hash of an agent's key, worked out once per secret in a worker: the same hash the
store names the key by, a bounded number kept, and nothing that keeps a revoked key usable
(the store refuses it by its hash on every call)."""

from __future__ import annotations

from outlay.gateway import keycheck
from outlay.gateway.keycheck import KeyCheck
from outlay.state.keys import hash_secret, new_secret


def test_the_hash_is_the_stores() -> None:
    check = KeyCheck(None)  # type: ignore[arg-type]
    secrets = [new_secret() for _ in range(20)]
    for _ in range(3):
        for secret in secrets:
            assert check.hash_of(secret) == hash_secret(secret)


def test_the_hashes_kept_are_bounded() -> None:
    check = KeyCheck(None)  # type: ignore[arg-type]
    for i in range(keycheck.MAX_KEPT * 2 + 7):
        secret = f"olk_{i}"
        assert check.hash_of(secret) == hash_secret(secret)
        assert len(check._hashes) <= keycheck.MAX_KEPT
