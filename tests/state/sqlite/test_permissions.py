"""The embedded store's files hold key hashes, the ledger and webhook secrets: a database
Outlay creates is 0600, its WAL and shared-memory files too, its directory 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from outlay.state.base import NewKey, StateError
from outlay.state.sqlite import SqliteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def lax_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what made the file world-readable before
    try:
        yield
    finally:
        os.umask(old)


async def test_a_new_database_its_wal_and_its_directory_are_the_owners_only(
    tmp_path: Path
) -> None:
    path = tmp_path / "state" / "outlay.db"
    store = SqliteStore(str(path))
    await store.open()
    try:
        await store.create_key(NewKey(agent="a"))  # something written through the WAL
        for name in ("outlay.db", "outlay.db-wal", "outlay.db-shm"):
            assert mode(path.parent / name) == 0o600, name
        assert mode(path.parent) == 0o700
    finally:
        await store.close()
    reopened = SqliteStore(str(path))
    await reopened.open()
    try:
        assert [k.agent for k in await reopened.list_keys()] == ["a"]
    finally:
        await reopened.close()


async def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    path.chmod(0o640)  # the operator's choice, e.g. for a backup group
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    assert mode(path) == 0o640


async def test_a_path_that_cannot_be_made_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    store = SqliteStore(str(tmp_path / "file" / "outlay.db"))
    with pytest.raises(StateError, match="cannot open the SQLite state"):
        await store.open()
