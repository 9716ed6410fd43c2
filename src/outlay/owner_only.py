"""Files only the user running Outlay may read: the state database (keys' hashes, the ledger,
webhook secrets) and the workers' metrics snapshots.

Each is created with its mode from the start (0600, directories 0700), not chmod-ed after,
so there is no moment when another user could open it; the process umask can only take
more away. SQLite gives the -wal and -shm files it makes the mode of the database file.
"""

from __future__ import annotations

import contextlib
import os

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def create_private(path: str) -> None:
    """Make sure `path` exists: created 0600 (missing directories 0700) when it does not;
    an existing file is left as it is, mode included. Raises OSError."""
    _make_directories(os.path.dirname(os.path.abspath(path)))
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` whole, the file created 0600 if new. Raises OSError."""
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    with open(fd, "wb") as file:
        file.write(data)


def _make_directories(directory: str) -> None:
    """Create `directory` and any missing parents, each 0700 (os.makedirs would give the
    parents the default mode)."""
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another worker
            os.mkdir(path, DIRECTORY_MODE)
