"""Scripts of one event-loop turn share one pipeline, each with its own answer; a script
Redis forgot (a restart) is loaded again; a Redis that does not answer fails them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from outlay.state.base import StateError
from outlay.state.redis.batch import ScriptBatch

from ...servers.redis import RedisServer

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    await redis.delete("batch:n")
    yield redis
    await redis.aclose()


async def test_scripts_of_one_turn_share_a_pipeline(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    await batch.run(script, ["batch:n"], [0])  # loaded
    sent: list[int] = []
    real = batch._pipeline

    async def counted(calls: list[Any]) -> list[Any]:
        sent.append(len(calls))
        return await real(calls)

    monkeypatch.setattr(batch, "_pipeline", counted)
    answers = await asyncio.gather(*(batch.run(script, ["batch:n"], [i]) for i in range(1, 51)))
    assert len(set(answers)) == 50  # each its own answer: the running total it made
    assert max(answers) == sum(range(1, 51))
    assert sent == [50]  # one write, fifty scripts


async def test_a_forgotten_script_is_loaded_again(client: Redis) -> None:
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    assert await batch.run(script, ["batch:n"], [2]) == 2
    await client.script_flush()
    assert await asyncio.gather(batch.run(script, ["batch:n"], [1]),
                                batch.run(script, ["batch:n"], [1])) == [3, 4]


async def test_an_unreachable_redis_fails_every_script_clearly() -> None:
    redis = Redis(port=1, socket_connect_timeout=0.5)
    batch = ScriptBatch(redis)
    script = redis.register_script(INCR)
    results = await asyncio.gather(*(batch.run(script, ["k"], [1]) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, StateError) and "Redis unavailable" in str(r) for r in results)
    await redis.aclose()


async def test_a_failing_script_fails_alone(client: Redis) -> None:
    batch = ScriptBatch(client)
    good = client.register_script(INCR)
    bad = client.register_script("return redis.call('NOSUCHCOMMAND')")
    await batch.run(good, ["batch:n"], [0])
    with pytest.raises(StateError, match="Redis refused a script"):
        await batch.run(bad, [], [])
    results = await asyncio.gather(batch.run(good, ["batch:n"], [5]), batch.run(bad, [], []),
                                   return_exceptions=True)
    assert results[0] == 5
    assert isinstance(results[1], StateError)
