"""A change of the policies or keys (any admin write) makes every worker read them again on
its next decision: the calls in flight then wait for one read of the policies, and for one
read of each key, instead of each making its own (with many keys, every call in flight
reading every key's policy stalled the worker); a key read from before the change is never
used after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from outlay.policy.errors import AuthError
from outlay.policy.model import Policy, parse_policy
from outlay.state.base import NewKey, Outcome
from outlay.state.keys import hash_secret
from outlay.state.open import store_from_url
from outlay.state.redis.store import RedisStore

from ..support import ticket

CALLS = 32


@pytest.fixture
async def store(redis_url: str, postgres_dsn: str) -> AsyncIterator[RedisStore]:
    opened = store_from_url(redis_url, database=postgres_dsn, rebuild_grace_s=0.0)
    assert isinstance(opened, RedisStore)
    await opened.open()
    yield opened
    await opened.close()


def counted(store: RedisStore, name: str, reads: list[str]) -> None:
    """Count the calls of the durable store's method `name` (in `reads`)."""
    method = getattr(store.durable, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        reads.append(name)
        await asyncio.sleep(0.01)  # a read that takes a while: calls pile up behind it
        return await method(*args, **kwargs)

    setattr(store.durable, name, wrapped)


async def test_the_calls_in_flight_share_one_read_of_the_policies_and_of_each_key(
        store: RedisStore) -> None:
    secrets = [(await store.create_key(NewKey(agent="bot", policy=Policy(rpm=10_000))))[1]
               for _ in range(2)]
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 100}]}))
    reads: list[str] = []
    counted(store, "list_policies", reads)
    counted(store, "key_by_hash", reads)
    store._version = None  # as after a change: the next decisions read everything again
    held = await asyncio.gather(*(store.reserve(ticket(secrets[i % 2], 10))
                                  for i in range(CALLS)))
    assert len(held) == CALLS
    assert sorted(reads) == ["key_by_hash", "key_by_hash", "list_policies"]
    for reservation in held:
        await store.settle(Outcome(reservation.id, 200, cost_micros=10))


async def test_a_caller_gone_leaves_the_read_to_the_others(store: RedisStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    reads: list[str] = []
    counted(store, "list_policies", reads)
    store._version = None
    first = asyncio.ensure_future(store.reserve(ticket(secret, 10)))
    await asyncio.sleep(0)  # its read under way
    others = [asyncio.ensure_future(store.reserve(ticket(secret, 10))) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    held = await asyncio.gather(*others)
    assert reads == ["list_policies"]
    assert len(held) == 3
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_read_fails_its_waiters_and_the_next_call_reads_again(
        store: RedisStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    method = store.durable.list_policies
    failures = [RuntimeError("PostgreSQL went away")]

    async def failing(*args: Any, **kwargs: Any) -> Any:
        if failures:
            await asyncio.sleep(0.01)
            raise failures.pop()
        return await method(*args, **kwargs)

    store.durable.list_policies = failing  # type: ignore[method-assign]
    store._version = None
    results = await asyncio.gather(*(store.reserve(ticket(secret, 10)) for _ in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await store.reserve(ticket(secret, 10))).amount == 10  # read again, then decided


async def test_a_key_read_before_a_change_is_not_used_after_it(store: RedisStore) -> None:
    record, secret = await store.create_key(NewKey(agent="bot"))
    key_hash = hash_secret(secret)
    method = store.durable.key_by_hash
    release = asyncio.Event()
    slow: list[int] = []

    async def first_read_slow(*args: Any, **kwargs: Any) -> Any:
        key = await method(*args, **kwargs)  # read before the revocation
        if not slow:
            slow.append(1)
            await release.wait()
        return key

    store.durable.key_by_hash = first_read_slow  # type: ignore[method-assign]
    store._keys.clear()
    early = asyncio.ensure_future(store._key(key_hash))
    await asyncio.sleep(0.05)  # it has the key as it was, and waits
    await store.revoke_key(record.id)  # a change: the next decision reads everything again
    with pytest.raises(AuthError):
        await store.reserve(ticket(secret, 10))
    release.set()
    await early  # the read from before the change ends; its key is not kept
    with pytest.raises(AuthError):
        await store.reserve(ticket(secret, 10))
