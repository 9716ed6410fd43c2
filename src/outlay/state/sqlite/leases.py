"""The embedded store's leases and liveness: a worker's heartbeat, the renewal of calls
still running, the mark of a call about to be sent, and the reaper, which charges in full
the reservations whose lease ran out or whose worker stopped (no heartbeat for 5 s), but
voids those whose worker never marked their call forwarded: it died before sending it.
A mark is an append to the worker's own file while the worker and the reservation are
well within those limits (marks.py), else a row of the database."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from outlay.state.base import Outcome, Reaped, StateError
from outlay.state.sqlite import marks as mark_files

if TYPE_CHECKING:
    import contextlib

    from outlay.state.sqlite.batch import GroupCommit
    from outlay.state.sqlite.mirror import Mirror

log = logging.getLogger("outlay.state")

HEARTBEAT_STALE_MS = 5_000
# a mark goes to the worker's file only while its last heartbeat is at most this old (and
# the reservation at most half its lease): far from where the reaper would judge it dead
FRESH_MS = HEARTBEAT_STALE_MS // 2
UNSENT_KEPT = 100_000  # reservations not yet sent a worker keeps, before it starts over


class LeasesMixin:
    if TYPE_CHECKING:
        worker: str
        lease_ms: int
        clock: Callable[[], int]
        _batch: GroupCommit
        _mirror: Mirror
        _marks: mark_files.MarkFiles | None

        def tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

        def _settle_exposed(self, c: sqlite3.Connection, outcome: Outcome,
                            report: None) -> int | None: ...

    _unsent: dict[str, int]  # reservation id -> when made: this worker's, not yet sent
    _in_file: set[str]  # the calls marked in the file written now
    _beat_ms: int | None = None  # the last heartbeat this worker wrote
    _moving: set[str] | None = None  # the marks of the file left, being moved
    _old_file_durable = True  # every mark of the file not written to is in the database
    _rotation: asyncio.Task[None] | None = None

    def _made(self, reservation_id: str, started_ms: int) -> None:
        """A reservation of this worker, committed, its call not sent yet."""
        if len(self._unsent) >= UNSENT_KEPT:  # calls never sent nor settled: start over
            self._unsent.clear()  # (one forgotten is marked in the database)
        self._unsent[reservation_id] = started_ms

    def _done(self, reservation_id: str) -> None:
        """A reservation settled by this worker."""
        self._unsent.pop(reservation_id, None)

    def _fresh(self, started_ms: int) -> bool:
        now = self.clock()
        return (self._beat_ms is not None and now - self._beat_ms <= FRESH_MS
                and now - started_ms < self.lease_ms // 2)

    async def forwarding(self, reservation_id: str) -> bool:
        started = self._unsent.pop(reservation_id, None)
        files = self._marks
        if (started is not None and files is not None and self._fresh(started)
                and files.append(reservation_id) and self._fresh(started)):
            self._in_file.add(reservation_id)
            if files.full():
                self._rotate(files)
            return True
        marked: bool = await self._batch.run(lambda c: self._forwarding(c, reservation_id))
        return marked

    def _rotate(self, files: mark_files.MarkFiles) -> None:
        """Turn to the other file (emptied: its marks are in the database), then mark in the
        database the calls of the file left still running, so that it may be emptied in
        turn."""
        if self._moving is not None:
            return
        if self._old_file_durable:
            files.switch()
        self._moving, self._in_file = self._in_file, set()
        self._rotation = asyncio.get_running_loop().create_task(self._marks_to_database())

    async def _marks_to_database(self) -> None:
        moving = self._moving or set()
        try:
            await self._batch.run(lambda c: self._durable_marks(c, moving), always=True)
            self._old_file_durable = True
        except StateError as exc:
            self._old_file_durable = False  # the file left is kept; tried again when full
            self._in_file |= moving
            log.warning("forwarded marks not moved to the database: %s", exc)
        finally:
            self._moving = None

    def _durable_marks(self, c: sqlite3.Connection, marked: set[str]) -> None:
        """Mark in the database those of `marked` still running."""
        if not marked:
            return
        for (rid,) in c.execute("SELECT id FROM reservations WHERE worker=? "
                                "AND settlement IS NULL", (self.worker,)).fetchall():
            if rid in marked:
                self._mirror.forwarded(rid)

    def _forwarding(self, c: sqlite3.Connection, reservation_id: str) -> bool:
        if self._mirror.held_of(c, reservation_id) is None:
            return False  # settled (reaped) meanwhile: not to be sent
        self._mirror.forwarded(reservation_id)  # written with the batch, before it commits
        return True

    async def renew(self, reservation_ids: list[str]) -> int:
        if not reservation_ids:
            return 0
        until = self.clock() + self.lease_ms
        renewed: int = await self._batch.run(lambda c: sum(
            c.execute("UPDATE reservations SET lease_ms=? WHERE id=? AND worker=? "
                      "AND settlement IS NULL", (until, rid, self.worker)).rowcount
            for rid in reservation_ids))
        return renewed

    async def heartbeat(self) -> None:
        now = self.clock()
        with self.tx() as c:
            beating = c.execute("UPDATE workers SET heartbeat_ms=? WHERE id=?",
                                (now, self.worker)).rowcount
            if not beating:
                c.execute("INSERT INTO workers(id, heartbeat_ms) VALUES (?, ?)",
                          (self.worker, now))
        if not beating and self._beat_ms is not None and self._marks is not None:
            # the reaper took this worker for dead, and may remove its files
            self._marks.disable("the worker was taken for dead and came back")
        self._beat_ms = now

    async def reap(self) -> list[Reaped]:
        """Charge in full the reservations whose lease ran out or whose worker died; void
        those whose worker never marked their call forwarded (it died before sending it)."""
        now = self.clock()
        by_worker: dict[str, Reaped] = {}
        directory = None if self._marks is None else self._marks.directory
        listed = mark_files.list_files(directory)  # before reading who is alive
        in_files: dict[str, set[str] | None] = {}
        with self.tx() as c:
            held = c.execute(
                # sent: marked, or numbered before version 3 (see schema._FORWARDED_CALLS)
                "SELECT r.id, r.worker, r.amount, f.seq IS NOT NULL OR r.seq IS NULL "
                "FROM reservations r LEFT JOIN forwarded_calls f ON f.seq = r.seq "
                "LEFT JOIN workers w ON w.id = r.worker "
                "WHERE r.settlement IS NULL AND (r.lease_ms <= ? OR w.heartbeat_ms IS NULL "
                "OR w.heartbeat_ms < ?)",
                (now, now - HEARTBEAT_STALE_MS)).fetchall()
            for rid, worker, amount, sent in held:
                if not sent and directory is not None:
                    if worker not in in_files:
                        in_files[worker] = mark_files.read_marks(directory, worker)
                    marked = in_files[worker]
                    sent = marked is None or rid in marked  # unreadable: sent, may be
                outcome = Outcome(rid, status=0, settled="unsettled" if sent else "void")
                # a call on a vendor object leaves its object's money held
                if self._settle_exposed(c, outcome, None) is not None:
                    was = by_worker.get(worker, Reaped(worker))
                    by_worker[worker] = (
                        Reaped(worker, was.charged + 1, was.micros + amount, was.voided)
                        if sent else Reaped(worker, was.charged, was.micros, was.voided + 1))
            c.execute("DELETE FROM workers WHERE heartbeat_ms < ?", (now - HEARTBEAT_STALE_MS,))
            alive = {w for (w,) in c.execute("SELECT id FROM workers")}
        mark_files.collect(directory, listed, alive | {self.worker})
        return list(by_worker.values())
