"""WAL checkpoints off the request path.

SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold: that call
then copies every page changed since the last one into the database file and waits for
the file's fsync. A worker's request connection turns it off and this thread, on a
connection of its own, runs a PASSIVE checkpoint every `interval_s` instead. PASSIVE never
waits for, nor blocks, the writers; the sqlite3 module lets go of the GIL while it works,
so the event loop goes on answering meanwhile.

A PASSIVE checkpoint copies pages but never rewinds the log: SQLite starts the WAL over
only when a writer begins while every frame is already copied, which under steady load
never happens (the request path commits again before a checkpoint ends), so the file would
grow without end and every page lookup slow down with it. Once the log holds
`restart_frames`, the thread marks a restart due and the request connection, between two
of its transactions, runs a RESTART checkpoint (`restart_if_due`): the bulk of the copying
is done by then, what is left is the frames written since the thread's checkpoint and a
sync, and the next commit writes from the start of the file. It is the writer's job, not
the thread's, because a thread asking for the write lock of a busy writer only gets it by
chance. It waits at most `RESTART_BUSY_MS` for other workers and for readers still in the
old log; if they hold on longer, the next checkpoint marks it due again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("outlay.state")

# each checkpoint copies the latest version of every page changed since the one before and
# syncs the file twice: a longer interval copies hot pages (counters, the ledger's last
# leaves) fewer times, at the price of a longer log between checkpoints. The thread shares
# the worker's core: every second rather than every 250 ms, a loaded worker served 2 to 4 %
# more calls (4 of 4 rounds side by side, run 20261206-202120), and the log holds about a
# second of commits between checkpoints (a few MiB at a few thousand calls a second)
INTERVAL_S = 1.0
RESTART_FRAMES = 16_384  # pages in the log (64 MiB) before it is started over: the restart
# syncs the database file on the request path, so not more than about once a second
RESTART_BUSY_MS = 20


class Checkpointer:
    def __init__(self, path: str, *, interval_s: float = INTERVAL_S,
                 restart_frames: int = RESTART_FRAMES) -> None:
        self.path, self.interval_s, self.restart_frames = path, interval_s, restart_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restart_due = False
        self.checkpoints = 0  # completed, for tests and curiosity
        self.restarts = 0

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

    def restart_if_due(self, conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
        """On the writer's connection, outside any transaction: start the log over if the
        thread asked for it. `busy_timeout_ms` is the connection's own, put back after."""
        if not self.restart_due:
            return
        self.restart_due = False
        conn.execute(f"PRAGMA busy_timeout={RESTART_BUSY_MS}")
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if not busy:
                self.restarts += 1
        except sqlite3.Error as exc:  # the next checkpoint asks again
            log.warning("restarting the WAL of %s failed: %s", self.path, exc)
        finally:
            conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error:
            log.exception("cannot open %s for WAL checkpoints", self.path)
            return
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    self.restart_due = frames >= self.restart_frames
                except sqlite3.Error as exc:  # the next interval tries again
                    log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()
