"""The loop guard's counts in the embedded store: one row per request (its fingerprint, which
names its key, and the guard's bucket width), read and written inside the transaction that
decides the call, so every worker counts every admission of it exactly. The rows are kept in
the worker's mirror like the windows (sqlite_mirror): read once while it holds, written once
per batch, before the commit."""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from typing import Protocol

from outlay.policy.decision import KeyInfo
from outlay.policy.loop_check import Loop, LoopRule, loop_under
from outlay.policy.windows import WindowState
from outlay.state.base import Ticket
from outlay.state.fingerprints import Fingerprints, row_name

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
WRITE = ("INSERT INTO repeats(mark, state, expires_ms) VALUES (?, ?, ?) ON CONFLICT(mark) "
         "DO UPDATE SET state=excluded.state, expires_ms=excluded.expires_ms")
# a row whose expiry is the one in the file: its buckets alone, its expiry index unchanged
# (most admissions of a request fall in the bucket of the one before)
WRITE_STATE = "UPDATE repeats SET state=? WHERE mark=?"
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
        self.fingerprints = Fingerprints()  # of the requests counted, made once each
        self._writes = 0  # rows written by this worker, for pruning one write in PRUNE_EVERY

    def prune_due(self) -> bool:
        """Whether this write prunes: the first, then one in PRUNE_EVERY."""
        due = self._writes % PRUNE_EVERY == 0
        self._writes += 1
        return due

    def digest(self, ticket: Ticket) -> bytes | None:
        if ticket.shape is None or ticket.key_hash not in self._keys:
            return None
        return self.fingerprints.body_digest(ticket.shape.body)

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
    return row_name(loop.fingerprint, loop.guard.bucket_ms)


def loop_of(mirror: RepeatRows, c: sqlite3.Connection, ticket: Ticket, key: KeyInfo,
            rule: LoopRule | None, keys: GuardedKeys, digest: bytes | None = None
            ) -> Loop | None:
    """The loop guard of the call (`rule`: the one its scopes' policies set, None when none
    does) and its request's admissions so far; None without a rule, for a request not known
    (refused unread), or when the call replays an admitted one (same Idempotency-Key).
    `digest`: the body's, when hashed before the transaction."""
    if ticket.replay_of is not None:
        return None
    shape = ticket.shape
    keys.saw(ticket.key_hash, rule is not None and shape is not None)
    if rule is None or shape is None:
        return None
    route = ticket.route
    made, row = keys.fingerprints.of(key.id, shape.method, f"{route} {shape.path}", shape.body,
                                 digest, rule.guard.bucket_ms)
    return loop_under(rule, key.id, route, shape, state=mirror.repeats_of(c, row),
                      fingerprinted=made)


def write(mirror: RepeatRows, loop: Loop, state: WindowState, now: int, prune: bool) -> None:
    """An admission counted: the request's buckets, kept until the newest leaves the window;
    with `prune`, rows past their window deleted too (both when the batch commits)."""
    guard = loop.guard
    mirror.set_repeats(mark(loop), state, state.newest * guard.bucket_ms + guard.window_ms,
                       now if prune else None)
