"""An agent request's key, judged from its head before its body is read: a missing, unknown,
revoked or expired key is refused without its body being waited for or parsed.

Only refusals are taken from this check. Every call it lets on is still authenticated by
the store, in the same atomic step that decides and reserves (`reserve`), so a key revoked
a moment ago is refused there as before; what is kept here (at most TTL_S old) can only make
a refused key's body be read once more. A refusal this check makes cannot be stale: a key
the store refuses stays refused (a revoked key is never restored, an expiry never moves,
and a new key's secret is random, so nobody asked for its hash before it existed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from outlay.policy.decide import authenticate
from outlay.policy.decision import KeyInfo
from outlay.policy.errors import AuthError
from outlay.state.base import StateError, StateStore
from outlay.state.keys import hash_secret


class _Gone:
    """A read that ended without an answer: its caller was cancelled."""


_GONE = _Gone()
TTL_S = 1.0  # how long a key read from the store is used here
MAX_KEPT = 10_000  # keys kept before starting over: random secrets must not fill the memory


class KeyCheck:
    """The store's keys by hash, each read at most once a TTL_S per worker: calls of a key
    that arrive while its read is under way wait for that read instead of making their own
    (a loaded worker would otherwise read a busy key once per call for as long as the
    store takes to answer)."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.monotonic,
                 ttl_s: float = TTL_S) -> None:
        self.store, self.clock, self.ttl_s = store, clock, ttl_s
        self._kept: dict[str, tuple[float, KeyInfo | None]] = {}
        self._reading: dict[str, asyncio.Future[KeyInfo | StateError | _Gone | None]] = {}
        # secret -> its SHA-256, as the store names the key: an agent presents the same key
        # on every call. Only the mapping is kept, which never changes; whether the key is
        # still usable is the store's to say on each call (a revoked key stays refused)
        self._hashes: dict[str, str] = {}

    def hash_of(self, secret: str) -> str:
        """hash_secret(secret), worked out once per secret (up to MAX_KEPT at a time)."""
        digest = self._hashes.get(secret)
        if digest is None:
            hashes = self._hashes
            if len(hashes) >= MAX_KEPT:
                hashes.clear()  # random secrets must not fill the memory
            digest = hashes[secret] = hash_secret(secret)
        return digest

    def kept(self, key_hash: str | None) -> KeyInfo | None:
        """The key last read for this hash, however old (what a span says of a refused
        call's agent); None when none was read. Never asks the store."""
        kept = self._kept.get(key_hash) if key_hash is not None else None
        return None if kept is None else kept[1]

    async def refusal(self, key_hash: str | None, now_ms: int) -> AuthError | None:
        """The 401 this key gets whatever its request says; None when the store decides."""
        if key_hash is None:
            return authenticate(None, now_ms)
        while True:
            now = self.clock()
            kept = self._kept.get(key_hash)
            if kept is not None and now - kept[0] < self.ttl_s:
                return authenticate(kept[1], now_ms)
            reading = self._reading.get(key_hash)
            if reading is None:
                key = await self._read(key_hash, now)
            else:
                # shielded: a caller cancelled while it waits leaves the read to the others
                key = await asyncio.shield(reading)
            if isinstance(key, _Gone):
                continue  # the caller reading it was cancelled: read it again
            if isinstance(key, StateError):
                return None  # the store decides the call, and answers 503 if still away
            return authenticate(key, now_ms)

    async def _read(self, key_hash: str, now: float) -> KeyInfo | StateError | _Gone | None:
        """Read the key in the caller's own task (a store that answers at once costs no
        task of its own); calls of the key arriving meanwhile wait for its answer."""
        reading: asyncio.Future[KeyInfo | StateError | _Gone | None] = \
            asyncio.get_running_loop().create_future()
        self._reading[key_hash] = reading
        key: KeyInfo | StateError | _Gone | None = _GONE
        try:
            key = await self.store.key_by_hash(key_hash)
        except StateError as exc:
            key = exc  # not kept: the next call asks the store again
        else:
            if len(self._kept) >= MAX_KEPT:
                self._kept.clear()
            self._kept[key_hash] = (now, key)
        finally:
            del self._reading[key_hash]
            reading.set_result(key)  # _GONE if this caller was cancelled or failed
        return key
