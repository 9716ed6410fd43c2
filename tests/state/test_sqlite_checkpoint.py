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
from outlay.state.sqlite import SqliteStore
from outlay.state.sqlite_checkpoint import Checkpointer


def in_the_database_file(path: Path) -> set[str]:
    """The policies the database file itself holds, the WAL left out (immutable=1)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return {scope for (scope,) in conn.execute("SELECT scope FROM policies")}
    except sqlite3.OperationalError:  # the schema itself is not in the file yet
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
