"""WAL frames a call of the embedded store, and whose pages they are: what a commit writes.

    .venv/bin/python bench/wal_frames.py                   # batches of 32 calls
    .venv/bin/python bench/wal_frames.py --batch 1 --calls 1000

Every frame of SQLite's write-ahead log is one page written (two `pwrite`s and a checksum),
so frames a call is what the store's commits cost the disk and the kernel, a figure the
machine's load does not move. This runs bench/lock_hold.py's workload (each call reserved,
marked forwarded, then settled with the next batch) on a file with the checkpoint thread
stopped, so the log keeps every frame, and settled rows moved to the ledger by count only
(not also by time, which a slow run would reach sooner); then it replays the log commit by
commit onto a copy of the file and names each frame's page by the b-tree that owns it after
that commit (a page freed by it: `free(<its owner before>)`, a freelist page: `free(None)`;
page 1 is `sqlite_schema`'s, rewritten when the file's size or freelist changes). The first
fifth of the commits warm up and are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent / "src"), str(BENCH_DIR)]

import lock_hold  # noqa: E402 (after the path is set)

from outlay.state.sqlite import mirror  # noqa: E402
from outlay.state.sqlite import store as sqlite_store  # noqa: E402


def run(path: str, batch: int, calls: int) -> None:
    """lock_hold's workload with every frame kept in the log, a copy of both files taken
    just before the store closes (closing moves the rows left and checkpoints)."""
    opened, closed = sqlite_store.SqliteStore.open, sqlite_store.SqliteStore.close

    async def open_keeping_frames(self: Any) -> None:
        await opened(self)
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the log: this run's only

    async def close_after_copy(self: Any) -> None:
        self._batch.drain()
        shutil.copy(path + "-wal", path + ".wal-copy")
        shutil.copy(path, path + ".copy")
        await closed(self)

    mirror.MOVE_S = float("inf")  # type: ignore[attr-defined]
    sqlite_store.SqliteStore.open = open_keeping_frames  # type: ignore[method-assign]
    sqlite_store.SqliteStore.close = close_after_copy  # type: ignore[method-assign]
    asyncio.run(lock_hold.calls(path, batch, max(10, calls // batch)))


def commits(path: str) -> list[tuple[list[int], bytes]]:
    """Each commit of the log: the pages it wrote, and the file's image after it."""
    wal = Path(path + ".wal-copy").read_bytes()
    page_size = struct.unpack(">I", wal[8:12])[0]
    salt = wal[16:24]
    image = bytearray(Path(path + ".copy").read_bytes())
    done: list[tuple[list[int], bytes]] = []
    pages: list[int] = []
    at = 32
    while at + 24 + page_size <= len(wal) and wal[at + 8:at + 16] == salt:
        page, size_after = struct.unpack(">II", wal[at:at + 8])
        if len(image) < page * page_size:
            image.extend(bytes(page * page_size - len(image)))
        image[(page - 1) * page_size:page * page_size] = wal[at + 24:at + 24 + page_size]
        pages.append(page)
        if size_after:  # a commit's last frame
            del image[size_after * page_size:]
            done.append((pages, bytes(image)))
            pages = []
        at += 24 + page_size
    return done


def owners(image: bytes) -> dict[int, str]:
    """Page -> the b-tree it belongs to, in a file's image (dbstat)."""
    legacy = bytearray(image)
    legacy[18] = legacy[19] = 1  # a rollback-journal header: deserialize opens no WAL
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(bytes(legacy))
        return {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="calls a batch (default 32)")
    parser.add_argument("--calls", type=int, default=6000, help="calls in all (default 6000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outlay-wal-frames-") as tmp:
        path = f"{tmp}/outlay.db"
        run(path, args.batch, args.calls)
        log = commits(path)
    calls = max(10, args.calls // args.batch) * args.batch
    warm = len(log) // 5
    before = owners(log[warm - 1][1])
    written: collections.Counter[str] = collections.Counter()
    frames = 0
    for pages, image in log[warm:]:
        after = owners(image)
        for page in pages:
            written[after.get(page) or f"free({before.get(page)})"] += 1
        frames += len(pages)
        before = after
    counted = len(log) - warm
    print(f"{frames / (calls * counted / len(log)):.3f} WAL frames a call, "
          f"{frames / counted:.2f} a commit ({counted} commits counted)")
    for owner, n in written.most_common():
        print(f"{n / counted:6.2f} a commit  {owner}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
