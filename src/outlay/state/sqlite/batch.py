"""Group commit for the embedded store: the decisions and settlements a worker receives in
one turn of its event loop share one transaction, each applied in order against the writes
before it, and none answered before the commit.

A transaction's fixed cost (taking SQLite's write lock, writing the WAL frame on commit) is
then paid once per batch instead of once per call, without loosening any check: every
decision still reads every counter after the previous decision's writes.

A refusal (an OutlayError) is an answer: its writes (its ledger row) are kept. One op that
fails otherwise (a value SQLite cannot take, such as a string with a lone surrogate, a
constraint, a bug) fails alone: the transaction is rolled back and the batch applied again
without it, the ops before it in one transaction and the ops after it as a batch of their
own. When the failure comes at the commit instead (the rows the ops left in the worker's
mirror are written then), the batch is halved until the op whose rows fail stands alone.
Each op is so still applied in order, against the writes of those before it, and answered
only from a transaction that committed. This costs the ordinary batch nothing: a savepoint
per op, the other way, would cost two statements per op and a copy of the mirror.

When the store itself fails (it cannot begin, is locked past its timeout, is full, read-only
or broken), every op of the batch fails with a StateError, so the gateway refuses those
calls rather than let them through unrecorded.
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
Lost = Callable[[StateError], None]
# an op, the future of its answer (None: nobody waits), whether it runs even when its caller
# is gone, and what to do when it fails while nobody waits
Queued = tuple[Op, "asyncio.Future[Any] | None", bool, Lost | None]
Answer = tuple["asyncio.Future[Any] | None", bool, Any]  # future, ok, result or refusal
MAX_BATCH = 256
# how long an op nobody waits on (a settlement after the answer went out) may wait for the
# next decision to share its transaction; at any load one comes much sooner
DEFER_S = 0.005
# what a failing store raises, whichever op was running: not one op's fault
STORE_FAILURES = (sqlite3.OperationalError, sqlite3.InternalError, MemoryError, OSError)


class GroupCommit:
    def __init__(self, tx: Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]
                 ) -> None:
        self._tx = tx
        self._queue: list[Queued] = []
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop = RunningLoop()

    async def run(self, op: Op, *, always: bool = False) -> Any:
        """Apply `op` in the next batch. An `always` op (a settlement) runs even if the caller
        is cancelled meanwhile; any other is dropped if its caller is gone before it ran."""
        loop = self._loop.get()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, future, always, None))
        if self._scheduled:  # the turn's first caller commits the batch
            return await (asyncio.shield(future) if always else future)
        # The first caller lets the turn's other callers queue their ops, then commits the
        # batch itself: its answer one loop turn sooner than from a flush scheduled apart
        # (the flush's turn, then its own wake-up), the batch the same.
        self._scheduled = True
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:  # gone: the others' ops still commit, its own if always
            if not always:
                future.cancel()
            loop.call_soon(self._flush)
            raise
        self._flush()
        if future.done():
            return future.result()
        # not in the batch just committed: behind MAX_BATCH ops submitted before it
        return await (asyncio.shield(future) if always else future)

    def submit(self, op: Op, lost: Lost) -> None:
        """Apply `op` with the next batch, at the latest DEFER_S from now, without waiting
        for it; `lost` is called with the StateError if it fails."""
        loop = self._loop.get()
        self._queue.append((op, None, True, lost))
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
        self._apply(batch)

    def _apply(self, batch: list[Queued]) -> None:
        """Commit `batch` and answer its ops; an op that fails fails alone (see above)."""
        while batch:
            try:
                answers = self._commit(batch)
            except _OpFailed as failed:
                if _store_error(failed.error):
                    _fail(batch, failed.error)
                    return
                self._apply(batch[:failed.at])
                _fail(batch[failed.at:failed.at + 1], failed.error, alone=True)
                batch = batch[failed.at + 1:]
                continue
            except _BeginFailed as began:
                _fail(batch, began.error)
                return
            except Exception as exc:  # at the commit: whose rows, is not known
                if _store_failed(exc):
                    _fail(batch, exc)
                    return
                if len(batch) == 1:
                    _fail(batch, exc, alone=True)
                    return
                half = len(batch) // 2
                self._apply(batch[:half])
                batch = batch[half:]
                continue
            for future, ok, value in answers:
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            return

    def _commit(self, batch: list[Queued]) -> list[Answer]:
        """One transaction of every op of `batch` still wanted; their answers once it
        committed. Raises _BeginFailed, _OpFailed, or what the commit raised."""
        answers: list[Answer] = []
        begun = False
        try:
            with self._tx() as c:
                begun = True
                for at, (op, future, always, _) in enumerate(batch):
                    if not always and future is not None and future.cancelled():
                        continue
                    try:
                        answers.append((future, True, op(c)))
                    except OutlayError as refusal:
                        answers.append((future, False, refusal))
                    except Exception as exc:
                        raise _OpFailed(at, exc) from exc
        except _OpFailed:
            raise
        except Exception as exc:
            if not begun:
                raise _BeginFailed(exc) from exc
            raise
        return answers


class _OpFailed(Exception):
    """Op `at` of the batch raised `error`; leaving the transaction rolls it back."""

    def __init__(self, at: int, error: Exception) -> None:
        super().__init__(at, error)
        self.at, self.error = at, error


class _BeginFailed(Exception):
    """The transaction could not even begin: the store's failure, not an op's."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _store_error(error: BaseException) -> bool:
    """SQLite's store failed (not one op's values): "file is not a database" and other
    corruption are DatabaseError itself, its subclasses are about one statement."""
    return isinstance(error, STORE_FAILURES) or type(error) is sqlite3.DatabaseError


def _store_failed(exc: BaseException) -> bool:
    """Whether a commit failed for the store rather than for the rows (the store's
    transaction raises SQLite's errors as StateError, the driver's error its cause)."""
    if isinstance(exc, StateError):
        return exc.__cause__ is None or _store_error(exc.__cause__)
    return _store_error(exc)


def _fail(batch: list[Queued], exc: BaseException, *, alone: bool = False) -> None:
    if alone:  # the others of its batch committed
        reason = exc.__cause__ if isinstance(exc, StateError) and exc.__cause__ else exc
        error = StateError(f"the state store could not record this call: {reason}")
    else:
        error = exc if isinstance(exc, StateError) else StateError(f"state store failed: {exc}")
    for _, future, _always, lost in batch:
        if lost is not None:
            lost(error)
        elif future is not None and not future.done():
            future.set_exception(error)
