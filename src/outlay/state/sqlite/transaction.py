"""One write transaction of the embedded store, as a plain context manager: the request
path opens two per call, and a generator-based one costs a generator, its frame and two
resumptions more each time."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from outlay.state.base import StateError
from outlay.state.sqlite.checkpoint import Checkpointer
from outlay.state.sqlite.mirror import Mirror

Step = Callable[[sqlite3.Connection], None]


class Writer(Protocol):
    """What a transaction uses of the store that opens it (SqliteStore)."""

    busy_timeout_s: float
    _checkpointer: Checkpointer | None
    _mirror: Mirror

    @property
    def conn(self) -> sqlite3.Connection: ...


class Transaction:
    """BEGIN IMMEDIATE, then `after_begin`; on a clean exit `before_commit` and COMMIT, then
    a WAL restart if one is due (between transactions, the writer's own). Any failure rolls
    back and drops the mirror (it may hold writes just rolled back); driver errors become
    StateError."""

    __slots__ = ("_after_begin", "_before_commit", "_conn", "_store")

    def __init__(self, store: Writer, before_commit: Step,
                 after_begin: Step | None = None) -> None:
        self._store, self._before_commit, self._after_begin = store, before_commit, after_begin
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        conn = self._conn = self._store.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._after_begin is not None:
                self._after_begin(conn)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise StateError(f"state store unavailable: {exc}") from exc
        return conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        conn = self._conn
        assert conn is not None
        if exc is None:
            try:
                self._before_commit(conn)
                conn.execute("COMMIT")
            except BaseException as failed:
                self._failed(conn, failed)
                raise
            checkpointer = self._store._checkpointer
            if checkpointer is not None:
                checkpointer.restart_if_due(conn, int(self._store.busy_timeout_s * 1000))
            return
        self._failed(conn, exc)

    def _failed(self, conn: sqlite3.Connection, exc: BaseException) -> None:
        """Roll back; a driver error is raised again as StateError (any other goes on)."""
        self._store._mirror.drop()
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StateError(f"state store failed: {exc}") from exc
