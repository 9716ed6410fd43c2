"""The embedded store's vendor objects counted by exposure (state.exposure): a record per
object, and a link from each call in flight to its object, written inside the same batch
transaction as the call's decision and its settlement, so both are one atomic step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from outlay.state.base import Outcome, Reservation, StateError, Ticket, charged
from outlay.state.exposure import (
    Credit,
    ExposureClaim,
    ExposureReport,
    ObjectMoved,
    ObjectRecord,
    Record,
    forgotten,
    reserved,
    settled,
)

if TYPE_CHECKING:
    from outlay.state.sqlite.batch import GroupCommit
    from outlay.state.sqlite.mirror import Mirror

EXPOSURE_SCHEMA = """
CREATE TABLE IF NOT EXISTS vendor_objects (
  vendor TEXT NOT NULL, object_id TEXT NOT NULL, version INTEGER NOT NULL,
  held INTEGER NOT NULL, inflight INTEGER NOT NULL, seen INTEGER, state TEXT,
  charges TEXT NOT NULL,             -- JSON: [request id, amount, holds, who]…
  PRIMARY KEY (vendor, object_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vendor_object_calls (
  request_id TEXT PRIMARY KEY, vendor TEXT NOT NULL,
  object_id TEXT,                    -- NULL: a create, whose object its answer names
  who TEXT NOT NULL                  -- JSON: key id, agent, group, labels, vendor, ms
) WITHOUT ROWID;
"""
# a give-back: its own ledger row, of the charge's scopes and time (so it counts in the
# period the charge did), with a negative cost
_CREDIT_ROW = (
    "INSERT INTO ledger(seq, request_id, ts_ms, key_id, agent, grp, labels, vendor, model, "
    "route, decision, code, scope, status, reserved, cost, settlement, spent, cap) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, 'credit', NULL, NULL, NULL, 0, ?, 'settled', "
    "NULL, NULL)")
_MOVED = object()


class ExposureMixin:
    if TYPE_CHECKING:
        _batch: GroupCommit
        _mirror: Mirror
        clock: Callable[[], int]

        @property
        def conn(self) -> sqlite3.Connection: ...

        def _reserve(self, c: sqlite3.Connection, ticket: Ticket) -> Reservation: ...

        def _settle(self, c: sqlite3.Connection, outcome: Outcome) -> bool: ...

        def _made(self, reservation_id: str, started_ms: int) -> None: ...

    async def vendor_object(self, vendor: str, object_id: str) -> ObjectRecord | None:
        try:
            record = _read(self.conn, vendor, object_id)
        except sqlite3.Error as exc:
            raise StateError(f"state store failed: {exc}") from exc
        if record is None:
            return None
        return ObjectRecord(record.version, record.held, record.inflight, record.state)

    async def reserve_exposure(self, ticket: Ticket, claim: ExposureClaim) -> Reservation:
        result = await self._batch.run(lambda c: self._reserve_exposed(c, ticket, claim))
        if result is _MOVED:
            raise ObjectMoved(claim.object_id)
        assert isinstance(result, Reservation)
        self._made(result.id, result.started_ms)  # its mark may go to the worker's file
        return result

    def _reserve_exposed(self, c: sqlite3.Connection, ticket: Ticket,
                         claim: ExposureClaim) -> Reservation | object:
        record = None
        if claim.object_id is not None:
            record = _read(c, claim.vendor, claim.object_id)
            if (0 if record is None else record.version) != claim.version:
                return _MOVED  # nothing written: the caller prices the call again
        reservation = self._reserve(c, ticket)  # a refusal raises, its row kept
        key = reservation.key
        who = [key.id, key.agent, key.group, orjson.dumps(dict(key.labels)).decode(),
               ticket.call.vendor, reservation.started_ms]
        c.execute("INSERT INTO vendor_object_calls(request_id, vendor, object_id, who) "
                  "VALUES (?, ?, ?, ?)", (ticket.request_id, claim.vendor, claim.object_id,
                                          orjson.dumps(who).decode()))
        if claim.object_id is not None:
            record = record or Record(state=claim.state)
            reserved(record, reservation.amount)
            _write(c, claim.vendor, claim.object_id, record)
        return reservation

    async def settle_exposure(self, outcome: Outcome, report: ExposureReport | None
                              ) -> int | None:
        given: int | None = await self._batch.run(
            lambda c: self._settle_exposed(c, outcome, report), always=True)
        return given

    def _settle_exposed(self, c: sqlite3.Connection, outcome: Outcome,
                        report: ExposureReport | None) -> int | None:
        """Settle the call, then count what its answer shows on its object (the reaper's
        settlements come here too, with no report: the object's money then stays held)."""
        held = self._mirror.held_of(c, outcome.reservation_id)
        if held is None or not self._settle(c, outcome):
            return None
        link = c.execute("SELECT vendor, object_id, who FROM vendor_object_calls "
                         "WHERE request_id=?", (outcome.reservation_id,)).fetchone()
        if link is None:
            return 0
        c.execute("DELETE FROM vendor_object_calls WHERE request_id=?",
                  (outcome.reservation_id,))
        vendor, object_id, who = link
        linked = object_id is not None
        if not linked:
            object_id = None if report is None else report.object_id
            if object_id is None:
                return 0  # the create's answer named no object: its charge stands
        record = _read(c, vendor, object_id) or Record()
        cost = charged(outcome.settled, outcome.cost_micros, held.amount)
        credits = settled(
            record, linked=linked, request_id=outcome.reservation_id,
            settlement=outcome.settled, reserved_amount=held.amount, cost=cost,
            holds=[h[:3] for h in held.holds], who=orjson.loads(who), report=report)
        if forgotten(record):
            c.execute("DELETE FROM vendor_objects WHERE vendor=? AND object_id=?",
                      (vendor, object_id))
        else:
            _write(c, vendor, object_id, record)
        return self._give_back(c, outcome.reservation_id, credits)

    def _give_back(self, c: sqlite3.Connection, request_id: str,
                   credits: list[Credit]) -> int:
        mirror = self._mirror
        for n, credit in enumerate(credits, 1):
            for scope, period, start in credit.holds:
                mirror.add_counter(c, (scope, period, start), -credit.amount, 0)
            key_id, agent, group, labels, vendor, ts_ms = credit.who
            c.execute(_CREDIT_ROW, (mirror.next_seq(c), f"{request_id}.{n}", ts_ms, key_id,
                                    agent, group, labels, vendor, f"vendor.{vendor}",
                                    -credit.amount))
        return sum(credit.amount for credit in credits)


def _read(c: sqlite3.Connection, vendor: str, object_id: str) -> Record | None:
    row = c.execute("SELECT version, held, inflight, seen, state, charges FROM vendor_objects "
                    "WHERE vendor=? AND object_id=?", (vendor, object_id)).fetchone()
    if row is None:
        return None
    version, held, inflight, seen, state, charges = row
    return Record(version, held, inflight, seen, state, orjson.loads(charges))


def _write(c: sqlite3.Connection, vendor: str, object_id: str, record: Record) -> None:
    values: tuple[Any, ...] = (
        vendor, object_id, record.version, record.held, record.inflight, record.seen,
        record.state, orjson.dumps(record.charges).decode())
    c.execute("INSERT INTO vendor_objects(vendor, object_id, version, held, inflight, seen, "
              "state, charges) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(vendor, object_id) "
              "DO UPDATE SET version=excluded.version, held=excluded.held, "
              "inflight=excluded.inflight, seen=excluded.seen, state=excluded.state, "
              "charges=excluded.charges", values)
