"""Group commit: ops of one event-loop turn share a transaction; a refusal keeps its writes,
any other failure fails the whole batch."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator

import pytest

from outlay.policy.errors import BadRequest
from outlay.state.base import StateError
from outlay.state.sqlite.batch import DEFER_S, GroupCommit


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


async def test_a_failing_op_fails_the_whole_batch_and_undoes_every_write(
        db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def twice(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (7)")
        c.execute("INSERT INTO t VALUES (1)")  # violates UNIQUE with the op before

    results = await asyncio.gather(group.run(insert(1)), group.run(twice),
                                   group.run(insert(2)), return_exceptions=True)
    assert all(isinstance(r, StateError) for r in results)
    assert "UNIQUE" in str(results[1])
    assert values(db) == []  # nothing of the batch was committed, nothing answered as done
    # the next batch starts clean
    assert await group.run(insert(3)) == 3
    assert values(db) == [3]


async def test_an_unexpected_error_becomes_a_state_error(db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def buggy(c: sqlite3.Connection) -> None:
        raise KeyError("oops")

    with pytest.raises(StateError, match="oops"):
        await group.run(buggy)


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


async def test_a_failing_op_alone_undoes_its_writes(db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def twice(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (3)")
        c.execute("INSERT INTO t VALUES (3)")

    with pytest.raises(StateError, match="UNIQUE"):
        await group.run(twice)
    assert values(db) == []


async def test_a_submitted_op_shares_the_next_batch(db: sqlite3.Connection) -> None:
    commits: list[int] = []
    group = batcher(db, commits)
    group.submit(insert(1))
    await asyncio.sleep(0)
    assert values(db) == []  # waiting for company
    assert await group.run(insert(2)) == 2
    assert values(db) == [1, 2]
    assert commits == [1]


async def test_a_submitted_op_alone_is_applied_within_the_delay(
        db: sqlite3.Connection) -> None:
    group = batcher(db, [])
    group.submit(insert(1))
    await asyncio.sleep(DEFER_S * 4)
    assert values(db) == [1]


async def test_drain_applies_what_is_queued_now(db: sqlite3.Connection) -> None:
    commits: list[int] = []
    group = batcher(db, commits)
    group.submit(insert(1))
    group.submit(insert(2))
    group.drain()
    assert values(db) == [1, 2]
    assert commits == [1]
    group.drain()  # nothing queued: no empty transaction
    assert commits == [1]


async def test_a_failing_submitted_batch_is_rolled_back_and_the_next_starts_clean(
        db: sqlite3.Connection) -> None:
    group = batcher(db, [])
    group.submit(insert(1))
    group.submit(insert(1))  # UNIQUE: the batch is rolled back, nobody waits for it
    await asyncio.sleep(DEFER_S * 4)
    assert values(db) == []
    assert await group.run(insert(3)) == 3
