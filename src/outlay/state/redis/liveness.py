"""Who is alive, measured on the store's own clock of the time it was alive.

Every worker's heartbeat (`lua/beat.lua`, every second) records it in the workers set at
the store's time: Redis's TIME less the time no heartbeat of any worker reached the store
(beyond PAUSE_AFTER_MS between two of them: Redis paused, or unreachable from every
replica). Leases are kept on the same clock. So a Redis stopped for ten seconds ages no
heartbeat and no lease by ten seconds: the reaper, whose turn comes right after its own
heartbeat, declares a worker dead only when that worker's own heartbeats have stopped
reaching a store that others reached for HEARTBEAT_STALE_MS.

The reaper writes a dead worker's ledger stream to PostgreSQL, then settles what it held:
charged in full (the call may have been served), unless the ledger already has the call's
final row (then its decision never reached the worker, which answered 503) or its worker
never marked it forwarded (`lua/forward.lua`: it died before sending it): then it is
voided. A worker declared dead that was not (its heartbeats could not get through) learns
it at its next heartbeat; its own settlements of what was reaped find nothing to apply.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from outlay.state.base import Outcome, Reaped, StateError
from outlay.state.redis.plan import Names
from outlay.state.redis.wal import drain

if TYPE_CHECKING:
    from outlay.state.postgres.durable import PostgresDurable

log = logging.getLogger("outlay.state")
HEARTBEAT_STALE_MS = 5_000
PAUSE_AFTER_MS = 2_000
REAPED_KEPT_MS = 86_400_000  # how long a reaped worker's name waits for it to come back


def worker_name() -> str:
    """This process's name in the shared state, saying which host and process it is, so
    that the reaper's logs and metrics name the replica they reaped."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"w_{host}_{os.getpid()}_{secrets.token_hex(4)}"


class RedisLiveness:
    if TYPE_CHECKING:
        names: Names
        worker: str
        durable: PostgresDurable
        lease_ms: int
        pause_after_ms: int
        _clock: Callable[[], int] | None
        _beat_script: Any
        _now_script: Any
        _renew_script: Any

        @property
        def redis(self) -> Redis: ...

        def clock(self) -> int: ...

        async def _applied(self, outcome: Outcome, *, keep: bool = True,
                           reaped: bool = False) -> str | None: ...

        async def _ensure_ready(self, *, wait: bool = True) -> None: ...

        async def _after_outage(self) -> None: ...

    def _given_now(self) -> str:
        """The scripts' time argument: '' for Redis's TIME, or the clock the store was given."""
        return "" if self._clock is None else str(self._clock())

    async def heartbeat(self) -> None:
        """This worker lives; then, the state being ready (else rebuilt, or StateError while
        another worker rebuilds it), what an outage left is put right."""
        try:
            ready, _, reaped = await self._beat_script(
                keys=[self.names.meta, self.names.workers, self.names.reaped],
                args=[self._given_now(), self.worker, self.pause_after_ms])
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        if int(reaped):
            log.warning("this worker (%s) was declared dead: its heartbeats did not reach "
                        "Redis for %d s while others' did, and the reservations it held were "
                        "charged in full by another worker; its own settlements of them are "
                        "not applied again", self.worker, HEARTBEAT_STALE_MS // 1000)
        if not int(ready):
            await self._ensure_ready(wait=False)
        await self._after_outage()

    async def renew(self, reservation_ids: list[str]) -> int:
        if not reservation_ids:
            return 0
        members = [f"{self.worker} {rid}" for rid in reservation_ids]
        try:
            renewed = await self._renew_script(
                [self.names.leases, self.names.meta],
                [self._given_now(), self.lease_ms, *members])
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        return int(renewed)

    async def reap(self) -> list[Reaped]:
        """Settle the reservations whose lease ran out or whose worker died, after writing
        a dead worker's ledger stream to PostgreSQL."""
        names = self.names
        try:
            now = int(await self._now_script(keys=[names.meta], args=[self._given_now()]))
            workers: dict[str, float] = dict(
                await self.redis.zrange(names.workers, 0, -1, withscores=True))  # type: ignore[arg-type]
            held: list[tuple[str, float]] = await self.redis.zrange(
                names.leases, 0, -1, withscores=True)  # type: ignore[assignment]
            dead = [w for w, beat in workers.items() if beat < now - HEARTBEAT_STALE_MS]
            for worker in dead:
                await drain(self.redis, names.wal(worker), self.durable)
                await self.redis.zrem(names.workers, worker)
                await self.redis.zadd(names.reaped, {worker: now})
            if dead:
                await self.redis.zremrangebyscore(names.reaped, "-inf", now - REAPED_KEPT_MS)
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        live = {w for w in workers if w not in dead}
        due = []
        for member, lease in held:
            worker, _, request_id = member.partition(" ")
            if lease <= now or worker not in live:
                due.append((worker, request_id))
        if not due:
            return []
        answered = await self.durable.answered_among([rid for _, rid in due])
        reaped: dict[str, Reaped] = {}
        for worker, request_id in due:
            amount = await self._amount_held(request_id)
            void_now = request_id in answered
            outcome = (Outcome(request_id, 503, settled="void") if void_now
                       else Outcome(request_id, 0, settled="unsettled"))
            # never kept to apply later: judged on this state, it may be wrong on the next
            # (a rebuilt one, whose worker is heard from again); the next turn judges again
            applied = await self._applied(outcome, keep=False, reaped=not void_now)
            if applied is None:
                continue  # settled meanwhile by its worker, or the state is being rebuilt
            void = applied == "void"  # answered 503, or never forwarded
            was = reaped.get(worker, Reaped(worker))
            reaped[worker] = (Reaped(worker, was.charged, was.micros, was.voided + 1) if void
                              else Reaped(worker, was.charged + 1, was.micros + amount,
                                          was.voided))
        return list(reaped.values())

    async def _amount_held(self, request_id: str) -> int:
        try:
            text = await self.redis.hget(self.names.reservation(request_id), "rec")
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        return int(orjson.loads(text)["amount"]) if text else 0
