"""Knowing when Redis forgot, and rebuilding what it forgot from the ledger.

The hot state is good only on the Redis process that wrote it. A Redis restarted empty has
none of it; one restarted from an RDB snapshot or an AOF, or a replica promoted by a
failover, has a state that may be seconds older than the ledger, with a `ready` mark and
counters that look current. So the state records the run id of the process it was
written on, and every new connection, before its first command, and every heartbeat
check it (`lua/fence.lua`): on another process the state stops being ready, every script
refuses (the gateway answers 503), and one worker rebuilds it from PostgreSQL while the
others wait. The rebuild also records an epoch in PostgreSQL first and in Redis last, so a
Redis holding another epoch than the ledger's last rebuild is rebuilt at start as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from outlay.policy.decision import KeyInfo
from outlay.policy.model import Policy
from outlay.state.base import StateError
from outlay.state.redis.caches import SharedReads
from outlay.state.redis.plan import Names
from outlay.state.redis.rebuild import rebuild
from outlay.state.redis.scripts import script_text
from outlay.state.redis.wal import Ledger, drain

if TYPE_CHECKING:
    from outlay.state.postgres.durable import PostgresDurable
    from outlay.state.redis.wal import Wal
    from outlay.state.retries import SettlementRetries

log = logging.getLogger("outlay.state")
READY_WAIT_S = 30.0
_FENCE = script_text("fence.lua")


def fenced_connect(meta: str) -> Callable[[AbstractConnection], Awaitable[None]]:
    """A connection's set-up (redis-py's `redis_connect_func`): the usual handshake, then
    `fence.lua`, so that no command ever reaches a restarted Redis before the state it
    holds is marked not ready there."""

    async def connect(connection: AbstractConnection) -> None:
        await connection.on_connect()
        await connection.send_command("EVAL", _FENCE, 1, meta, check_health=False)
        await connection.read_response()  # an error fails the connection: not used

    return connect


def scan_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern for every key under `prefix` (its glob characters escaped)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"


async def wipe(redis: Redis, names: Names, ledger: Ledger) -> int:
    """Write every worker's ledger stream to PostgreSQL (idempotently: a stream restored
    from a snapshot holds entries already written), then delete every key of the
    installation but the rebuild lock; returns the keys deleted."""
    keys = [str(k) async for k in redis.scan_iter(match=scan_pattern(names.prefix),
                                                  count=1000)]
    streams = names.wal("")
    for key in keys:
        if key.startswith(streams):
            await drain(redis, key, ledger, delete=False)
    doomed = [k for k in keys if k != names.rebuild_lock]
    for i in range(0, len(doomed), 500):
        await redis.delete(*doomed[i:i + 500])
    return len(doomed)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def reason_of(stale: str | None, epoch: str | None, recorded: str | None,
              has_ledger: bool) -> str | None:
    """Why a state is rebuilt, for the operator; None for a new installation."""
    if stale:
        return (f"Redis was restarted or failed over (the state was written on the process "
                f"with run id {stale}): what it loaded from a snapshot or an append-only "
                "file may be older than the ledger")
    if epoch is None:
        if recorded is None and not has_ledger:
            return None
        return "Redis holds none of the state (restarted empty, flushed or replaced)"
    if recorded is not None and epoch != recorded:
        return (f"Redis holds a state of epoch {epoch}, not of the last rebuild "
                f"({recorded}): it was restored from an older copy")
    return "a rebuild of the state did not finish"


class RedisRecovery:
    if TYPE_CHECKING:
        names: Names
        worker: str
        durable: PostgresDurable
        lease_ms: int
        rebuild_grace_s: float
        _clock: Callable[[], int] | None
        _policies: dict[str, Policy]
        _keys: dict[str, KeyInfo]
        _reading: SharedReads[KeyInfo | None]
        _version: str | None
        _now_script: Any

        @property
        def redis(self) -> Redis: ...

        @property
        def wal(self) -> Wal: ...

        _retries: SettlementRetries

    async def _check_epoch(self) -> None:
        """At start: a ready state of another epoch than PostgreSQL's is not ready."""
        recorded = await self.durable.redis_epoch(self.names.tenant)
        try:
            ready, epoch = await self.redis.hmget(self.names.meta, "ready", "epoch")
            if ready and recorded is not None and epoch != recorded:
                pipe = self.redis.pipeline(transaction=True)
                pipe.hdel(self.names.meta, "ready")
                await pipe.execute()
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc

    async def _ensure_ready(self, *, wait: bool = True) -> None:
        """No ready state (a new installation, or Redis forgot): one worker rebuilds it
        from the ledger after every worker had time to write what it kept; the others wait
        (or, not `wait`ing, are told it is being rebuilt)."""
        redis = self.redis
        deadline = time.monotonic() + READY_WAIT_S
        with contextlib.suppress(StateError):
            await self.wal.flush()
        while True:
            try:
                if await redis.hexists(self.names.meta, "ready"):
                    break
                if await redis.set(self.names.rebuild_lock, self.worker, nx=True, px=60_000):
                    try:
                        # another worker's rebuild may have finished (and let the lock go)
                        # since the state was found not ready: never rebuild a ready state,
                        # wiping the calls admitted on it meanwhile
                        if not await redis.hexists(self.names.meta, "ready"):
                            await self._rebuild()
                    finally:
                        await redis.delete(self.names.rebuild_lock)
                    break
            except RedisError as exc:
                raise StateError(f"Redis unavailable: {exc}") from exc
            if not wait or time.monotonic() > deadline:
                raise StateError("the Redis state is being rebuilt from PostgreSQL; try again")
            await asyncio.sleep(0.05)
        await self._retries.retry_now()

    async def _rebuild(self) -> None:
        started = time.monotonic()
        has_ledger = bool(await self.durable.audit(None, 1))
        stale, epoch = await self.redis.hmget(self.names.meta, "stale", "epoch")
        reason = reason_of(_text(stale), _text(epoch),
                           await self.durable.redis_epoch(self.names.tenant), has_ledger)
        if has_ledger:  # others may still hold ledger entries: give them time to write
            await asyncio.sleep(self.rebuild_grace_s)
            await self.wal.flush()
        await wipe(self.redis, self.names, self.durable)
        policies = await self.durable.list_policies()
        new_epoch = secrets.token_hex(8)
        await self.durable.set_redis_epoch(self.names.tenant, new_epoch)
        now = (self._clock() if self._clock is not None
               else int(await self._now_script(keys=[self.names.meta], args=[""])))
        # one snapshot of the ledger: the counters' spent and reserved agree with the calls
        # put back in flight, whatever ledger entries other workers write meanwhile (read
        # one after the other, a reservation landing between the two would be held by its
        # call yet missing from its counters: admitted past the cap, then reserved < 0)
        async with self.durable.snapshot():
            version = await rebuild(self.redis, self.names, self.durable, policies, now,
                                    self.lease_ms, new_epoch,
                                    clock_given=self._clock is not None)
        took = (time.monotonic() - started) * 1000
        if reason is None:
            log.info("set up the Redis state of %s (a new installation)", self.names.tenant)
        else:
            log.warning("rebuilt the Redis state of %s from the PostgreSQL ledger in %.0f ms, "
                        "admitting nothing meanwhile: %s", self.names.tenant, took, reason)
        self._policies, self._keys, self._version = policies, {}, version
        self._reading = SharedReads()  # reads from before the rebuild are not joined
