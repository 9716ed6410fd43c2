"""Group commit for the embedded store: the decisions and settlements a worker receives in
one turn of its event loop share one transaction, each applied in order against the writes
before it, and none answered before the commit.

A transaction's fixed cost (taking SQLite's write lock, writing the WAL frame on commit) is
then paid once per batch instead of once per call, without loosening any check: every
decision still reads every counter after the previous decision's writes.

A refusal (an OutlayError) is an answer: its writes (its ledger row) are kept. Any other
failure means the store cannot be trusted for this batch (a full disk, a broken file, a
bug): the whole transaction is rolled back and every op of the batch fails with a
StateError, so the gateway refuses those calls rather than let them through unrecorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any

from outlay.loops import RunningLoop
from outlay.policy.errors import OutlayError
from outlay.state.base import StateError

Op = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 256
# how long an op nobody waits on (a settlement after the answer went out) may wait for the
# next decision to share its transaction; at any load one comes much sooner
DEFER_S = 0.005


class GroupCommit:
    def __init__(self, tx: Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]
                 ) -> None:
        self._tx = tx
        self._queue: list[tuple[Op, asyncio.Future[Any] | None, bool]] = []
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop = RunningLoop()

    async def run(self, op: Op, *, always: bool = False) -> Any:
        """Apply `op` in the next batch. An `always` op (a settlement) runs even if the caller
        is cancelled meanwhile; any other is dropped if its caller is gone before it ran."""
        loop = self._loop.get()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, future, always))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        if always:
            return await asyncio.shield(future)
        return await future

    def submit(self, op: Op) -> None:
        """Apply `op` with the next batch, at the latest DEFER_S from now, without waiting
        for it. If its batch fails, it is lost like a settlement that met a failing store:
        the reservation stays held and the reaper charges it in full."""
        loop = self._loop.get()
        self._queue.append((op, None, True))
        if not self._scheduled and self._timer is None:
            self._timer = loop.call_later(DEFER_S, self._flush)

    def drain(self) -> None:
        """Apply everything queued now (before a read that must see it, or closing)."""
        while self._queue:
            self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue:
            self._scheduled = False
            return
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        self._scheduled = bool(self._queue)
        if self._scheduled and self._loop.loop is not None:
            self._loop.loop.call_soon(self._flush)
        results: list[tuple[asyncio.Future[Any] | None, bool, Any]] = []
        try:
            with self._tx() as c:
                for op, future, always in batch:
                    if future is not None and future.cancelled() and not always:
                        continue
                    try:
                        results.append((future, True, op(c)))
                    except OutlayError as refusal:
                        results.append((future, False, refusal))
        except Exception as exc:
            error = exc if isinstance(exc, StateError) else StateError(
                f"state store failed: {exc}")
            for _, future, _always in batch:
                if future is not None and not future.done():
                    future.set_exception(error)
            return
        for future, ok, value in results:
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
