"""The embedded store's loop-guard rows: a key whose calls are guarded has its next body
hashed before the transaction (the same fingerprint as inside it), rows past their window
are pruned as new ones are written, and the worker's mirror of them counts every call of a
batch and forgets the rows pruned."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from outlay.policy.approvals import request_shape
from outlay.policy.errors import RateLimited
from outlay.policy.loop_guard import body_digest, fingerprint
from outlay.policy.model import parse_policy
from outlay.policy.windows import WindowState, decode
from outlay.state.base import NewKey, Ticket
from outlay.state.sqlite import mirror as mirror_module
from outlay.state.sqlite.mirror import Mirror
from outlay.state.sqlite.repeats import PRUNE_EVERY, PRUNED_PER_PRUNE
from outlay.state.sqlite.schema import apply
from outlay.state.sqlite.store import SqliteStore

from ..support import Clock, ticket


def same(secret: str, body: bytes = b'{"model": "m"}') -> Ticket:
    t = ticket(secret)
    return replace(t, shape=request_shape("POST", t.route, body))


def test_a_digest_made_ahead_is_the_fingerprint_made_inside() -> None:
    body = b'{"b": 1, "a": [2, 3]}'
    assert fingerprint("k", "POST", "r /p", body, body_digest(body)) == fingerprint(
        "k", "POST", "r /p", body)


async def test_guarded_keys_are_hashed_ahead_and_counted_alike(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(str(tmp_path / "o.db"), clock=clock)
    await store.open()
    try:
        await store.put_policy("agent:bot", parse_policy(
            {"loop_guard": {"max_repeats": 2, "window_s": 60}}))
        _, guarded = await store.create_key(NewKey(agent="bot"))
        _, free = await store.create_key(NewKey(agent="other"))
        assert store._guarded.digest(same(guarded)) is None  # not known yet: hashed inside
        await store.reserve(same(guarded))
        await store.reserve(same(free))
        assert store._guarded.digest(same(guarded)) == body_digest(b'{"model": "m"}')
        assert store._guarded.digest(same(free)) is None  # no guard: never hashed
        await store.reserve(same(guarded, b'{ "model":"m" }'))  # hashed ahead, same request
        with pytest.raises(RateLimited):
            await store.reserve(same(guarded))

        clock.advance(61)  # every row so far is past its window
        rows = store.conn.execute("SELECT COUNT(*) FROM repeats").fetchone()[0]
        assert rows == 1
        # the writes so far were 2 of PRUNE_EVERY: the next prune comes with the write after
        # PRUNE_EVERY - 2 more, and takes the expired row
        for n in range(PRUNE_EVERY - 2):
            await store.reserve(same(guarded, b'{"n": %d}' % n))
        count = "SELECT COUNT(*) FROM repeats"
        assert store.conn.execute(count).fetchone()[0] == PRUNE_EVERY - 1
        await store.reserve(same(guarded, b'{"n": "pruning"}'))
        assert store.conn.execute(count).fetchone()[0] == PRUNE_EVERY - 1  # 1 gone, 1 new
        clock.advance(61)  # every row expired: the next prunes take them all, in turns
        for n in range(3 * PRUNE_EVERY):
            await store.reserve(same(guarded, b'{"m": %d}' % n))
        assert store.conn.execute(count).fetchone()[0] == 3 * PRUNE_EVERY  # the old all gone
        assert PRUNED_PER_PRUNE >= PRUNE_EVERY  # a prune keeps up with what was written
    finally:
        await store.close()


async def test_one_batch_counts_every_call_and_writes_the_row_once(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "o.db"), clock=Clock())
    await store.open()
    try:
        await store.put_policy("agent:bot", parse_policy(
            {"loop_guard": {"max_repeats": 3, "window_s": 60}}))
        _, secret = await store.create_key(NewKey(agent="bot"))
        answers = await asyncio.gather(*(store.reserve(same(secret)) for _ in range(4)),
                                       return_exceptions=True)
        assert [isinstance(a, RateLimited) for a in answers] == [False, False, False, True]
        (state,) = store.conn.execute("SELECT state FROM repeats").fetchall()[0]
        assert sum(decode(state).counts) == 3
    finally:
        await store.close()


def test_the_mirror_forgets_pruned_rows_and_keeps_unwritten_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = sqlite3.connect(str(tmp_path / "o.db"), isolation_level=None)
    apply(conn)
    mirror = Mirror()
    mirror.set_repeats("old", WindowState(1, (1,)), 10, None)
    mirror.flush(conn)
    assert mirror.repeats_of(conn, "old") == WindowState(1, (1,))
    mirror.set_repeats("new", WindowState(5, (2,)), 100, 50)  # prunes what expired by 50
    mirror.flush(conn)
    assert "old" not in mirror.repeats  # pruned: read again (and found gone) if asked
    assert mirror.repeats_of(conn, "old") is None
    assert conn.execute("SELECT mark FROM repeats").fetchall() == [("new",)]
    monkeypatch.setattr(mirror_module, "MAX_CACHED", 2)
    mirror.set_repeats("newer", WindowState(6, (1,)), 100, None)  # the cache full: only
    assert mirror.repeats == {"newer": (WindowState(6, (1,)), 100)}  # the unwritten kept
    mirror.flush(conn)
    assert mirror.repeats_of(conn, "new") == WindowState(5, (2,))
    assert sorted(conn.execute("SELECT mark FROM repeats")) == [("new",), ("newer",)]


def test_a_row_keeps_its_expiry_index_while_its_expiry_stands(tmp_path: Path) -> None:
    """A row whose expiry is the one in the file gets its buckets alone; one the mirror
    thought in the file but is not (deleted behind it) is written whole; a new expiry too."""
    conn = sqlite3.connect(str(tmp_path / "o.db"), isolation_level=None)
    apply(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    mirror = Mirror()
    row = "SELECT state, expires_ms FROM repeats WHERE mark='m'"

    def stored() -> tuple[WindowState, int]:
        state, expires = conn.execute(row).fetchone()
        return decode(state), expires

    mirror.set_repeats("m", WindowState(1, (1,)), 10, None)
    mirror.flush(conn)
    assert stored() == (WindowState(1, (1,)), 10)
    statements.clear()
    mirror.set_repeats("m", WindowState(1, (2,)), 10, None)  # the same bucket: same expiry
    mirror.flush(conn)
    assert stored() == (WindowState(1, (2,)), 10)
    assert any(s.startswith("UPDATE repeats SET state=") for s in statements)
    assert not any(s.startswith("INSERT INTO repeats") for s in statements)

    conn.execute("DELETE FROM repeats")  # gone, the mirror not told
    mirror.set_repeats("m", WindowState(1, (3,)), 10, None)
    mirror.flush(conn)
    assert stored() == (WindowState(1, (3,)), 10)

    mirror.set_repeats("m", WindowState(2, (3, 1)), 11, None)  # a new bucket: a new expiry
    mirror.flush(conn)
    assert stored() == (WindowState(2, (3, 1)), 11)
    fresh = Mirror()  # read from the file, then the buckets alone
    assert fresh.repeats_of(conn, "m") == WindowState(2, (3, 1))
    statements.clear()
    fresh.set_repeats("m", WindowState(2, (3, 2)), 11, None)
    fresh.flush(conn)
    assert stored() == (WindowState(2, (3, 2)), 11)
    assert not any(s.startswith("INSERT INTO repeats") for s in statements)

