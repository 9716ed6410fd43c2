"""Scripts of one event-loop turn share one pipeline, each with its own answer; a script
Redis forgot (a restart) is loaded again; a script that fails or cannot be sent fails alone;
a Redis that does not answer fails them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from outlay.state.base import StateError
from outlay.state.redis.batch import EARLY_BATCH, ScriptBatch, _read_replies

from ...servers.redis import RedisServer

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    await redis.delete("batch:n")
    yield redis
    await redis.aclose()


async def loaded(client: Redis) -> tuple[ScriptBatch, AsyncScript]:
    """A batch whose script is loaded, with the connection of its first call kept."""
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    await batch.submit(script, ["batch:n"], [0])
    return batch, script


async def test_scripts_of_one_turn_share_a_pipeline_the_first_ones_written_at_once(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, script = await loaded(client)
    sent: list[int] = []
    real = batch._pipeline

    async def counted(calls: list[Any], packed: bytes | None, results: list[Any],
                      connection: Any = None) -> None:
        sent.append(len(calls))
        await real(calls, packed, results, connection)

    monkeypatch.setattr(batch, "_pipeline", counted)
    pending = [batch.submit(script, ["batch:n"], [i]) for i in range(1, 51)]
    # the first EARLY_BATCH went as the last of them was queued, within this turn; the
    # others wait for its end (the one connection kept is busy)
    assert len(batch._queue) == 50 - EARLY_BATCH
    answers = await asyncio.gather(*pending)
    assert len(set(answers)) == 50  # each its own answer: the running total it made
    assert max(answers) == sum(range(1, 51))
    assert sorted(sent) == sorted([EARLY_BATCH, 50 - EARLY_BATCH])  # two writes


async def test_a_turn_of_few_scripts_writes_them_at_its_end(client: Redis) -> None:
    batch, script = await loaded(client)
    pending = [batch.submit(script, ["batch:n"], [1]) for _ in range(EARLY_BATCH - 1)]
    assert len(batch._queue) == EARLY_BATCH - 1
    assert sorted(await asyncio.gather(*pending)) == list(range(1, EARLY_BATCH))


async def test_a_kept_connection_the_server_closed_is_given_back_and_the_turn_still_served(
    client: Redis
) -> None:
    batch, script = await loaded(client)
    (kept,) = batch._idle
    host, port = kept._writer.get_extra_info("sockname")[:2]
    assert await client.client_kill_filter(addr=f"{host}:{port}") == 1  # the server closes it
    await asyncio.sleep(0.05)
    answers = await asyncio.gather(*(batch.submit(script, ["batch:n"], [1])
                                     for _ in range(EARLY_BATCH + 2)))
    assert sorted(answers) == list(range(1, EARLY_BATCH + 3))
    assert kept not in batch._idle
    assert kept not in client.connection_pool._in_use_connections


async def test_scripts_whose_early_write_failed_go_at_the_turns_end(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, script = await loaded(client)
    (kept,) = batch._idle

    def refuses(_data: bytes) -> None:
        raise RuntimeError("transport gone")

    monkeypatch.setattr(kept._writer, "write", refuses)
    answers = await asyncio.gather(*(batch.submit(script, ["batch:n"], [1])
                                     for _ in range(EARLY_BATCH)))
    assert sorted(answers) == list(range(1, EARLY_BATCH + 1))  # each ran once
    assert kept not in batch._idle  # not used again


async def test_a_failing_script_written_early_fails_alone(client: Redis) -> None:
    batch = ScriptBatch(client)
    good = client.register_script(INCR)
    bad = client.register_script("return redis.call('NOSUCHCOMMAND')")
    await batch.submit(good, ["batch:n"], [0])
    pending = [batch.submit(good, ["batch:n"], [1]) for _ in range(EARLY_BATCH - 1)]
    pending.append(batch.submit(bad, [], []))
    assert not batch._queue  # written at once
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert sorted(results[:-1]) == list(range(1, EARLY_BATCH))  # type: ignore[type-var]
    assert isinstance(results[-1], StateError)


async def test_a_forgotten_script_is_loaded_again(client: Redis) -> None:
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    assert await batch.submit(script, ["batch:n"], [2]) == 2
    await client.script_flush()
    assert await asyncio.gather(batch.submit(script, ["batch:n"], [1]),
                                batch.submit(script, ["batch:n"], [1])) == [3, 4]


async def test_an_unreachable_redis_fails_every_script_clearly() -> None:
    redis = Redis(port=1, socket_connect_timeout=0.5)
    batch = ScriptBatch(redis)
    script = redis.register_script(INCR)
    results = await asyncio.gather(*(batch.submit(script, ["k"], [1]) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, StateError) and "Redis unavailable" in str(r) for r in results)
    await redis.aclose()


async def test_a_failing_script_fails_alone(client: Redis) -> None:
    batch = ScriptBatch(client)
    good = client.register_script(INCR)
    bad = client.register_script("return redis.call('NOSUCHCOMMAND')")
    await batch.submit(good, ["batch:n"], [0])
    with pytest.raises(StateError, match="Redis refused a script"):
        await batch.submit(bad, [], [])
    results = await asyncio.gather(batch.submit(good, ["batch:n"], [5]), batch.submit(bad, [], []),
                                   return_exceptions=True)
    assert results[0] == 5
    assert isinstance(results[1], StateError)


@pytest.mark.parametrize("pipelined", [True, False])
async def test_a_script_whose_arguments_cannot_be_sent_fails_alone(
    client: Redis, pipelined: bool
) -> None:
    batch = ScriptBatch(client, pipelined=pipelined)
    script = client.register_script(INCR)
    await batch.submit(script, ["batch:n"], [0])
    results = await asyncio.gather(
        *(batch.submit(script, ["batch:n"], [1]) for _ in range(3)),
        batch.submit(script, ["batch:\udcff"], [1]),  # a key with a lone surrogate
        batch.submit(script, ["batch:n"], ["\udcff"]),
        *(batch.submit(script, ["batch:n"], [1]) for _ in range(3)),
        return_exceptions=True)
    assert sorted(results[:3] + results[5:]) == [1, 2, 3, 4, 5, 6]  # every honest one ran
    for failed in results[3:5]:
        assert isinstance(failed, StateError)
        assert "could not record this call" in str(failed)
    assert await client.get("batch:n") == "6"


async def test_a_pipelined_script_with_an_argument_of_no_sendable_type_fails_alone(
    client: Redis
) -> None:
    batch = ScriptBatch(client, pipelined=True)
    script = client.register_script(INCR)
    await batch.submit(script, ["batch:t"], [0])
    results = await asyncio.gather(
        batch.submit(script, ["batch:t"], [1]), batch.submit(script, ["batch:t"], [None]),
        batch.submit(script, ["batch:t"], [1]), return_exceptions=True)
    assert (results[0], results[2]) == (1, 2)
    assert isinstance(results[1], StateError)
    assert "could not record this call" in str(results[1])


async def test_replies_read_before_the_connection_broke_still_answer(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    await batch.submit(script, ["batch:n"], [0])
    real = batch._pipeline

    async def broken_after_two(calls: list[Any], packed: bytes | None, results: list[Any],
                               connection: Any = None) -> None:
        await real(calls, packed, results, connection)
        del results[2:]
        raise ConnectionError("connection reset")  # the rest of the replies are lost

    monkeypatch.setattr(batch, "_pipeline", broken_after_two)
    results = await asyncio.gather(*(batch.submit(script, ["batch:n"], [1]) for _ in range(4)),
                                   return_exceptions=True)
    assert results[:2] == [1, 2]
    assert all(isinstance(r, StateError) and "Redis unavailable" in str(r)
               for r in results[2:])


async def test_closing_gives_back_the_connections_it_kept(client: Redis) -> None:
    # kept between batches, a connection stays checked out of the pool: closing the batch
    # must give it back closed, or the store's close would leave it open and in use
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    await asyncio.gather(*(batch.submit(script, ["batch:n"], [1]) for _ in range(3)))
    pool = client.connection_pool
    kept = list(pool._in_use_connections)
    assert kept  # the batch's own, between batches

    await batch.close(timeout_s=1.0)

    assert not pool._in_use_connections
    assert all(not c.is_connected for c in kept)
    assert await batch.submit(script, ["batch:n"], [1]) == 4  # a later script takes a new one


async def test_closing_waits_for_a_batch_in_flight(client: Redis) -> None:
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    await batch.submit(script, ["batch:n"], [0])
    answer = batch.submit(script, ["batch:n"], [7])
    await asyncio.sleep(0)  # the batch is on its way

    await batch.close(timeout_s=1.0)

    assert answer.done()
    assert answer.result() == 7
    assert not client.connection_pool._in_use_connections


async def test_replies_read_already_are_taken_without_the_parsers_reading(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = ScriptBatch(client)
    script = client.register_script(INCR)
    await batch.submit(script, ["batch:n"], [0])
    parser = batch._idle[0]._parser
    reads: list[int] = []
    real = parser.read_response

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(parser, "read_response", counted)
    results = await asyncio.gather(*(batch.submit(script, ["batch:n"], [1]) for _ in range(50)))
    assert results == list(range(1, 51))
    assert len(reads) < 50  # the parser waits for the socket, not for every reply


class Parser:
    """A hiredis parser's part _read_replies uses: a push ahead of a reply, as on RESP3."""

    _hiredis_PushNotificationType = hiredis.PushNotification  # noqa: N815 (the parser's name)
    _connected = True

    def __init__(self, replies: list[Any]) -> None:
        self._reader = self
        self.replies = replies
        self.pushed: list[Any] = []

    def gets(self) -> Any:
        return self.replies.pop(0) if self.replies else NOT_ENOUGH_DATA

    async def handle_push_response(self, response: Any) -> None:
        self.pushed.append(response)

    async def read_response(self) -> Any:
        raise AssertionError("every reply was read already")


async def test_a_push_ahead_of_a_reply_goes_to_the_parsers_handler() -> None:
    push = hiredis.PushNotification(["invalidate", ["k"]])
    parser = Parser([push, 1, push, ["a", 2]])
    results: list[Any] = []
    await _read_replies(parser, 2, results)
    assert results == [1, ["a", 2]]
    assert parser.pushed == [push, push]
