"""A worker's forwarded marks in its own files (state/sqlite/marks.py): the reaper reads them
as it read the database's marks, a worker near the reaper's limits marks in the database,
the files stay small, and neither a rotation, a close, a failing file nor a worker taken
for dead lets a sent call be voided."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, Reaped
from outlay.state.sqlite import marks
from outlay.state.sqlite.leases import FRESH_MS
from outlay.state.sqlite.marks import MarkFiles, collect, list_files, markable, read_marks
from outlay.state.sqlite.store import SqliteStore

from ..support import Clock, charged, ticket


async def open_bot(path: Path, clock: Clock) -> tuple[SqliteStore, str]:
    store = SqliteStore(str(path), clock=clock)
    await store.open()
    await store.create_agent("bot", None)
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 10}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    return store, secret


async def worker_on(path: Path, clock: Clock) -> SqliteStore:
    store = SqliteStore(str(path), clock=clock)
    await store.open()
    return store


def db_marks(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {rid for (rid,) in conn.execute(
            "SELECT id FROM reservations JOIN forwarded_calls USING (seq)")}
    finally:
        conn.close()


def sizes(directory: str) -> list[int]:
    return [os.path.getsize(os.path.join(directory, name)) for name in list_files(directory)]


def die(store: SqliteStore) -> None:
    """The process is killed: nothing closed, nothing written."""
    assert store._checkpointer is not None
    store._checkpointer.stop()
    store.conn.close()
    store._conn = None


async def survivor_reaps(path: Path, clock: Clock) -> tuple[SqliteStore, list[Reaped]]:
    """Another worker, 5 s after the dead one's last heartbeat, and what its reaper did."""
    survivor = await worker_on(path, clock)
    clock.advance(5.001)
    await survivor.heartbeat()
    return survivor, await survivor.reap()


