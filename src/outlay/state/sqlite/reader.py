"""Reads of the embedded store that may take long (a report over the whole ledger, a scope's
spend this month), made on a connection of their own in a worker thread: the event loop
goes on deciding calls meanwhile, as sqlite3 lets go of the GIL while a statement runs.

The request path never waits for these reads, and they never write: in WAL mode a reader
sees the last committed state and blocks no writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from outlay.state.base import StateError

T = TypeVar("T")


class Reader:
    def __init__(self, path: str, busy_timeout_s: float) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one read at a time on the one connection

    async def run(self, read: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, read)

    def _run(self, read: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(
                        self._path, timeout=self._busy_timeout_s, isolation_level=None,
                        check_same_thread=False)
                    self._conn.execute("PRAGMA query_only=ON")
                return read(self._conn)
            except sqlite3.Error as exc:
                raise StateError(f"state store failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection, after the read in progress if any."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
