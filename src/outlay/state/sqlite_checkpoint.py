"""WAL checkpoints off the request path.

SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold: that call
then copies every page changed since the last one into the database file and waits for
the file's fsync. A worker's request connection turns it off and this thread, on a
connection of its own, runs a PASSIVE checkpoint every `interval_s` instead. PASSIVE never
waits for, nor blocks, the writers; the sqlite3 module lets go of the GIL while it works,
so the event loop goes on answering meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("outlay.state")

INTERVAL_S = 0.05  # a few MiB of WAL between checkpoints at a few thousand calls a second


class Checkpointer:
    def __init__(self, path: str, *, interval_s: float = INTERVAL_S,
                 busy_timeout_s: float = 30.0) -> None:
        self.path, self.interval_s, self.busy_timeout_s = path, interval_s, busy_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # completed, for tests and curiosity

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outlay-wal-checkpoint",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error:
            log.exception("cannot open %s for WAL checkpoints", self.path)
            return
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # the next interval tries again
                    log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()
