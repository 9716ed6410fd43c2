"""A worker's memory of looping requests: a body's digest and a request's fingerprint made
once each, the same as made afresh, and bounded."""

from __future__ import annotations

import pytest

from outlay.policy.loop_guard import fingerprint
from outlay.state import fingerprints as fingerprints_module
from outlay.state.fingerprints import Fingerprints


def test_a_body_and_a_request_are_hashed_once_and_alike(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    keys = Fingerprints()
    made: list[bytes] = []
    real = fingerprints_module.body_digest

    def counted(body: bytes) -> bytes:
        made.append(body)
        return real(body)

    monkeypatch.setattr(fingerprints_module, "body_digest", counted)
    bodies = [b'{"a": 1, "b": 2}', b'{"b":2,"a":1}', b'{"a": 3}']
    for body in bodies * 2:
        assert keys.body_digest(body) == real(body)
    assert made == bodies  # each worked out once
    monkeypatch.setattr(fingerprints_module, "KEPT", 2)
    for n in range(5):
        keys.body_digest(b'{"n": %d}' % n)
        assert len(keys._digests) <= 2  # bounded
    assert keys.body_digest(bodies[0]) == keys.body_digest(bodies[1])  # the same request
    fp, row = keys.of("k", "POST", "r /p", bodies[1], None, 1000)
    assert fp == fingerprint("k", "POST", "r /p", bodies[1])
    assert row == f"{fp}:1000"
    assert keys.of("k", "POST", "r /p", bodies[0], None, 1000) == (fp, row)
    assert keys.of("k2", "POST", "r /p", bodies[0], None, 1000)[0] != fp
