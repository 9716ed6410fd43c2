"""The loop guard's counts in the embedded store: one row per request (its fingerprint, which
names its key, and the guard's bucket width), read and written inside the transaction that
decides the call, so every worker counts every admission of it exactly."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from outlay.policy.decision import KeyInfo, ScopeView
from outlay.policy.loop_check import Loop, loop_in_force
from outlay.policy.windows import WindowState, decode, encode
from outlay.state.base import Ticket

REPEATS_SCHEMA = """
CREATE TABLE IF NOT EXISTS repeats (
  mark TEXT PRIMARY KEY, state BLOB NOT NULL, expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repeats_expiry ON repeats(expires_ms);
"""
PRUNED_PER_WRITE = 4  # rows past their window deleted with each write: the table stays small


def _mark(loop: Loop) -> str:
    return f"{loop.fingerprint}:{loop.guard.bucket_ms}"


def loop_of(c: sqlite3.Connection, ticket: Ticket, key: KeyInfo, views: Sequence[ScopeView]
            ) -> Loop | None:
    """The loop guard of the call and its request's admissions so far; None when no policy
    of its scopes sets one, or the call replays an admitted one (same Idempotency-Key)."""
    if ticket.replay_of is not None:
        return None
    loop = loop_in_force(((v.scope, v.policy) for v in views), key.id, ticket.route,
                         ticket.shape)
    if loop is None:
        return None
    row = c.execute("SELECT state FROM repeats WHERE mark=?", (_mark(loop),)).fetchone()
    return loop if row is None else replace(loop, state=decode(row[0]))


def write(c: sqlite3.Connection, loop: Loop, state: WindowState, now: int) -> None:
    """An admission counted: the request's buckets, kept until the newest leaves the window."""
    guard = loop.guard
    c.execute("INSERT OR REPLACE INTO repeats(mark, state, expires_ms) VALUES (?, ?, ?)",
              (_mark(loop), encode(state), state.newest * guard.bucket_ms + guard.window_ms))
    c.execute("DELETE FROM repeats WHERE mark IN (SELECT mark FROM repeats WHERE expires_ms "
              "<= ? LIMIT ?)", (now, PRUNED_PER_WRITE))
