"""The scripts a worker runs in one turn of its event loop go to Redis together, in one
pipeline: one write and one read for all of them instead of one each. A turn that queues
EARLY_BATCH of them writes those at once and goes on, so that Redis runs them while the
worker still works through the turn (a loaded turn can take milliseconds); the rest go at
its end. A pipeline is not a transaction; each script is still atomic on its own, which is
all a decision needs, and scripts of one turn depend on no order among them (a call's own
scripts are turns apart: each waits for the one before).

One script fails alone: its own error reply, or arguments that cannot be sent (a string
with a lone surrogate cannot be encoded) fail that script's caller only, and the others are
sent and answered. Only a connection that fails fails every script it carried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any

import hiredis
import orjson
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from outlay.loops import RunningLoop
from outlay.state.base import StateError

MAX_BATCH = 256
# scripts queued in one loop turn that are written at once, on a connection kept between
# batches, rather than at the turn's end. Side by side at 32 connections (bench/README.md,
# a ninth round) 16 served 5 to 10 % more calls a second than a batch a turn; 8 and 4 cost
# more CPU a call in the batches' reads than the overlap gave, 24 and 32 split too few
EARLY_BATCH = 16
# a script, its keys and arguments; or None and a plain command's words (ScriptBatch.command)
Call = tuple[AsyncScript | None, list[Any], list[Any], "asyncio.Future[Any]"]
# what a request's value that cannot be encoded raises (a string with a lone surrogate, from
# a header byte that was not UTF-8): it fails that request alone, as the store's error
UNSTORABLE = (UnicodeError, orjson.JSONEncodeError)


@contextlib.contextmanager
def unstorable_values() -> Iterator[None]:
    try:
        yield
    except UNSTORABLE as exc:
        raise unstorable(exc) from exc


class ScriptBatch:
    """`pipelined=False` (Redis Cluster, whose client will not pipeline scripts) sends each
    script on its own, concurrently."""

    def __init__(self, redis: Redis, *, pipelined: bool = True) -> None:
        self._redis = redis
        self._pipelined = pipelined
        self._queue: list[Call] = []
        self._scheduled = False
        self._loop = RunningLoop()
        self._sending: set[asyncio.Task[None]] = set()
        self._idle: list[Any] = []  # connections between batches (_connection)

    def command(self, *words: Any) -> asyncio.Future[Any]:
        """A plain command (the ledger writer's XDEL) with this loop turn's scripts: on
        their write and read, not a round trip and the client's bookkeeping of its own."""
        return self.submit(None, list(words), [])

    def submit(self, script: AsyncScript | None, keys: list[Any], args: list[Any]
               ) -> asyncio.Future[Any]:
        """Queue a script for this loop turn's batch; its reply, or a StateError, comes in
        the future. A caller cancelled while awaiting it cancels only its wait: the script
        is in the batch and is sent all the same (a settlement lands), its reply dropped."""
        loop = self._loop.get()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        if len(self._queue) >= EARLY_BATCH and self._pipelined and self._idle:
            self._write_now()
        return future

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._track(self._send(batch))

    def _write_now(self) -> None:
        """Write the scripts queued so far in this turn at once, on a connection kept between
        batches (none idle: they wait for the turn's end); a task reads their replies."""
        connection = self._idle.pop() if self._idle else None
        if connection is None:
            return
        if not _usable(connection):
            self._track(self._give_back(connection))
            return
        batch, self._queue = self._queue, []
        packed, sendable = self._packed(batch)
        if not sendable:
            self._idle.append(connection)
            return
        try:
            connection._writer.write(b"".join(packed))
        except Exception:  # not sent: they go at the turn's end, on another connection
            self._queue[:0] = sendable
            self._track(self._give_back(connection))
            return
        self._track(self._send_packed(sendable, None, connection))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _packed(self, batch: list[Call]) -> tuple[list[bytes], list[Call]]:
        packed: list[bytes] = []
        sendable: list[Call] = []
        for call in batch:
            script, keys, args, future = call
            try:
                packed.append(_command(*keys) if script is None else
                              _command(b"EVALSHA", script.sha, len(keys), *keys, *args))
            except (UnicodeError, ValueError, TypeError) as exc:  # TypeError: not a str or int
                _resolve(future, unstorable(exc))  # unless its caller stopped waiting
                continue
            sendable.append(call)
        return packed, sendable

    async def _send(self, batch: list[Call]) -> None:
        # a batch of one is packed too: the client's own path costs more than the packing
        if not self._pipelined:
            await asyncio.gather(*(self._one(*call) for call in batch))
            return
        packed, sendable = self._packed(batch)
        if sendable:
            await self._send_packed(sendable, b"".join(packed))

    async def _send_packed(self, batch: list[Call], packed: bytes | None,
                           connection: Any = None) -> None:
        """`packed` written on a connection of the batch's own, its replies read; None: it
        was written already, on `connection`."""
        results: list[Any] = []
        try:
            try:
                await self._pipeline(batch, packed, results, connection)
            finally:  # the replies read before a failure still answer their callers
                for (*_, future), result in zip(batch, results, strict=False):
                    if not isinstance(result, NoScriptError):
                        _resolve(future, result)
            for (script, keys, args, future), result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError):  # Redis restarted: load it, once
                    await self._one(script, keys, args, future)
        except (RedisError, OSError) as exc:
            _fail(batch, StateError(f"Redis unavailable: {exc}"))
        except BaseException as exc:  # never leave a caller waiting for ever
            _fail(batch, StateError(f"Redis client failed: {exc!r}"))
            if not isinstance(exc, Exception):
                raise

    async def _pipeline(self, batch: list[Call], packed: bytes | None, results: list[Any],
                        connection: Any = None) -> None:
        """EVALSHA of every call (`packed`), written at once on one connection, the replies
        read in order into `results`. Packed here rather than by the client's pipeline: for
        these few, known commands its generic packing and bookkeeping were most of a
        decision's client cost."""
        if connection is None:
            connection = await self._connection()
        try:
            writer = connection._writer
            if writer is None or writer.transport.is_closing():
                raise RedisConnectionError("the connection to Redis was closed")
            # written and the replies read straight from the client's writer and parser,
            # under one timeout for the batch: the client's own paths (a task to time the
            # write, a timeout and bookkeeping per reply) cost more than the parsing. A
            # script's error reply comes back as its ResponseError, not raised.
            parser = connection._parser
            async with asyncio.timeout(connection.socket_timeout):
                if packed is not None:  # else written already (_write_now)
                    writer.write(packed)
                await writer.drain()
                await _read_replies(parser, len(batch), results)
        except BaseException:
            await self._give_back(connection)  # replies may be left unread: never reuse it
            raise
        self._idle.append(connection)  # every reply read: kept for the next batch

    async def _connection(self) -> Any:
        """A connection of the batch's own, kept between batches (the pool's checkout and
        release, with its locks and checks, cost a batch more than its writing); one the
        server closed meanwhile goes back to the pool, and one from the pool (connected,
        fenced, checked) replaces it."""
        while self._idle:
            connection = self._idle.pop()
            if _usable(connection):
                return connection
            await self._give_back(connection)
        return await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]

    async def _give_back(self, connection: Any) -> None:
        """A connection not to be used again: closed, and back to the pool."""
        try:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()
        finally:
            await self._redis.connection_pool.release(connection)

    async def close(self, timeout_s: float) -> None:
        """Wait at most `timeout_s` for the batches in flight, then close the connections
        kept between batches and give them back to the pool: a closed store holds none, and
        the pool's own close finds none in use. A later script takes a new one."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=timeout_s)
        idle, self._idle = self._idle, []
        for connection in idle:  # none on Redis Cluster, whose client has no one pool
            await self._give_back(connection)

    async def _one(self, script: AsyncScript | None, keys: list[Any], args: list[Any],
                   future: asyncio.Future[Any]) -> None:
        """One script (or command) on its own; whatever happens is this caller's alone."""
        try:
            result = await (self._redis.execute_command(*keys)  # type: ignore[no-untyped-call]
                            if script is None else script(keys=keys, args=args))
        except ResponseError as refused:  # the script failed, not the connection
            result = refused
        except (RedisError, OSError) as exc:
            result = StateError(f"Redis unavailable: {exc}")
        except (UnicodeError, ValueError) as exc:
            result = unstorable(exc)
        except BaseException as exc:  # never leave a caller waiting for ever
            _resolve(future, StateError(f"Redis client failed: {exc!r}"))
            raise
        _resolve(future, result)


