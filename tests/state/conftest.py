"""The state backends, from one table: every test here runs against each of them.

A backend entry makes store instances that share one installation's state, as the gateway's
worker processes (or replicas) do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import psycopg
import pytest
import redis

from outlay.state.base import StateStore
from outlay.state.open import store_from_url
from outlay.state.redis.store import RedisStore
from outlay.state.sqlite.store import SqliteStore

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


@dataclass
class RedisPostgresBackend:
    """Redis (a tenant of its own on the session's server) beside a fresh PostgreSQL
    database; options make rebuilds wait no grace, as no other process shares the state,
    and count no gap between heartbeats as the store pausing."""

    redis_url: str
    database: str
    name: str = "redis+postgres"

    @property
    def url(self) -> str:
        return f"{self.redis_url}&database={quote(self.database, safe='')}"

    def make(self, clock: Clock | None = None, **options: Any) -> StateStore:
        if clock is not None:
            options["clock"] = clock
        options.setdefault("rebuild_grace_s", 0.0)
        # a clock moved by hand jumps between two heartbeats: not the store pausing
        options.setdefault("pause_after_s", 86_400.0)
        store = store_from_url(self.url, **options)
        assert isinstance(store, RedisStore)
        return store

    def stored_bytes(self) -> bytes:
        dumped = [dump_redis(self.redis_url)]
        with psycopg.connect(self.database) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 (catalog names)
                    dumped.append(repr(row).encode())
        return b"\n".join(dumped)


def dump_redis(url: str) -> bytes:
    """Every key and its serialized value, from every node of a cluster."""
    base = url.partition("?")[0]
    client = (redis.RedisCluster.from_url(base) if "cluster=true" in url
              else redis.Redis.from_url(base))
    try:
        out = []
        for key in client.scan_iter("*"):
            out.append(key + b" " + repr(client.dump(key)).encode())
        return b"\n".join(out)
    finally:
        client.close()


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": lambda request, tmp_path: SqliteBackend(tmp_path),
    "redis+postgres": lambda request, tmp_path: RedisPostgresBackend(
        request.getfixturevalue("redis_url"), request.getfixturevalue("postgres_dsn")),
    "redis-cluster+postgres": lambda request, tmp_path: RedisPostgresBackend(
        request.getfixturevalue("redis_cluster_url"), request.getfixturevalue("postgres_dsn"),
        "redis-cluster+postgres"),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


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
