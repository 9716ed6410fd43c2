"""The embedded store's leases and liveness: a worker's heartbeat, the renewal of calls
still running, the mark of a call about to be sent, and the reaper, which charges in full
the reservations whose lease ran out or whose worker stopped (no heartbeat for 5 s), but
voids those whose worker never marked their call forwarded: it died before sending it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from outlay.state.base import Outcome, Reaped

if TYPE_CHECKING:
    import contextlib

    from outlay.state.sqlite.batch import GroupCommit
    from outlay.state.sqlite.mirror import Mirror

HEARTBEAT_STALE_MS = 5_000


class LeasesMixin:
    if TYPE_CHECKING:
        worker: str
        lease_ms: int
        clock: Callable[[], int]
        _batch: GroupCommit
        _mirror: Mirror

        def tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

        def _settle_exposed(self, c: sqlite3.Connection, outcome: Outcome,
                            report: None) -> int | None: ...

    async def forwarding(self, reservation_id: str) -> bool:
        marked: bool = await self._batch.run(lambda c: self._forwarding(c, reservation_id))
        return marked

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
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO workers(id, heartbeat_ms) VALUES (?, ?)",
                      (self.worker, self.clock()))

    async def reap(self) -> list[Reaped]:
        """Charge in full the reservations whose lease ran out or whose worker died; void
        those whose worker never marked their call forwarded (it died before sending it)."""
        now = self.clock()
        by_worker: dict[str, Reaped] = {}
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
                outcome = Outcome(rid, status=0, settled="unsettled" if sent else "void")
                # a call on a vendor object leaves its object's money held
                if self._settle_exposed(c, outcome, None) is not None:
                    was = by_worker.get(worker, Reaped(worker))
                    by_worker[worker] = (
                        Reaped(worker, was.charged + 1, was.micros + amount, was.voided)
                        if sent else Reaped(worker, was.charged, was.micros, was.voided + 1))
            c.execute("DELETE FROM workers WHERE heartbeat_ms < ?", (now - HEARTBEAT_STALE_MS,))
        return list(by_worker.values())