def _usable(connection: Any) -> bool:
    """Whether a kept connection is still open both ways (the server may have closed it)."""
    reader, writer = connection._reader, connection._writer
    return (reader is not None and not reader.at_eof() and writer is not None
            and not writer.transport.is_closing())


async def _read_replies(parser: Any, count: int, results: list[Any]) -> None:
    """`count` replies, in order, into `results`: each already read from the socket is
    taken from hiredis's reader at once, as the parser's `read_response` would return it
    (a connection error in it raised); the parser itself reads the rest from the socket.
    A push (RESP3's) taken so is handed to the parser's handler, as its `read_response`
    does, and the reply after it read. (redis-py 8 names hiredis's push type on RESP2
    connections too: testing for it alone, as before, left every reply to the parser.)"""
    hiredis_parser = hasattr(parser, "_hiredis_PushNotificationType")
    push = getattr(parser, "_hiredis_PushNotificationType", None)
    for _ in range(count):
        # a parser disconnected meanwhile says so itself
        reply = (parser._reader.gets() if hiredis_parser and parser._connected
                 else NOT_ENOUGH_DATA)
        while push is not None and isinstance(reply, push):
            await parser.handle_push_response(reply)
            reply = parser._reader.gets() if parser._connected else NOT_ENOUGH_DATA
        if reply is NOT_ENOUGH_DATA:
            reply = await parser.read_response()
        elif isinstance(reply, RedisConnectionError) or (
                type(reply) is list and reply and isinstance(reply[0], RedisConnectionError)):
            raise reply if isinstance(reply, RedisConnectionError) else reply[0]
        results.append(reply)


def _command(*args: Any) -> bytes:
    """One command in RESP: an array of bulk strings (hiredis packs it in C, a third of the
    time the same in Python took; a string that cannot be encoded raises UnicodeError)."""
    packed: bytes = hiredis.pack_command(args)
    return packed


def unstorable(exc: Exception) -> StateError:
    return StateError(f"the state store could not record this call: {exc}")


def _fail(batch: list[Call], error: StateError) -> None:
    for *_, future in batch:
        if not future.done():
            future.set_exception(error)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, StateError):
        future.set_exception(result)
    elif isinstance(result, RedisError):
        future.set_exception(StateError(f"Redis refused a script: {result}"))
    else:
        future.set_result(result)
