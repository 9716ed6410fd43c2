"""Files only Outlay's user may read: created 0600 in directories made 0700, whatever the
umask lets through, and an existing file left as it is."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from outlay.owner_only import create_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def lax_umask() -> Iterator[None]:
    """The usual umask, which leaves files made the ordinary way readable by everyone."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_file_is_0600_and_every_directory_made_for_it_0700(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "outlay.db"
    before = mode(tmp_path)
    create_private(str(path))
    assert path.read_bytes() == b""
    assert mode(path) == 0o600
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700
    assert mode(tmp_path) == before  # there already: not Outlay's to change


def test_an_existing_file_and_directory_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    path.write_bytes(b"data")
    path.chmod(0o640)
    create_private(str(path))
    assert path.read_bytes() == b"data"
    assert mode(path) == 0o640


def test_a_relative_path_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    create_private("outlay.db")
    assert mode(tmp_path / "outlay.db") == 0o600


def test_what_cannot_be_created_raises_os_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError, match="Not a directory"):
        create_private(str(tmp_path / "file" / "outlay.db"))


def test_write_private_makes_a_0600_file_and_replaces_the_contents(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    write_private(path, b"first, and longer")
    assert mode(path) == 0o600
    write_private(path, b"second")
    assert path.read_bytes() == b"second"
