"""A worker's caches of the policies and the keys, under the version an admin write changes
in Redis (the reservation script refuses a decision made under an older one): read again on
the first decision after a change, once for all the calls in flight, and a key once for all
its calls; a key read from before a change is never kept after it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from outlay.policy.decision import KeyInfo
from outlay.policy.model import Policy
from outlay.state.base import StateError
from outlay.state.redis.plan import Names

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from outlay.state.postgres.durable import PostgresDurable


class RedisCaches:
    if TYPE_CHECKING:
        names: Names
        durable: PostgresDurable
        _version: str | None
        _policies: dict[str, Policy]
        _keys: dict[str, KeyInfo]
        _loading: asyncio.Task[None] | None
        _reading: dict[str, asyncio.Task[KeyInfo | None]]

        @property
        def redis(self) -> Redis: ...

        async def _ensure_ready(self, *, wait: bool = True) -> None: ...

    async def _load(self) -> None:
        """The policies under the current version, read once for every call waiting on them
        (a call cancelled meanwhile leaves the read to the others)."""
        task = self._loading
        if task is None:
            task = self._loading = asyncio.get_running_loop().create_task(self._read_policies())
            task.add_done_callback(self._loaded)
        await asyncio.shield(task)

    def _loaded(self, task: asyncio.Task[Any]) -> None:
        if self._loading is task:
            self._loading = None
        if not task.cancelled():
            task.exception()  # its waiters got it; none left: not reported as unretrieved

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
        self._keys, self._reading = {}, {}  # keys read before the change are read again
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
        task = self._reading.get(key_hash)
        if task is None:
            task = self._reading[key_hash] = asyncio.get_running_loop().create_task(
                self._read_key(key_hash))
            task.add_done_callback(lambda done: self._read(key_hash, done))
        return await asyncio.shield(task)

    def _read(self, key_hash: str, task: asyncio.Task[Any]) -> None:
        if self._reading.get(key_hash) is task:
            del self._reading[key_hash]
        if not task.cancelled():
            task.exception()  # its waiters got it; none left: not reported as unretrieved

    async def _read_key(self, key_hash: str) -> KeyInfo | None:
        keys = self._keys  # a reload meanwhile starts a new cache: this one is not kept
        key = await self.durable.key_by_hash(key_hash)
        if key is not None:
            keys[key_hash] = key
        return key
