"""The replicated store when Redis forgets without looking empty: restarted from a snapshot
(or an append-only file) taken before the latest calls, or holding a state of an older
epoch. Every worker notices before its next decision, the state is rebuilt from the ledger,
and the log says why once; a new installation is not a warning."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateError
from outlay.state.open import store_from_url
from outlay.state.redis.forgot import reason_of, scan_pattern
from outlay.state.redis.scripts import script_text
from outlay.state.redis.store import RedisStore

from ...servers.redis import RedisServer
from ..support import budget_line, charged, ledger_cost, ticket

MakeStore = Callable[..., RedisStore]


@pytest.fixture
async def make_store(own_redis_server: RedisServer, postgres_dsn: str
                     ) -> AsyncIterator[MakeStore]:
    opened: list[RedisStore] = []

    def make(**options: object) -> RedisStore:
        store = store_from_url(own_redis_server.url, database=postgres_dsn,
                               rebuild_grace_s=0.0, timeout_s=0.5, **options)
        assert isinstance(store, RedisStore)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def decide_again(store: RedisStore, secret: str, cost: int) -> None:
    """A reservation after Redis came back: the first try may meet a connection the old
    process closed (answered 503, as any call then); the next is decided."""
    for attempt in range(3):
        try:
            held = await store.reserve(ticket(secret, cost))
        except StateError:
            if attempt == 2:
                raise
            continue
        await store.settle(Outcome(held.id, 200, cost_micros=cost))
        return


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "outlay.state" and r.levelno == logging.WARNING]


async def test_a_redis_restored_from_an_older_snapshot_is_rebuilt_before_it_admits(
    make_store: MakeStore, own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "outlay.state")
    store = make_store()
    await store.open()
    assert not warnings_of(caplog), "a new installation is not a warning"
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.01}]}))
    for _ in range(2):
        held = await store.reserve(ticket(secret, 2_000))
        await store.settle(Outcome(held.id, 200, cost_micros=2_000))
    own_redis_server.save()  # $0.004 spent in the snapshot
    for _ in range(3):
        held = await store.reserve(ticket(secret, 2_000))
        await store.settle(Outcome(held.id, 200, cost_micros=2_000))
    await store.audit(None, 10)  # the ledger has all five: $0.01, the whole cap
    own_redis_server.kill()
    own_redis_server.start()  # loads the snapshot: $0.004 spent, and `ready`

    with pytest.raises((BudgetExceeded, StateError)):
        await decide_again(store, secret, 2_000)  # the stale counters would admit it
    line = await budget_line(store, "agent:bot", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.01", "0")
    assert await ledger_cost(store) == 10_000
    (warning,) = [w for w in warnings_of(caplog) if "rebuilt" in w]
    assert "restarted or failed over" in warning
    assert "snapshot" in warning


async def test_every_connection_to_a_restarted_redis_is_fenced_before_its_first_command(
    make_store: MakeStore, own_redis_server: RedisServer
) -> None:
    store = make_store()
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 1}]}))
    await store.reserve(ticket(secret, 1_000))
    own_redis_server.restart(flush=False)  # every key, `ready` included, on a new process
    raw = Redis.from_url(own_redis_server.url, decode_responses=True)
    try:
        assert await raw.hget(store.names.meta, "ready") == "1"  # nothing touched it yet
        with contextlib.suppress(StateError):  # a pooled connection to the old process
            await store.heartbeat()
        meta = await raw.hgetall(store.names.meta)
    finally:
        await raw.aclose()
    # rebuilt on this process: the state records its run id
    assert meta["ready"] == "1"
    assert "stale" not in meta
    assert meta["run"] == (await _run_id(own_redis_server))


async def _run_id(server: RedisServer) -> str:
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        return str((await client.info("server"))["run_id"])
    finally:
        await client.aclose()


async def test_fence_script_unreadies_only_a_state_written_on_another_process(
    own_redis_server: RedisServer
) -> None:
    client = Redis.from_url(own_redis_server.url, decode_responses=True)
    fence = client.register_script(script_text("fence.lua"))
    try:
        run = await _run_id(own_redis_server)
        assert await fence(keys=["m"]) == 0  # no state at all: nothing to do
        assert await client.hgetall("m") == {}
        await client.hset("m", mapping={"ready": "1", "run": run})
        assert await fence(keys=["m"]) == 1
        await client.hset("m", "run", "0123abc")
        assert await fence(keys=["m"]) == 0
        assert await client.hgetall("m") == {"run": "0123abc", "stale": "0123abc"}
        await client.hset("m", mapping={"ready": "1"})
        await client.hdel("m", "run")  # a state written before Outlay recorded run ids
        assert await fence(keys=["m"]) == 0
        assert await client.hget("m", "stale") == "unknown"
    finally:
        await client.aclose()


async def test_a_state_of_another_epoch_than_postgres_records_is_rebuilt_at_start(
    make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_store()
    await first.open()
    _, secret = await first.create_key(NewKey(agent="bot"))
    await first.put_policy("global", parse_policy({"budgets": [{"usd": 1}]}))
    held = await first.reserve(ticket(secret, 3_000))
    await first.settle(Outcome(held.id, 200, cost_micros=3_000))
    # an older copy of the state, but on this very process: same run id, another epoch
    await first.redis.hset(first.names.meta, "epoch", "an-old-epoch")
    counter = [k async for k in first.redis.scan_iter(match=first.names.prefix + "c:*")]
    await first.redis.hset(counter[0], "spent", 0)
    caplog.set_level(logging.INFO, "outlay.state")
    second = make_store()
    await second.open()
    (warning,) = warnings_of(caplog)
    assert "epoch an-old-epoch" in warning
    line = await budget_line(second, "global", "month")
    assert line["spent_usd"] == "0.003"


async def test_a_reservation_settled_after_the_snapshot_is_not_charged_again(
    make_store: MakeStore, own_redis_server: RedisServer
) -> None:
    store = make_store()
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 1}]}))
    held = await store.reserve(ticket(secret, 5_000))
    own_redis_server.save()  # the snapshot holds the reservation, in flight
    await store.settle(Outcome(held.id, 200, cost_micros=1_000))
    await store.audit(None, 10)
    own_redis_server.kill()
    own_redis_server.start()
    await decide_again(store, secret, 0)
    # the snapshot's copy of the settled reservation went with the rebuild: nothing to reap
    assert charged(await store.reap()) == 0
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.001", "0")
    rows = {r["request_id"]: r for r in await store.audit(None, 10)}
    assert (rows[held.id]["settlement"], rows[held.id]["cost_usd"]) == ("settled", "0.001")


def test_the_reason_given_for_a_rebuild() -> None:
    assert reason_of(None, None, None, has_ledger=False) is None  # a new installation
    assert "restarted or failed over" in (reason_of("abc", "e1", "e1", has_ledger=True) or "")
    assert "holds none" in (reason_of(None, None, "e1", has_ledger=True) or "")
    assert "holds none" in (reason_of(None, None, None, has_ledger=True) or "")
    assert "epoch e0" in (reason_of(None, "e0", "e1", has_ledger=True) or "")
    assert "did not finish" in (reason_of(None, "e1", "e1", has_ledger=True) or "")


def test_scan_patterns_match_the_prefix_literally(tmp_path: Path) -> None:
    assert scan_pattern("outlay:{t}:") == "outlay:{t}:*"
    assert scan_pattern("outlay:{a*b?[c]}:") == r"outlay:{a\*b\?\[c\]}:*"


async def test_a_connection_whose_fence_fails_is_not_used(make_store: MakeStore) -> None:
    store = make_store()
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    meta = await store.redis.hgetall(store.names.meta)
    await store.redis.delete(store.names.meta)
    await store.redis.set(store.names.meta, "not a hash")  # the fence script errs on it
    await store.redis.connection_pool.disconnect()
    with pytest.raises(StateError, match="WRONGTYPE"):
        await store.reserve(ticket(secret, 1_000))
    raw = Redis.from_url(store.url, decode_responses=True)
    try:
        await raw.delete(store.names.meta)
        await raw.hset(store.names.meta, mapping=meta)
    finally:
        await raw.aclose()
    await decide_again(store, secret, 1_000)


async def test_the_heartbeat_fails_while_another_worker_rebuilds(make_store: MakeStore
                                                                  ) -> None:
    """What /readyz answers 503 on: a state not ready, whose rebuild another worker holds."""
    store = make_store()
    await store.open()
    await store.redis.set(store.names.rebuild_lock, "another worker", px=60_000)
    await store.redis.hdel(store.names.meta, "ready")
    with pytest.raises(StateError, match="being rebuilt"):
        await store.heartbeat()
    await store.redis.delete(store.names.rebuild_lock)
    await store.heartbeat()  # no one rebuilds it: this worker does
    assert await store.redis.hget(store.names.meta, "ready") == "1"
