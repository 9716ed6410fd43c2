"""The loop guard's counts in the embedded store: one row per request (its fingerprint, which
names its key, and the guard's bucket width), read and written inside the transaction that
decides the call, so every worker counts every admission of it exactly. The rows are kept in
the worker's mirror like the windows (sqlite_mirror): read once while it holds, written once
per batch, before the commit."""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from outlay.policy.decision import KeyInfo, ScopeView
from outlay.policy.loop_check import Loop, loop_in_force
from outlay.policy.loop_guard import body_digest
from outlay.policy.windows import WindowState
from outlay.state.base import Ticket

REPEATS_SCHEMA = """
CREATE TABLE IF NOT EXISTS repeats (
  mark TEXT PRIMARY KEY, state BLOB NOT NULL, expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repeats_expiry ON repeats(expires_ms);
"""
# rows past their window are deleted with one write in PRUNE_EVERY, at most PRUNED_PER_PRUNE
# of them (four times what was written since): the table stays small, and the write of most
# calls is one statement
PRUNE_EVERY = 32
PRUNED_PER_PRUNE = 4 * PRUNE_EVERY
GUARDED_KEYS_KEPT = 4096
READ = "SELECT state, expires_ms FROM repeats WHERE mark=?"
WRITE = "INSERT OR REPLACE INTO repeats(mark, state, expires_ms) VALUES (?, ?, ?)"
# the marks deleted, for the mirror to forget
PRUNE = ("DELETE FROM repeats WHERE mark IN (SELECT mark FROM repeats WHERE expires_ms <= ? "
         "LIMIT ?) RETURNING mark")


class RepeatRows(Protocol):
    """Where the rows are read and written: the worker's mirror (sqlite_mirror)."""

    def repeats_of(self, c: sqlite3.Connection, mark: str) -> WindowState | None: ...

    def set_repeats(self, mark: str, state: WindowState, expires_ms: int,
                    prune_at: int | None) -> None: ...


class GuardedKeys:
    """The keys (by hash) whose last call on this worker was under a loop guard: their next
    call's body is hashed before the transaction, not under SQLite's write lock (a large
    prompt takes a quarter of a millisecond). A key it does not know is hashed inside, only
    when a guard applies; one it knows wrongly costs a hash, never a wrong decision."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._writes = 0  # rows written by this worker, for pruning one write in PRUNE_EVERY

    def prune_due(self) -> bool:
        """Whether this write prunes: the first, then one in PRUNE_EVERY."""
        due = self._writes % PRUNE_EVERY == 0
        self._writes += 1
        return due

    def digest(self, ticket: Ticket) -> bytes | None:
        if ticket.shape is None or ticket.key_hash not in self._keys:
            return None
        return body_digest(ticket.shape.body)

    def saw(self, key_hash: str | None, guarded: bool) -> None:
        if key_hash is None:
            return
        if not guarded:
            self._keys.pop(key_hash, None)
            return
        self._keys[key_hash] = None
        self._keys.move_to_end(key_hash)
        if len(self._keys) > GUARDED_KEYS_KEPT:
            self._keys.popitem(last=False)


def mark(loop: Loop) -> str:
    return f"{loop.fingerprint}:{loop.guard.bucket_ms}"


def loop_of(mirror: RepeatRows, c: sqlite3.Connection, ticket: Ticket, key: KeyInfo,
            views: Sequence[ScopeView], keys: GuardedKeys, digest: bytes | None = None, *,
            guarded: bool = True) -> Loop | None:
    """The loop guard of the call and its request's admissions so far; None when no policy
    of its scopes sets one, or the call replays an admitted one (same Idempotency-Key).
    `digest`: the body's, when hashed before the transaction; `guarded`: False when it is
    known that no policy of the views sets a guard."""
    if ticket.replay_of is not None:
        return None
    loop = loop_in_force(((v.scope, v.policy) for v in views), key.id, ticket.route,
                         ticket.shape, digest) if guarded else None
    keys.saw(ticket.key_hash, loop is not None)
    if loop is None:
        return None
    state = mirror.repeats_of(c, mark(loop))
    return loop if state is None else replace(loop, state=state)


def write(mirror: RepeatRows, loop: Loop, state: WindowState, now: int, prune: bool) -> None:
    """An admission counted: the request's buckets, kept until the newest leaves the window;
    with `prune`, rows past their window deleted too (both when the batch commits)."""
    guard = loop.guard
    mirror.set_repeats(mark(loop), state, state.newest * guard.bucket_ms + guard.window_ms,
                       now if prune else None)
