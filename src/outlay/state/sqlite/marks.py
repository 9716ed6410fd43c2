"""A worker's forwarded marks in files of its own, beside the database.

A worker marks each reservation forwarded just before it sends the call, so that the reaper
charges the call in full if the worker dies (it may have been served) and voids it if the
worker died before (it never left). In the database, the mark is a transaction of its own
whenever the call is alone in its turn (one connection): BEGIN, an insert, COMMIT, a WAL
frame, on the path of every such call. Here it is one append of the reservation's id to
the worker's file, `<database>-forwarded/<worker>.<0|1>`, which the reaper reads for the
reservations of a worker it reaps. What makes that as good as the database's mark:

- the reaper reaps a worker's reservation only when the worker has not beaten its heart
  for HEARTBEAT_STALE_MS or the reservation's lease ran out; a worker appends a mark only
  while its last heartbeat is at most half that old and the reservation at most half its
  lease (leases.py), checked again after the append: so a reaper that judged the
  reservation read the worker's files after the mark was written, or the mark was never
  written and the call never sent (the database's mark, with its check that the
  reservation is still held, is taken instead);
- a file grows to ROTATE_BYTES, then the worker writes to its other file, from empty, and
  marks in the database every reservation it sent and has not settled: once that commits,
  the first file is no longer needed, and it is emptied the next time the worker switches
  back;
- a worker whose row the reaper removed (it stopped beating for 5 s and came back) writes
  no more marks here, as the reaper may remove its files; a worker closing marks its calls
  still running in the database, then removes its files; the reaper removes the files of
  workers whose row is gone.

Appends are not synced to disk, as the database's commits are not (synchronous=NORMAL): a
worker killed keeps its marks, the machine losing power may lose both.
"""

from __future__ import annotations

import contextlib
import logging
import os

from outlay.owner_only import create_private

log = logging.getLogger("outlay.state")

ROTATE_BYTES = 1 << 16  # a file's size before the worker turns to its other one
SUFFIX = "-forwarded"


def marks_dir(db_path: str) -> str | None:
    """The folder of the workers' mark files; None for an in-memory database."""
    return None if db_path == ":memory:" else db_path + SUFFIX


def markable(reservation_id: str) -> bool:
    """An id a mark file can hold as one line."""
    return reservation_id.isascii() and reservation_id.isprintable() and bool(reservation_id)


def read_marks(directory: str, worker: str) -> set[str] | None:
    """The ids a worker's files mark forwarded (a line not ended is one being written: not
    a mark yet); None when a file exists but cannot be read (then every call counts as
    sent)."""
    marked: set[str] = set()
    for generation in (0, 1):
        try:
            with open(os.path.join(directory, f"{worker}.{generation}"), "rb") as file:
                lines = file.read().split(b"\n")
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot read the forwarded marks of worker %s: %s", worker, exc)
            return None
        marked.update(line.decode("ascii", "replace") for line in lines[:-1])
    return marked


def list_files(directory: str | None) -> list[str]:
    """The mark files there are now (to collect the dead workers' after reading who is
    alive: a worker's row is written before its first file)."""
    if directory is None:
        return []
    try:
        return os.listdir(directory)
    except OSError:
        return []


def collect(directory: str | None, listed: list[str], alive: set[str]) -> None:
    """Remove the files of `listed` whose worker is not `alive`."""
    if directory is None:
        return
    for name in listed:
        worker, _, generation = name.rpartition(".")
        if worker and generation in ("0", "1") and worker not in alive:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


class MarkFiles:
    """One worker's two mark files: appends to the current one, turns to the other."""

    def __init__(self, directory: str, worker: str, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.directory, self.worker, self.rotate_bytes = directory, worker, rotate_bytes
        self.disabled = False
        self._fd: int | None = None
        self._generation = 0
        self._size = 0

    def path(self, generation: int) -> str:
        return os.path.join(self.directory, f"{self.worker}.{generation}")

    def append(self, reservation_id: str) -> bool:
        """Mark one reservation; False when the mark could not be written whole (the caller
        marks it in the database instead; a file that failed is not written again)."""
        if self.disabled or not markable(reservation_id):
            return False
        record = reservation_id.encode("ascii") + b"\n"
        try:
            if self._fd is None:
                self._fd = self._open(self._generation, truncate=False)
            written = os.write(self._fd, record)
        except OSError as exc:
            self.disable(f"cannot write a forwarded mark: {exc}")
            return False
        self._size += written
        if written != len(record):
            self.disable("a forwarded mark was written in part")
            return False
        return True

    def full(self) -> bool:
        return self._size >= self.rotate_bytes

    def switch(self) -> None:
        """Write to the other file from now on, emptied first: the caller knows each of its
        marks is in the database by now."""
        self._close_fd()
        self._generation = 1 - self._generation
        try:
            self._fd = self._open(self._generation, truncate=True)
        except OSError as exc:
            self.disable(f"cannot open a forwarded marks file: {exc}")
        self._size = 0

    def disable(self, why: str | None = None) -> None:
        """Mark in the database from now on."""
        if why is not None and not self.disabled:
            log.warning("forwarded marks go to the database from now on: %s", why)
        self.disabled = True
        self._close_fd()

    def remove(self) -> None:
        """Close and remove both files (every mark they held is in the database)."""
        self.disable()
        for generation in (0, 1):
            with contextlib.suppress(OSError):
                os.unlink(self.path(generation))

    def _open(self, generation: int, *, truncate: bool) -> int:
        path = self.path(generation)
        create_private(path)  # 0600 from the start, in a 0700 folder
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
        return os.open(path, flags)

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
