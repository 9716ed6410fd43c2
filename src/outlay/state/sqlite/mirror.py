"""What the embedded store's request path reads and writes, kept in the worker between
transactions, so a decision reads memory instead of a dozen rows.

The mirror is exact, never a guess: it is checked under SQLite's write lock at the start of
every transaction of the request path (`PRAGMA data_version` changes when any other
connection commits: another worker, `outlay` commands, a seeding script), and dropped
whenever something else wrote (another connection, or any other transaction of this worker,
see `SqliteStore.tx`); rows are then read again as they are needed.

Writes are kept with the rows and written before the transaction commits, so nothing is
answered before it is on disk: each counter, window and in-flight row changed by a batch
once, with its final value, and the batch's ledger rows and reservations with one
`executemany` each.

An admitted call's ledger row waits in its reservation: the decision writes it there, the
settlement completes it, and every `MOVE_ROWS` settled calls (or `MOVE_S`) one statement
moves the settled ones into the ledger. The ledger and its five indexes are then written
once for a batch of calls instead of once per call, and a call in flight changes no more
than one reservation page. Rows are numbered when decided (`next_seq`: after the highest
number in the ledger's `sqlite_sequence` entry or in the reservations, read once while the
mirror holds), so the ledger's order is still the order of the decisions, and
every read takes both tables (`ledger_sql.SOURCES`). A crash loses nothing: a settled row
not yet moved is moved by the next transaction that moves, one still pending is the
reaper's.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from outlay.policy.decision import KeyInfo
from outlay.policy.loop_check import LoopRule, loop_rule
from outlay.policy.model import Policy
from outlay.policy.tags import resolve, with_wildcards
from outlay.policy.windows import WindowState, decode, encode
from outlay.state.ledger_sql import (
    COUNTER_ROW,
    DROP_MOVED,
    FORWARD_MARK,
    HOLD_ROW,
    INSERT_ROW,
    LAST_SEQ,
    MOVE_SETTLED,
    SETTLE_ROW,
)
from outlay.state.sqlite.admin import read_key
from outlay.state.sqlite.repeats import PRUNE, PRUNED_PER_PRUNE, READ, WRITE, WRITE_STATE
from outlay.state.sqlite.windows_sql import (
    UPDATE_COUNTER,
    UPSERT_COUNTERS,
    WINDOW_START,
    read_windows,
)
from outlay.state.stored_policy import parse_stored_policy

CounterKey = tuple[str, str, int]  # scope, period, period start
InForce = tuple[Mapping[str, Policy], Mapping[str, Policy], LoopRule | None]
RepeatRow = tuple[WindowState, int]  # a loop guard's request: its buckets, when it expires
MAX_CACHED = 50_000  # keys or policies kept before the mirror starts over
# settled calls whose rows move to the ledger together: a move writes the last leaves of the
# ledger and of each of its five indexes (and their neighbours, which an index's split
# rewrites) whatever its size, so 256 rows a move rather than 64 took lock_hold's workload
# (batches of 32, bench/wal_frames.py) from 0.85 to 0.67 WAL frames a call; larger moves
# gain little more (512: 0.65) and hold the write lock longer at once
MOVE_ROWS = 256
MOVE_S = 0.1  # or whatever is settled, this long after the last move


@dataclass
class Held:
    """A reservation as the store settles it."""

    amount: int
    tokens: int
    holds: list[list[Any]]  # [scope, period, period start, amount, watched]
    tpm: list[list[Any]]  # [scope, bucket]
    parallel: list[str]
    key_id: str | None = None  # known when this worker made the reservation
    agent: str | None = None


class Mirror:
    def __init__(self) -> None:
        self.version: int | None = None
        self._to_move = 0  # settled here since the last move
        self._moved_at = time.monotonic()
        self._clear()

    def _clear(self) -> None:
        self.keys: dict[str, KeyInfo | None] = {}
        self.policies: dict[str, Policy | None] = {}
        # a call's scopes -> the policies set on them and their `*`s, those in force, and
        # the loop guard those put a call under
        self._in_force: dict[tuple[str, ...], InForce] = {}
        self.windows: dict[str, dict[str, WindowState]] = {}
        self.inflight: dict[str, int] = {}
        self.counters: dict[CounterKey, list[int]] = {}  # [spent, reserved]
        self.held: dict[str, Held | None] = {}
        self._seq: int | None = None  # the last sequence number given, None: read it
        self._dirty_windows: set[tuple[str, str]] = set()
        self._dirty_inflight: set[str] = set()
        self._dirty_counters: set[CounterKey] = set()
        # the rows of `counters` (budget counters and windows) known to be in the file: an
        # UPDATE by key costs less than the upsert a row not yet there needs
        self._stored: set[CounterKey] = set()
        self._new_held: list[tuple[Any, ...]] = []
        self._settled: list[tuple[Any, ...]] = []
        self._released: list[str] = []
        self._forwarded: list[tuple[str]] = []
        self._ledger_rows: list[tuple[Any, ...]] = []
        self.repeats: dict[str, RepeatRow | None] = {}  # None: no row
        self._dirty_repeats: dict[str, RepeatRow] = {}
        self._repeats_expiry: dict[str, int] = {}  # the expiry of a request's row in the file
        self._prunes = 0  # repeat rows' prunes due at the flush, of rows expired by:
        self._prune_at = 0

    # -- validity ---------------------------------------------------------------------
    def begin(self, c: sqlite3.Connection) -> None:
        """At the start of a transaction, under the write lock: keep what is still exact."""
        version = c.execute("PRAGMA data_version").fetchone()[0]
        if version != self.version:
            self._clear()
            self.version = version

    def drop(self) -> None:
        """Forget everything, pending writes included (a rolled-back transaction's)."""
        self._clear()
        self.version = None

    # -- reads: memory, else the row -------------------------------------------------------
    def key(self, c: sqlite3.Connection, key_hash: str) -> KeyInfo | None:
        if key_hash in self.keys:
            return self.keys[key_hash]
        info = read_key(c, key_hash)
        if info is None:
            return None  # not kept: unknown keys would fill the memory
        if len(self.keys) >= MAX_CACHED:
            self.keys.clear()
        self.keys[key_hash] = info
        return info

    def policies_of(self, c: sqlite3.Connection, scopes: tuple[str, ...]) -> dict[str, Policy]:
        missing = [s for s in scopes if s not in self.policies]
        if missing:
            if len(self.policies) >= MAX_CACHED:
                self.policies.clear()
                missing = list(scopes)
            found = dict(c.execute(
                f"SELECT scope, body FROM policies WHERE scope IN ({','.join('?' * len(missing))})",  # noqa: S608
                missing).fetchall())
            for scope in missing:
                body = found.get(scope)
                self.policies[scope] = None if body is None else parse_stored_policy(body)
        return {s: p for s in scopes if (p := self.policies[s]) is not None}

    def policies_in_force(self, c: sqlite3.Connection, scopes: tuple[str, ...]) -> InForce:
        """The policies set on `scopes` and on the `*` of each tag scope among them, each
        scope's in force (tags.resolve), and the loop guard those put a call under (None: no
        guard): the same for every call of a key while the policies hold, so made once (not
        to be changed by the caller)."""
        found = self._in_force.get(scopes)
        if found is None:
            own = self.policies_of(c, with_wildcards(scopes))
            in_force = resolve(scopes, own)
            if len(self._in_force) >= MAX_CACHED:
                self._in_force.clear()
            found = self._in_force[scopes] = (
                own, in_force, loop_rule((s, in_force.get(s)) for s in scopes))
        return found

    def windows_of(self, c: sqlite3.Connection, scope: str) -> dict[str, WindowState]:
        windows = self.windows.get(scope)
        if windows is None:
            windows = self.windows[scope] = read_windows(c, scope)
            self._stored.update((scope, name, WINDOW_START) for name in windows)
        return windows

    def inflight_of(self, c: sqlite3.Connection, scope: str) -> int:
        n = self.inflight.get(scope)
        if n is None:
            row = c.execute("SELECT n FROM inflight WHERE scope=?", (scope,)).fetchone()
            n = self.inflight[scope] = row[0] if row else 0
        return n

    def counter(self, c: sqlite3.Connection, key: CounterKey) -> list[int]:
        """[spent, reserved] of one budget period (a list: the writes below change it)."""
        values = self.counters.get(key)
        if values is None:
            row = c.execute(COUNTER_ROW, key).fetchone()
            if row is None:
                values = self.counters[key] = [0, 0]
            else:
                values = self.counters[key] = list(row)
                self._stored.add(key)
        return values

    def held_of(self, c: sqlite3.Connection, request_id: str) -> Held | None:
        if request_id in self.held:
            return self.held[request_id]
        row = c.execute("SELECT amount, tokens, holds, tpm, parallel, key_id, agent "
                        "FROM reservations WHERE id=? AND settlement IS NULL",
                        (request_id,)).fetchone()
        if row is None:
            return None
        amount, tokens, holds, tpm, parallel, key_id, agent = row
        return Held(amount, tokens, orjson.loads(holds), orjson.loads(tpm),
                    orjson.loads(parallel), key_id, agent)

    def repeats_of(self, c: sqlite3.Connection, mark: str) -> WindowState | None:
        """A loop guard's request's buckets (repeats.mark); None: no row."""
        if mark in self.repeats:
            row = self.repeats[mark]
        else:
            found = c.execute(READ, (mark,)).fetchone()
            row = None if found is None else (decode(found[0]), found[1])
            self._keep_repeats(mark, row)
            if found is not None:
                self._repeats_expiry[mark] = found[1]
        return None if row is None else row[0]

    def _keep_repeats(self, mark: str, row: RepeatRow | None) -> None:
        if mark not in self.repeats and len(self.repeats) >= MAX_CACHED:
            self.repeats = dict(self._dirty_repeats)  # each request its row: start over
            self._repeats_expiry = {}
        self.repeats[mark] = row

    def next_seq(self, c: sqlite3.Connection) -> int:
        """The sequence number of the next ledger row (under the write lock, so no other
        worker can give the same). Every number given is either in a reservation or, once
        moved (or a refusal's), in the ledger, whose AUTOINCREMENT entry then holds it: no
        write is needed to remember it."""
        if self._seq is None:
            self._seq = c.execute(LAST_SEQ).fetchone()[0]
        self._seq += 1
        return self._seq

    # -- writes: the row in memory now, on disk before the commit ----------------------------
    def set_window(self, scope: str, name: str, state: WindowState) -> None:
        self.windows.setdefault(scope, {})[name] = state
        self._dirty_windows.add((scope, name))

    def set_repeats(self, mark: str, state: WindowState, expires_ms: int,
                    prune_at: int | None) -> None:
        """A request's buckets after its admission; with `prune_at`, a prune of the rows
        expired by then due too (PRUNED_PER_PRUNE rows for each)."""
        row = (state, expires_ms)
        self._keep_repeats(mark, row)
        self._dirty_repeats[mark] = row
        if prune_at is not None:
            self._prunes += 1
            self._prune_at = max(self._prune_at, prune_at)

    def add_inflight(self, c: sqlite3.Connection, scope: str, delta: int) -> None:
        self.inflight[scope] = max(0, self.inflight_of(c, scope) + delta)
        self._dirty_inflight.add(scope)

    def add_counter(self, c: sqlite3.Connection, key: CounterKey, spent: int,
                    reserved: int) -> None:
        values = self.counter(c, key)
        values[0] += spent
        values[1] += reserved
        self._dirty_counters.add(key)

    def hold(self, c: sqlite3.Connection, request_id: str, reservation: tuple[Any, ...],
             ledger: tuple[Any, ...], held: Held) -> None:
        """A new reservation: `reservation` and `ledger` are the values of HOLD_ROW before and
        after its sequence number."""
        self.held[request_id] = held
        self._new_held.append((*reservation, self.next_seq(c), *ledger))

    def forwarded(self, request_id: str) -> None:
        """A reservation's call is about to be sent (the reaper charges it, not voids it)."""
        self._forwarded.append((request_id,))

    def release(self, request_id: str, settled: tuple[Any, ...]) -> None:
        """A reservation settled: `settled` are the values of SETTLE_ROW."""
        self.held[request_id] = None  # a second settle in this batch finds it gone
        self._released.append(request_id)
        self._settled.append(settled)

    def ledger_row(self, c: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        """A row written to the ledger at once (a refusal); `row` without its number."""
        self._ledger_rows.append((self.next_seq(c), *row))

    def move_now(self) -> None:
        """Have the next flush move every settled row, however few."""
        self._to_move = MOVE_ROWS

    def _write_counters(self, c: sqlite3.Connection) -> None:
        """The changed budget counters and windows (both rows of `counters`, schema version
        10): one UPDATE for the rows in the file, the upsert for the others."""
        stored, counters, windows = self._stored, self.counters, self.windows
        rows: list[tuple[Any, ...]] = []  # UPDATE_COUNTER's values
        new: list[tuple[Any, ...]] = []  # UPSERT_COUNTERS'
        for k in self._dirty_counters:
            spent, reserved = counters[k]
            if k in stored:
                rows.append((spent, reserved, None, *k))
            else:
                new.append((*k, spent, reserved, None))
        for scope, name in self._dirty_windows:
            state = encode(windows[scope][name])
            if (scope, name, WINDOW_START) in stored:
                rows.append((0, 0, state, scope, name, WINDOW_START))
            else:
                new.append((scope, name, WINDOW_START, 0, 0, state))
        if rows and c.executemany(UPDATE_COUNTER, rows).rowcount != len(rows):
            # a row thought to be in the file was not: the upsert writes every one (each
            # value is the row's whole new value, so writing one twice changes nothing)
            new += [(*r[3:], *r[:3]) for r in rows]
        if new:
            c.executemany(UPSERT_COUNTERS, new)
            stored.update(r[:3] for r in new)
        self._dirty_counters.clear()
        self._dirty_windows.clear()

    def _write_repeats(self, c: sqlite3.Connection) -> None:
        """The loop guard's changed rows: a row whose expiry is the one in the file gets its
        buckets alone (its expiry index untouched: a third of the cost), any other the
        whole row."""
        dirty, expiry = self._dirty_repeats, self._repeats_expiry
        same: list[tuple[bytes, str]] = []  # WRITE_STATE's values
        whole: list[tuple[str, bytes, int]] = []  # WRITE's
        for mark, (state, expires) in dirty.items():
            if expiry.get(mark) == expires:
                same.append((encode(state), mark))
            else:
                whole.append((mark, encode(state), expires))
        if same and c.executemany(WRITE_STATE, same).rowcount != len(same):
            # a row thought to be in the file was not: the whole row, for each of them
            whole += [(mark, state, dirty[mark][1]) for state, mark in same]
        if whole:
            c.executemany(WRITE, whole)
        for mark, (_, expires) in dirty.items():
            expiry[mark] = expires
        dirty.clear()

    def flush(self, c: sqlite3.Connection) -> None:
        """Write what this transaction changed, each row once."""
        if self._ledger_rows:
            c.executemany(INSERT_ROW, self._ledger_rows)
            self._ledger_rows.clear()
        if self._new_held:
            c.executemany(HOLD_ROW, self._new_held)
            self._new_held.clear()
        if self._forwarded:
            c.executemany(FORWARD_MARK, self._forwarded)
            self._forwarded.clear()
        if self._settled:
            c.executemany(SETTLE_ROW, self._settled)
            self._to_move += len(self._settled)
            self._settled.clear()
        if self._dirty_counters or self._dirty_windows:
            self._write_counters(c)
        if self._dirty_inflight:
            c.executemany(
                "INSERT INTO inflight(scope, n) VALUES (?, ?) "
                "ON CONFLICT(scope) DO UPDATE SET n=excluded.n",
                [(s, self.inflight[s]) for s in self._dirty_inflight])
            self._dirty_inflight.clear()
        if self._dirty_repeats:
            self._write_repeats(c)
        if self._prunes:
            for (mark,) in c.execute(PRUNE, (self._prune_at, PRUNED_PER_PRUNE * self._prunes)
                                     ).fetchall():
                self.repeats.pop(mark, None)
                self._repeats_expiry.pop(mark, None)
            self._prunes = self._prune_at = 0
        for rid in self._released:  # gone for good once on disk
            self.held.pop(rid, None)
        self._released.clear()
        now = time.monotonic()
        if self._to_move >= MOVE_ROWS or (self._to_move and now - self._moved_at >= MOVE_S):
            c.execute(MOVE_SETTLED)  # other workers' settled rows go along
            for drop in DROP_MOVED:
                c.execute(drop)
            self._to_move, self._moved_at = 0, now
