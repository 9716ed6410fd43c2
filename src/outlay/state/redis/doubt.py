"""Calls whose decision was lost in transit, and what an outage leaves to put right.

A reservation script sent to a Redis that then stops answering (paused, overloaded, the
connection reset) may still run after the caller was answered 503: it would hold money for
a call that was never made. So the caller's request id is kept as in doubt; the ledger
records the call as refused 503 `enforcement_unavailable` at once (through the worker's
write-ahead memory, as any refusal), and as soon as Redis answers again the reservation is
voided (`lua/void.lua`, then a void settlement if the script ran): never charged. A
reservation held in Redis whose ledger row is already final is voided by the reaper too,
should the worker die before it could (see liveness.py).

Settlements whose answer was lost are applied again (settle.lua applies each once), and the
worker's own ledger stream is then written to PostgreSQL, for the entries of scripts that
ran but whose answers never came back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from outlay.policy.decision import KeyInfo
from outlay.state.base import Outcome, StateError, Ticket
from outlay.state.redis.plan import Names
from outlay.state.redis.wal import Ledger, entries_of, ledger_row

if TYPE_CHECKING:
    from outlay.state.postgres.durable import PostgresDurable
    from outlay.state.redis.wal import Wal
    from outlay.state.retries import SettlementRetries

log = logging.getLogger("outlay.state")
# how long a void marker waits for a reservation script still in a paused Redis's buffer
VOID_MARK_MS = 86_400_000
UNAVAILABLE = "enforcement_unavailable"


def doubtful_row(ticket: Ticket, key: KeyInfo | None, now: int, worker: str
                 ) -> dict[str, Any]:
    """The ledger row of a call answered 503 because its decision was lost."""
    return ledger_row(ticket, key, now, worker, decision="refused", code=UNAVAILABLE,
                      scope=None, status=503, reserved=0, settlement="none")


async def write_own_stream(redis: Redis, stream: str, ledger: Ledger) -> int:
    """Write a live worker's stream to PostgreSQL (idempotently) and delete exactly the
    entries written: the worker keeps appending meanwhile. Returns the entries written."""
    written = 0
    after = "-"
    while True:
        rows: list[tuple[str, Mapping[str, str]]] = await redis.xrange(  # type: ignore[assignment]
            stream, min=after, count=1000)
        if not rows:
            return written
        await ledger.apply_wal([e for _, fields in rows for e in entries_of(fields)])
        await redis.xdel(stream, *(sid for sid, _ in rows))
        written += len(rows)
        after = "(" + rows[-1][0]


class RedisDoubts:
    if TYPE_CHECKING:
        names: Names
        worker: str
        durable: PostgresDurable
        clock: Callable[[], int]
        _doubtful: dict[str, None]
        _retries: SettlementRetries
        _void_script: Any
        _voiding: asyncio.Task[None] | None

        @property
        def redis(self) -> Redis: ...

        @property
        def wal(self) -> Wal: ...

        def _call(self, script: Any, keys: list[str], args: list[Any]) -> Awaitable[Any]: ...

        async def settle(self, outcome: Outcome) -> bool: ...


    def _in_doubt(self, ticket: Ticket, key: KeyInfo | None, now: int) -> None:
        """The reservation script of `ticket` may have run, though its answer never came."""
        self._doubtful[ticket.request_id] = None
        row = doubtful_row(ticket, key, now, self.worker)
        self.wal.add(None, {"k": "j", "e": orjson.dumps([{"t": "row", "row": row}]).decode()})

    def _void_soon(self) -> None:
        """Void what is in doubt in the background, now that Redis answered a script."""
        if self._doubtful and (self._voiding is None or self._voiding.done()):
            self._voiding = asyncio.ensure_future(self._void_quietly())

    async def _void_quietly(self) -> None:
        try:
            await self._void_doubtful()
        except StateError:
            pass  # kept: the next heartbeat tries again
        except Exception:  # a bug must not be lost in a background task
            log.exception("voiding reservations in doubt failed")

    async def _void_doubtful(self) -> None:
        """Void every reservation in doubt; idempotent, so a lost answer is only retried."""
        for request_id in list(self._doubtful):
            key = self.names.reservation(request_id)
            # twice at most: the second time the reservation is settled and the marker stays
            for _ in range(2):
                if not int(await self._call(self._void_script, [key], [VOID_MARK_MS])):
                    break
                await self.settle(Outcome(request_id, 503, settled="void"))
            self._doubtful.pop(request_id, None)

    async def _after_outage(self) -> None:
        """Put right what calls that met an unanswering Redis left: void those in doubt,
        apply the settlements kept, then write this worker's stream to PostgreSQL (the
        entries of scripts that ran though their answers were lost)."""
        if not (self._doubtful or self._retries.counts().waiting):
            return
        await self._void_doubtful()
        await self._retries.retry_now()
        if not self._retries.counts().waiting:
            try:
                await write_own_stream(self.redis, self.names.wal(self.worker), self.durable)
            except RedisError as exc:
                raise StateError(f"Redis unavailable: {exc}") from exc
