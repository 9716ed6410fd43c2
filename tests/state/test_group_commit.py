"""Group commit: ops of one event-loop turn share a transaction; a refusal keeps its writes,
an op that fails fails alone and the rest of its batch commits, and a failing store fails
every op."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator

import pytest

from outlay.policy.errors import BadRequest
from outlay.state.base import StateError
from outlay.state.sqlite.batch import DEFER_S, MAX_BATCH, GroupCommit


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


async def test_a_failing_op_fails_alone_and_the_rest_of_its_batch_commits(
        db: sqlite3.Connection) -> None:
    commits: list[int] = []
    group = batcher(db, commits)

    def twice(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (7)")
        c.execute("INSERT INTO t VALUES (1)")  # violates UNIQUE with the op before

    results = await asyncio.gather(group.run(insert(1)), group.run(twice),
                                   group.run(insert(2)), return_exceptions=True)
    assert results[0] == 1
    assert results[2] == 2
    assert isinstance(results[1], StateError)
    assert "UNIQUE" in str(results[1])
    assert values(db) == [1, 2]  # nothing of the failed op, written before it failed
    # the failed transaction, then the op before, then the ops after it
    assert commits == [1, 1]


async def test_the_ops_are_applied_again_in_order(db: sqlite3.Connection) -> None:
    group = batcher(db, [])
    seen: list[int] = []

    def record(v: int):  # type: ignore[no-untyped-def]
        def op(c: sqlite3.Connection) -> int:
            seen.append(v)
            before = int(c.execute("SELECT COUNT(*) FROM t").fetchone()[0])
            c.execute("INSERT INTO t VALUES (?)", (v,))
            return before  # each op sees what the ones before it wrote
        return op

    def bad(c: sqlite3.Connection) -> None:
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    results = await asyncio.gather(*(group.run(record(v)) for v in range(3)), group.run(bad),
                                   *(group.run(record(v)) for v in range(3, 6)),
                                   return_exceptions=True)
    assert results[:3] == [0, 1, 2]
    assert results[4:] == [3, 4, 5]
    assert isinstance(results[3], StateError)
    assert "surrogates" in str(results[3])
    assert seen == [0, 1, 2, 0, 1, 2, 3, 4, 5]  # the ops before the bad one ran twice
    assert values(db) == list(range(6))


async def test_a_batch_failing_at_its_commit_is_split_until_the_failing_op_is_alone(
        db: sqlite3.Connection) -> None:
    commits: list[int] = []
    late: list[int] = []

    @contextlib.contextmanager
    def tx() -> Iterator[sqlite3.Connection]:
        # like the store's mirror: rows the ops leave are written before the commit
        db.execute("BEGIN IMMEDIATE")
        late.clear()
        try:
            yield db
            db.executemany("INSERT INTO t VALUES (?)", [(v,) for v in late])
            db.execute("COMMIT")
            commits.append(1)
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def later(v: object):  # type: ignore[no-untyped-def]
        def op(c: sqlite3.Connection) -> object:
            late.append(v)  # type: ignore[arg-type]
            return v
        return op

    group = GroupCommit(tx)
    ops = [later(v) for v in range(7)] + [later("\udcff")] + [later(v) for v in range(8, 16)]
    results = await asyncio.gather(*(group.run(op) for op in ops), return_exceptions=True)
    assert [r for r in results if isinstance(r, StateError)] == [results[7]]
    assert "surrogates" in str(results[7])
    assert values(db) == [v for v in range(16) if v != 7]
    # 16 failed, 8 failed: 0-3 committed; 4-7 failed: 4-5 committed; 6-7 failed: 6
    # committed, 7 failed alone; then 8-15 committed
    assert len(commits) == 4


async def test_every_op_of_a_batch_failing_alone_fails(db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def bad(c: sqlite3.Connection) -> None:
        raise ValueError("no")

    results = await asyncio.gather(*(group.run(bad) for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, StateError) for r in results)
    assert await group.run(insert(3)) == 3


async def test_a_failing_store_fails_every_op_of_the_batch(db: sqlite3.Connection) -> None:
    group = batcher(db, [])

    def full(c: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    results = await asyncio.gather(group.run(insert(1)), group.run(full),
                                   group.run(insert(2)), return_exceptions=True)
    assert all(isinstance(r, StateError) for r in results)
    assert values(db) == []  # nothing committed, nothing answered as done


async def test_a_store_failing_at_the_commit_fails_every_op(db: sqlite3.Connection) -> None:
    @contextlib.contextmanager
    def tx() -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            raise StateError("state store failed: disk I/O error")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    group = GroupCommit(tx)
    results = await asyncio.gather(group.run(insert(1)), group.run(insert(2)),
                                   return_exceptions=True)
    assert all(isinstance(r, StateError) for r in results)
    assert values(db) == []


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


async def test_the_first_caller_gone_leaves_the_others_their_batch(
        db: sqlite3.Connection) -> None:
    """The turn's first caller commits the batch after letting the others queue: cancelled
    before that, it leaves the commit to a flush of its own."""
    commits: list[int] = []
    group = batcher(db, commits)
    first = asyncio.ensure_future(group.run(insert(1)))
    others = [asyncio.ensure_future(group.run(insert(v))) for v in (2, 3)]
    await asyncio.sleep(0)  # all queued, the first caller not yet back
    first.cancel()
    assert await asyncio.gather(*others) == [2, 3]
    assert first.cancelled()
    assert values(db) == [2, 3]
    assert commits == [1]


async def test_an_op_behind_a_full_batch_is_answered_from_the_next(
        db: sqlite3.Connection) -> None:
    commits: list[int] = []
    group = batcher(db, commits)
    for v in range(MAX_BATCH + 10):
        group.submit(insert(v), pytest.fail)
    assert await group.run(insert(-1)) == -1
    assert commits == [1, 1]
    assert len(values(db)) == MAX_BATCH + 11


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
    group.submit(insert(1), pytest.fail)
    await asyncio.sleep(0)
    assert values(db) == []  # waiting for company
    assert await group.run(insert(2)) == 2
    assert values(db) == [1, 2]
    assert commits == [1]


async def test_a_submitted_op_alone_is_applied_within_the_delay(
        db: sqlite3.Connection) -> None:
    group = batcher(db, [])
    group.submit(insert(1), pytest.fail)
    await asyncio.sleep(DEFER_S * 4)
    assert values(db) == [1]


async def test_drain_applies_what_is_queued_now(db: sqlite3.Connection) -> None:
    commits: list[int] = []
    group = batcher(db, commits)
    group.submit(insert(1), pytest.fail)
    group.submit(insert(2), pytest.fail)
    group.drain()
    assert values(db) == [1, 2]
    assert commits == [1]
    group.drain()  # nothing queued: no empty transaction
    assert commits == [1]


async def test_a_failing_submitted_op_fails_alone_and_says_so(
        db: sqlite3.Connection) -> None:
    group = batcher(db, [])
    lost: list[tuple[int, StateError]] = []
    group.submit(insert(1), lambda error: lost.append((1, error)))
    group.submit(insert(1), lambda error: lost.append((2, error)))  # UNIQUE: this one alone
    await asyncio.sleep(DEFER_S * 4)
    assert values(db) == [1]
    assert [n for n, _ in lost] == [2]
    assert "UNIQUE" in str(lost[0][1])
    assert await group.run(insert(3)) == 3