# -- the files -----------------------------------------------------------------------------
def test_a_file_holds_whole_lines_and_is_private(tmp_path: Path) -> None:
    directory = str(tmp_path / "outlay.db-forwarded")
    files = MarkFiles(directory, "w_1_aa")
    assert files.append("req_a")
    assert files.append("req_b")
    assert read_marks(directory, "w_1_aa") == {"req_a", "req_b"}
    with open(files.path(0), "ab") as file:  # a mark being written: not one yet
        file.write(b"req_c")
    assert read_marks(directory, "w_1_aa") == {"req_a", "req_b"}
    assert stat.S_IMODE(os.stat(files.path(0)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert read_marks(directory, "w_other") == set()  # no file: nothing marked


def test_an_id_a_line_cannot_hold_is_not_written(tmp_path: Path) -> None:
    files = MarkFiles(str(tmp_path / "m"), "w")
    for bad in ("req_\nreq_b", "", "req_é", "req\x00"):
        assert not markable(bad)
        assert not files.append(bad)
    assert not files.disabled  # the next good id is written
    assert files.append("req_ok")


def test_switching_empties_the_other_file(tmp_path: Path) -> None:
    directory = str(tmp_path / "m")
    files = MarkFiles(directory, "w", rotate_bytes=16)
    files.append("req_000001")
    assert not files.full()
    files.append("req_000002")
    assert files.full()
    files.switch()  # to file 1
    files.append("req_000003")
    assert read_marks(directory, "w") == {"req_000001", "req_000002", "req_000003"}
    files.switch()  # back to file 0, emptied
    files.append("req_000004")
    assert read_marks(directory, "w") == {"req_000003", "req_000004"}


def test_a_file_that_cannot_be_written_turns_marks_to_the_database(tmp_path: Path) -> None:
    blocker = tmp_path / "m"
    blocker.write_text("a file where the folder should be")
    files = MarkFiles(str(blocker), "w")
    assert not files.append("req_a")
    assert files.disabled
    assert not files.append("req_b")


def test_an_unreadable_file_counts_every_call_as_sent(tmp_path: Path) -> None:
    directory = tmp_path / "m"
    (directory / "w.0").mkdir(parents=True)  # a folder where the file should be
    assert read_marks(str(directory), "w") is None


def test_the_files_of_workers_gone_are_collected(tmp_path: Path) -> None:
    directory = str(tmp_path / "m")
    for worker in ("w_alive", "w_gone"):
        MarkFiles(directory, worker).append("req_a")
    (tmp_path / "m" / "notes.txt").write_text("not a mark file")
    listed = list_files(directory)
    collect(directory, listed, {"w_alive"})
    assert sorted(os.listdir(directory)) == ["notes.txt", "w_alive.0"]
    assert list_files(str(tmp_path / "missing")) == []
    assert marks.marks_dir(":memory:") is None


# -- the store -----------------------------------------------------------------------------
async def test_a_mark_is_a_line_of_the_workers_file_and_the_reaper_reads_it(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    unsent = await store.reserve(ticket(secret, 4_000))
    sent = await store.reserve(ticket(secret, 3_000))
    assert await store.forwarding(sent.id)
    assert db_marks(path) == set()  # no transaction for the mark
    die(store)
    survivor, (reaped,) = await survivor_reaps(path, clock)
    assert (reaped.charged, reaped.micros, reaped.voided) == (1, 3_000, 1)
    rows = {r["request_id"]: r["settlement"] for r in await survivor.audit(None, 10)}
    assert (rows[sent.id], rows[unsent.id]) == ("unsettled", "void")
    assert list_files(str(path) + "-forwarded") == []  # the dead worker's file, collected
    await survivor.close()


async def test_a_worker_near_the_reapers_limits_marks_in_the_database(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    late_beat = await store.reserve(ticket(secret))
    clock.advance((FRESH_MS + 1) / 1000)  # no heartbeat for longer than the margin
    assert await store.forwarding(late_beat.id)
    assert db_marks(path) == {late_beat.id}
    await store.heartbeat()
    old = await store.reserve(ticket(secret))
    clock.advance(store.lease_ms / 2000)  # half its lease gone
    await store.heartbeat()
    assert await store.forwarding(old.id)
    assert db_marks(path) == {late_beat.id, old.id}
    fresh = await store.reserve(ticket(secret))
    assert await store.forwarding(fresh.id)
    assert db_marks(path) == {late_beat.id, old.id}
    assert fresh.id in (read_marks(str(path) + "-forwarded", store.worker) or set())
    await store.close()


async def test_a_call_the_reaper_voided_meanwhile_is_not_sent(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    unsent = await store.reserve(ticket(secret, 4_000))
    other = await worker_on(path, clock)
    clock.advance(5.001)  # this worker stalled: the other takes it for dead
    await other.heartbeat()
    assert [(r.charged, r.voided) for r in await other.reap()] == [(0, 1)]
    assert not await store.forwarding(unsent.id)  # not fresh: the database says reaped
    await store.heartbeat()  # it comes back: its row was gone, its files may be
    assert store._marks is not None
    assert store._marks.disabled
    again = await store.reserve(ticket(secret, 1_000))
    assert await store.forwarding(again.id)
    assert again.id in db_marks(path)
    await other.close()
    await store.close()


async def test_rotations_keep_every_sent_call_charged_when_the_worker_dies(
        tmp_path: Path, clock: Clock) -> None:
    """Files of a few marks each: a worker sends 60 calls and settles two in three; the
    calls still running when it dies are charged, the unsent voided, each file small."""
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    assert store._marks is not None
    store._marks.rotate_bytes = 64  # three marks a file
    running, unsent = [], []
    for n in range(60):
        held = await store.reserve(ticket(secret, 1_000))
        if n % 7 == 0:
            unsent.append(held.id)
            continue
        assert await store.forwarding(held.id)
        if n % 3:
            assert await store.settle(Outcome(held.id, 200, cost_micros=500))
        else:
            running.append(held.id)
    if store._rotation is not None:
        await store._rotation
    directory = str(path) + "-forwarded"
    assert max(sizes(directory)) < 128
    die(store)
    survivor, (reaped,) = await survivor_reaps(path, clock)
    assert (reaped.charged, reaped.voided) == (len(running), len(unsent))
    rows = {r["request_id"]: r["settlement"] for r in await survivor.audit(None, 100)}
    assert {rows[rid] for rid in running} == {"unsettled"}
    assert {rows[rid] for rid in unsent} == {"void"}
    await survivor.close()


async def test_a_worker_closing_leaves_its_running_calls_marked_in_the_database(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    running = await store.reserve(ticket(secret, 2_000))
    assert await store.forwarding(running.id)
    unsent = await store.reserve(ticket(secret, 1_000))
    await store.close()
    assert db_marks(path) == {running.id}
    assert list_files(str(path) + "-forwarded") == []
    restarted = await worker_on(path, clock)
    (reaped,) = await restarted.reap()
    assert (reaped.charged, reaped.micros, reaped.voided) == (1, 2_000, 1)
    assert not await restarted.settle(Outcome(unsent.id, 200, cost_micros=1))
    await restarted.close()


async def test_a_mark_file_the_reaper_cannot_read_charges_the_calls_in_full(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    unsent = await store.reserve(ticket(secret, 4_000))
    worker = store.worker
    die(store)
    (tmp_path / "outlay.db-forwarded" / f"{worker}.1").mkdir(parents=True)
    survivor, reaped = await survivor_reaps(path, clock)
    assert charged(reaped) == 1  # unknown: it may have been sent
    rows = {r["request_id"]: r["settlement"] for r in await survivor.audit(None, 10)}
    assert rows[unsent.id] == "unsettled"
    await survivor.close()


@pytest.mark.parametrize("request_id", ["req_with\nnewline", "req_ünï"])
async def test_an_id_no_line_can_hold_is_marked_in_the_database(
        tmp_path: Path, clock: Clock, request_id: str) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    held = await store.reserve(ticket(secret, request_id=request_id))
    assert await store.forwarding(held.id)
    assert db_marks(path) == {request_id}
    await store.close()
