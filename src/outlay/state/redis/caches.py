"""A worker's caches of the policies and the keys, under the version an admin write changes
in Redis (the reservation script refuses a decision made under an older one): read again on
the first decision after a change, once for all the calls in flight, and a key once for all
its calls; a key read from before a change is never kept after it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from redis.exceptions import RedisError

from outlay.policy.decision import KeyInfo
from outlay.policy.model import Policy
from outlay.state.base import StateError
from outlay.state.redis.plan import Names

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from outlay.state.postgres.durable import PostgresDurable

T = TypeVar("T")


class SharedReads(Generic[T]):
    """Reads under way, by what they read: a caller arriving while one runs waits for it
    instead of making its own, and a caller cancelled meanwhile leaves it to the others."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[T]] = {}

    async def read(self, what: Hashable, read: Callable[[], Coroutine[Any, Any, T]]) -> T:
        task = self._running.get(what)
        if task is None:
            task = self._running[what] = asyncio.get_running_loop().create_task(read())
            task.add_done_callback(lambda done: self._done(what, done))
        return await asyncio.shield(task)

    def _done(self, what: Hashable, task: asyncio.Task[T]) -> None:
        if self._running.get(what) is task:
            del self._running[what]
        if not task.cancelled():
            task.exception()  # its waiters got it; none left: not reported as unretrieved


class RedisCaches:
    if TYPE_CHECKING:
        names: Names
        durable: PostgresDurable
        _version: str | None
        _policies: dict[str, Policy]
        _keys: dict[str, KeyInfo]
        _loading: SharedReads[None]
        _reading: SharedReads[KeyInfo | None]

        @property
        def redis(self) -> Redis: ...

        async def _ensure_ready(self, *, wait: bool = True) -> None: ...

    async def _load(self) -> None:
        """The policies under the current version, read once for every call waiting on them."""
        await self._loading.read(None, self._read_policies)

    async def _read_policies(self) -> None:
        """Read the version first, then what it covers: a write in between only makes the
        cache newer than its version, and the next decision reloads it."""
        try:
            version = await self.redis.hget(self.names.meta, "version")
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        if version is None:
            await self._ensure_ready()
            return
        self._policies = await self.durable.list_policies()
        # keys read before the change are read again, not joined
        self._keys, self._reading = {}, SharedReads()
        self._version = str(version)

    async def _changed(self) -> None:
        """After an admin write to PostgreSQL: every worker's next decision reloads."""
        with contextlib.suppress(RedisError):
            await self.redis.hset(self.names.meta, "version", secrets.token_hex(8))
        self._version = None

    async def _key(self, key_hash: str) -> KeyInfo | None:
        key = self._keys.get(key_hash)
        if key is not None:
            return key
        return await self._reading.read(key_hash, lambda: self._read_key(key_hash))

    async def _read_key(self, key_hash: str) -> KeyInfo | None:
        keys = self._keys  # a reload meanwhile starts a new cache: this one is not kept
        key = await self.durable.key_by_hash(key_hash)
        if key is not None:
            keys[key_hash] = key
        return key
