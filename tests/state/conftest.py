"""The state backends, from one table: every test here runs against each of them.

A backend entry makes store instances that share one installation's state, as the gateway's
worker processes (or replicas) do. Redis and PostgreSQL join by adding a row to BACKENDS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from outlay.state.base import StateStore, store_from_url
from outlay.state.sqlite import SqliteStore

from .support import Clock


class Backend(Protocol):
    name: str

    @property
    def url(self) -> str:
        """What `store_from_url` (and so another process) opens to share this state."""
        ...

    def make(self, clock: Clock | None = None, **options: Any) -> StateStore:
        """A new, unopened store instance on the shared state (a 'worker')."""
        ...

    def stored_bytes(self) -> bytes:
        """Everything the backend has persisted, raw, to look for secrets in."""
        ...


@dataclass
class SqliteBackend:
    directory: Path
    name: str = "sqlite"

    @property
    def path(self) -> Path:
        return self.directory / "outlay.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def make(self, clock: Clock | None = None, **options: Any) -> StateStore:
        if clock is not None:
            options["clock"] = clock
        store = store_from_url(self.url, **options)
        assert isinstance(store, SqliteStore)
        return store

    def stored_bytes(self) -> bytes:
        # the database, its write-ahead log and shared-memory index
        return b"".join(p.read_bytes() for p in sorted(self.directory.glob("outlay.db*")))


BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "sqlite": SqliteBackend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


OpenStore = Callable[..., Awaitable[StateStore]]


@pytest.fixture
async def open_store(backend: Backend) -> AsyncIterator[OpenStore]:
    """Open another store instance on the shared state; closed after the test."""
    opened: list[StateStore] = []

    async def open_(clock: Clock | None = None, **options: Any) -> StateStore:
        store = backend.make(clock, **options)
        await store.open()
        opened.append(store)
        return store

    yield open_
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore, clock: Clock) -> StateStore:
    """The store under test, on a fresh installation, reading time from `clock`."""
    return await open_store(clock)
