"""Backends are chosen by URL; a closed store fails closed with StateError."""

from __future__ import annotations

from pathlib import Path

import pytest

from outlay.state.base import StateError
from outlay.state.open import store_from_url
from outlay.state.sqlite.store import SqliteStore


def test_sqlite_urls(tmp_path: Path) -> None:
    absolute = store_from_url(f"sqlite:///{tmp_path}/outlay.db", lease_s=5)
    assert isinstance(absolute, SqliteStore)
    assert absolute.path == f"{tmp_path}/outlay.db"
    assert absolute.lease_ms == 5_000
    relative = store_from_url("sqlite:///outlay.db")
    assert isinstance(relative, SqliteStore)
    assert relative.path == "outlay.db"
    memory = store_from_url("sqlite:///:memory:")
    assert isinstance(memory, SqliteStore)
    assert memory.path == ":memory:"


@pytest.mark.parametrize(("url", "message"), [
    ("outlay.db", "needs a scheme"),
    ("mysql://localhost/outlay", "unsupported state backend 'mysql'"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store_from_url(url)


async def test_a_store_that_is_not_open_fails_closed(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "outlay.db"))
    with pytest.raises(StateError):
        await store.list_keys()


async def test_an_unopenable_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    store = SqliteStore(str(tmp_path / "a-file" / "outlay.db"))
    with pytest.raises(StateError, match="cannot open"):
        await store.open()
