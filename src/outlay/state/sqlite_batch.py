"""Group commit for the embedded store: the decisions and settlements a worker receives in
one turn of its event loop share one transaction, each applied in order against the writes
before it, each in its own savepoint, and none answered before the commit.

A transaction's fixed cost (taking SQLite's write lock, writing the WAL frame on commit) is
then paid once per batch instead of once per call, without loosening any check: every
decision still reads every counter after the previous decision's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any

from outlay.policy.errors import OutlayError
from outlay.state.base import StateError

Op = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 256


class GroupCommit:
    def __init__(self, tx: Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]
                 ) -> None:
        self._tx = tx
        self._queue: list[tuple[Op, asyncio.Future[Any], bool]] = []
        self._scheduled = False
        # kept, not looked up per call: on Python 3.11 get_running_loop costs a getpid()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, op: Op, *, always: bool = False) -> Any:
        """Apply `op` in the next batch. An `always` op (a settlement) runs even if the caller
        is cancelled meanwhile; any other is dropped if its caller is gone before it ran."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, future, always))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        if always:
            return await asyncio.shield(future)
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        self._scheduled = bool(self._queue)
        if self._scheduled and self._loop is not None:
            self._loop.call_soon(self._flush)
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            with self._tx() as c:
                # a batch of one needs no savepoint: the transaction itself isolates it
                alone = len(batch) == 1
                for op, future, always in batch:
                    if future.cancelled() and not always:
                        continue
                    results.append((future, *self._apply(c, op, savepoint=not alone)))
        except StateError as exc:
            for _, future, _always in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, ok, value in results:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    @staticmethod
    def _apply(c: sqlite3.Connection, op: Op, *, savepoint: bool) -> tuple[bool, Any]:
        """One op in its own savepoint: a refusal keeps its writes (its ledger row); a
        failure undoes only this op's writes (without a savepoint: the whole transaction)."""
        if savepoint:
            c.execute("SAVEPOINT op")
        try:
            value = op(c)
        except OutlayError as refusal:
            if savepoint:
                c.execute("RELEASE op")
            return False, refusal
        except Exception as exc:
            if not savepoint:
                raise StateError(f"state store failed: {exc}") from exc
            c.execute("ROLLBACK TO op")
            c.execute("RELEASE op")
            error = StateError(f"state store failed: {exc}") if isinstance(
                exc, sqlite3.Error) else exc
            return False, error
        if savepoint:
            c.execute("RELEASE op")
        return True, value
