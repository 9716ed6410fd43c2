"""Sealing secrets at rest: AES-GCM under a key derived from OUTLAY_SECRET_KEY; values name
the key that sealed them; anything altered or sealed with an unknown key fails to open."""

from __future__ import annotations

import pytest

from outlay.state.sealing import Sealer, SealError, is_sealed

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="


def test_sealed_values_open_only_with_their_key() -> None:
    sealer = Sealer("a-long-secret-key-1")
    sealed = sealer.seal(SECRET)
    assert is_sealed(sealed)
    assert SECRET not in sealed
    assert sealed != sealer.seal(SECRET)  # a fresh nonce each time
    assert sealer.open(sealed) == SECRET
    with pytest.raises(SealError, match="OUTLAY_SECRET_KEY"):
        Sealer("another-secret-key-2").open(sealed)
    with pytest.raises(SealError, match="OUTLAY_SECRET_KEY"):
        Sealer().open(sealed)


def test_old_keys_open_and_the_new_key_seals() -> None:
    old = Sealer("a-long-secret-key-1").seal(SECRET)
    rotating = Sealer("the-new-secret-key-2", ["a-long-secret-key-1"])
    resealed = rotating.reseal(old)
    assert resealed != old
    assert Sealer("the-new-secret-key-2").open(resealed) == SECRET
    assert Sealer(None, ["a-long-secret-key-1"]).reseal(old) == SECRET  # back to clear


def test_an_altered_value_fails_to_open() -> None:
    sealer = Sealer("a-long-secret-key-1")
    sealed = sealer.seal(SECRET)
    head, body = sealed.rsplit(":", 1)
    flipped = body[:-6] + ("A" if body[-6] != "A" else "B") + body[-5:]
    with pytest.raises(SealError, match="altered"):
        sealer.open(f"{head}:{flipped}")
    with pytest.raises(SealError):
        sealer.open(f"{head}:!!!")


def test_without_a_key_values_are_kept_as_they_are() -> None:
    assert Sealer().seal(SECRET) == SECRET
    assert Sealer().open(SECRET) == SECRET
    assert not Sealer().sealing
