"""Group commit: ops of one event-loop turn share a transaction, each in its own savepoint."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator

import pytest

from outlay.policy.errors import BadRequest
from outlay.state.base import StateError
from outlay.state.sqlite_batch import GroupCommit


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (v INTEGER UNIQUE)")
    yield conn
    conn.close()


def batcher(conn: sqlite3.Connection, commits: list[int]) -> GroupCommit:
    @contextlib.contextmanager
    def tx() -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
            commits.append(1)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return GroupCommit(tx)


def insert(v: int):  # type: ignore[no-untyped-def]
    def op(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t VALUES (?)", (v,))
        return v
    return op


def values(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")]


async def test_ops_of_one_turn_share_one_commit(db: sqlite3.Connection) -> None:
    commits: list[int] = []
    group = batcher(db, commits)
    assert await asyncio.gather(*(group.run(insert(v)) for v in range(20))) == list(range(20))
    assert commits == [1]
    assert values(db) == list(range(20))


async def test_a_failing_op_undoes_only_its_own_writes(db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def twice(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (7)")
        c.execute("INSERT INTO t VALUES (1)")  # violates UNIQUE with the op before

    results = await asyncio.gather(group.run(insert(1)), group.run(twice),
                                   group.run(insert(2)), return_exceptions=True)
    assert results[0] == 1
    assert isinstance(results[1], StateError)
    assert results[2] == 2
    assert values(db) == [1, 2]  # 7 was rolled back with its op


async def test_a_refusal_keeps_its_writes(db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def refuse(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (5)")  # e.g. the refusal's ledger row
        raise BadRequest("invalid_request", "no")

    with pytest.raises(BadRequest):
        await group.run(refuse)
    assert values(db) == [5]


async def test_a_cancelled_caller_skips_its_op_but_not_a_settlement(
        db: sqlite3.Connection) -> None:
    group = batcher(db, [])
    dropped = asyncio.ensure_future(group.run(insert(1)))
    kept = asyncio.ensure_future(group.run(insert(2), always=True))
    await asyncio.sleep(0)  # both queued, the flush not yet run
    dropped.cancel()
    kept.cancel()
    await asyncio.sleep(0.01)
    assert values(db) == [2]


async def test_a_store_that_cannot_begin_fails_every_op(db: sqlite3.Connection) -> None:
    @contextlib.contextmanager
    def broken() -> Iterator[sqlite3.Connection]:
        raise StateError("state store unavailable")
        yield db  # pragma: no cover

    group = GroupCommit(broken)
    results = await asyncio.gather(group.run(insert(1)), group.run(insert(2)),
                                   return_exceptions=True)
    assert all(isinstance(r, StateError) for r in results)


async def test_a_failing_op_alone_undoes_its_writes_without_a_savepoint(
        db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def twice(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (3)")
        c.execute("INSERT INTO t VALUES (3)")

    with pytest.raises(StateError, match="UNIQUE"):
        await group.run(twice)
    assert values(db) == []
