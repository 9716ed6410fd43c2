"""The pool hands out an idle connection without a query to check it, unless it has
something to read (its server closed it or said why): then it is checked, and replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from outlay.state.postgres.pool import Pooled

from ..support import Clock


@pytest.fixture
async def pooled(postgres_dsn: str, clock: Clock) -> AsyncIterator[Pooled]:
    store = Pooled(postgres_dsn, clock=clock, min_size=1, max_size=1)
    await store.open_pool()
    yield store
    await store.close_pool()


@pytest.fixture
def queried(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each check made with a query, by the backend it was made on."""
    made: list[int] = []
    real = AsyncConnectionPool.check_connection

    async def counted(conn: psycopg.AsyncConnection) -> None:  # type: ignore[type-arg]
        made.append(conn.info.backend_pid)
        await real(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counted))
    return made


async def test_an_idle_connection_is_handed_out_without_a_query(
        queried: list[int], pooled: Pooled) -> None:
    for _ in range(3):
        assert await pooled.fetchone("SELECT 1") == (1,)
    assert queried == []


async def test_a_connection_its_server_closed_is_checked_and_replaced(
        queried: list[int], pooled: Pooled, postgres_dsn: str) -> None:
    (before,) = await pooled.fetchone("SELECT pg_backend_pid()") or (0,)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as other:
        # waits for the backend to end (5 s at most): its goodbye is then there to read
        await other.execute("SELECT pg_terminate_backend(%s, 5000)", (before,))

    (after,) = await pooled.fetchone("SELECT pg_backend_pid()") or (0,)

    assert after != before
    assert before in queried  # the closed one was checked (and failed it) first
