"""WAL checkpoints run on a thread of the store, not inside a request's COMMIT."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outlay.policy.model import parse_policy
from outlay.state.sqlite.checkpoint import Checkpointer
from outlay.state.sqlite.store import SqliteStore


def in_the_database_file(path: Path) -> set[str]:
    """The policies the database file itself holds, the WAL left out (immutable=1)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return {scope for (scope,) in conn.execute("SELECT scope FROM policies")}
    except sqlite3.DatabaseError:
        # the schema itself is not in the file yet, or the thread is writing the very pages
        # read (immutable=1 takes no lock): what the next look finds
        return set()
    finally:
        conn.close()


async def wait_for(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


async def test_commits_leave_checkpoints_to_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    store = SqliteStore(str(path))
    await store.open()
    try:
        # the request connection never checkpoints inside a COMMIT
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        for n in range(20):
            await store.put_policy(f"agent:a{n}", parse_policy({"rpm": 10}))
        # and the thread copies what they wrote into the database file soon after
        await wait_for(lambda: {f"agent:a{n}" for n in range(20)} <= in_the_database_file(path))
    finally:
        await store.close()


async def test_without_the_thread_the_writes_stay_in_the_wal(tmp_path: Path) -> None:
    # the check above would pass for the wrong reason if something else checkpointed
    path = tmp_path / "outlay.db"
    store = SqliteStore(str(path))
    await store.open()
    try:
        await store.put_policy("agent:early", parse_policy({"rpm": 10}))
        await wait_for(lambda: "agent:early" in in_the_database_file(path))
        assert store._checkpointer is not None
        store._checkpointer.stop()
        await store.put_policy("agent:late", parse_policy({"rpm": 10}))
        await asyncio.sleep(0.2)
        assert "agent:late" not in in_the_database_file(path)
    finally:
        await store.close()


async def test_closing_the_store_stops_the_thread(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "outlay.db"))
    await store.open()
    checkpointer = store._checkpointer
    assert checkpointer is not None
    thread = checkpointer._thread
    assert thread is not None
    assert thread.is_alive()
    await store.close()
    assert not thread.is_alive()


def test_a_file_it_cannot_open_is_logged_and_the_thread_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpointer = Checkpointer(str(tmp_path / "no" / "such" / "dir" / "outlay.db"),
                                interval_s=0.01)
    with caplog.at_level(logging.ERROR, "outlay.state"):
        checkpointer.start()
        thread = checkpointer._thread
        assert thread is not None
        thread.join(5)
    assert not thread.is_alive()
    assert "cannot open" in caplog.text
    checkpointer.stop()


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _write_without_pause(path: Path, seconds: float, checkpointer: Checkpointer | None = None,
                         *, at_least: int = 0) -> tuple[int, int]:
    """Commit one page after another, as a loaded request path does, with no gap in which
    a writer could find every frame of the log already copied (and give the checkpointer
    its turn between transactions, as the store does), for `seconds` and at least
    `at_least` commits however slow the machine is; returns the commits and the size of the
    log at the end."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, b BLOB)")
    commits = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or commits < at_least:
        conn.execute("INSERT OR REPLACE INTO t VALUES (?, zeroblob(3000))", (commits % 50,))
        commits += 1
        if checkpointer is not None:
            checkpointer.restart_if_due(conn, 5_000)
    wal = _wal_bytes(path)
    conn.close()
    return commits, wal


def test_a_log_under_steady_writes_grows_without_restarts(tmp_path: Path) -> None:
    # what the restarts are for: the thread's PASSIVE checkpoints alone never rewind it
    path = tmp_path / "outlay.db"
    _write_without_pause(path, 0.05)
    checkpointer = Checkpointer(str(path), interval_s=0.01, restart_frames=200)
    checkpointer.start()
    try:
        commits, wal = _write_without_pause(path, 1.0)
    finally:
        checkpointer.stop()
    assert checkpointer.checkpoints > 10
    assert wal > commits * 4096 // 2


def test_a_log_under_steady_writes_is_started_over(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    _write_without_pause(path, 0.05)  # the file and its table exist before the thread
    checkpointer = Checkpointer(str(path), interval_s=0.01, restart_frames=200)
    checkpointer.start()
    try:
        # enough commits to cross restart_frames many times over, on a slow machine too
        commits, wal = _write_without_pause(path, 1.0, checkpointer, at_least=1_500)
    finally:
        checkpointer.stop()
    assert wal < commits * 4096 // 4
    assert checkpointer.restarts > 0


def test_a_reader_in_the_old_log_delays_the_restart_not_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    _write_without_pause(path, 0.05)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # holds its snapshot of the log
    checkpointer = Checkpointer(str(path), interval_s=0.01, restart_frames=50)
    checkpointer.start()
    try:
        started = time.monotonic()
        commits, _ = _write_without_pause(path, 0.5, checkpointer)
        # a restart waiting on the reader gives up within 20 ms a try: the writer went on,
        # at worst one try after each commit (25 in 0.5 s; a restart that waited out the
        # reader would allow one commit in seconds)
        assert time.monotonic() - started < 2
        assert commits > 20
        assert checkpointer.restarts == 0
        reader.execute("COMMIT")
        _write_without_pause(path, 0.5, checkpointer)
    finally:
        checkpointer.stop()
        reader.close()
    assert checkpointer.restarts > 0


async def test_the_stores_log_stays_bounded_under_load(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    store = SqliteStore(str(path))
    await store.open()
    try:
        assert store._checkpointer is not None
        store._checkpointer.stop()
        store._checkpointer = Checkpointer(str(path), interval_s=0.01, restart_frames=100)
        store._checkpointer.start()
        # each write commits two pages or more: without restarts the log ends near 50 MiB
        for n in range(6_000):
            await store.put_policy(f"agent:a{n % 20}", parse_policy({"rpm": n + 1}))
        assert store._checkpointer.restarts > 0
        assert _wal_bytes(path) < 6_000 * 2 * 4096 // 2
    finally:
        await store.close()


def test_a_restart_that_fails_is_logged_and_the_connection_kept_as_it_was(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outlay.db"
    _write_without_pause(path, 0.01)
    conn = sqlite3.connect(path, isolation_level=None)
    checkpointer = Checkpointer(str(path))
    checkpointer.restart_due = True
    conn.execute("BEGIN IMMEDIATE")  # SQLite refuses a checkpoint inside a transaction
    with caplog.at_level(logging.WARNING, "outlay.state"):
        checkpointer.restart_if_due(conn, 1_234)
    assert "restarting the WAL" in caplog.text
    assert checkpointer.restarts == 0
    assert not checkpointer.restart_due  # until the thread's next checkpoint asks again
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (1_234,)
    conn.execute("COMMIT")
    conn.close()
