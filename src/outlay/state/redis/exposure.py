"""The Redis store's vendor objects counted by exposure (state.exposure): a hash per object,
and a link from each call in flight to its object, changed by the reservation and settlement
scripts themselves (`lua/exposure_reserve.lua` and `lua/exposure_settle.lua` wrap
`reserve.lua` and `settle.lua`), so counting a call on its object is part of the same
atomic step as its decision and its settlement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from outlay.state.base import Outcome, Reservation, StateError, Ticket
from outlay.state.exposure import ExposureClaim, ExposureReport, ObjectRecord
from outlay.state.redis.plan import Names
from outlay.state.redis.scripts import script_text

if TYPE_CHECKING:
    from outlay.state.redis.wal import Wal
    from outlay.state.retries import SettlementRetries

_EXTRAS = "__x"  # where the object's part of a settlement's reply begins


def exposure_scripts() -> tuple[str, str]:
    """The reservation and settlement scripts, each wrapping the plain one, so every
    settlement (the reaper's too) finds a call's object through its link."""
    return script_text("exposure_reserve.lua"), script_text("exposure_settle.lua")


def object_key(names: Names, vendor: str, object_id: str) -> str:
    return f"{names.prefix}o:{vendor}:{object_id}"


class RedisExposure:
    if TYPE_CHECKING:
        names: Names
        _exposure_reserve: Any
        _settle_script: Any
        _retries: SettlementRetries

        @property
        def redis(self) -> Redis: ...

        @property
        def wal(self) -> Wal: ...

        def _call(self, script: Any, keys: list[str], args: list[Any]) -> Awaitable[Any]: ...

        async def _reserving(self, ticket: Ticket, claim: ExposureClaim | None
                             ) -> Reservation: ...

        def _settle_call(self, outcome: Outcome) -> tuple[list[str], list[Any]]: ...

        def _after_settle(self, outcome: Outcome, result: Any) -> tuple[str | None, list[Any]]:
            ...

        async def _announce(self, events: Any, now: int) -> None: ...

        clock: Callable[[], int]

    async def vendor_object(self, vendor: str, object_id: str) -> ObjectRecord | None:
        try:
            version, held, inflight, state = await self.redis.hmget(
                object_key(self.names, vendor, object_id), ["version", "held", "inflight",
                                                           "state"])
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        if version is None:
            return None
        return ObjectRecord(int(version), int(held or 0), int(inflight or 0),
                            None if state is None else str(state))

    async def reserve_exposure(self, ticket: Ticket, claim: ExposureClaim) -> Reservation:
        return await self._reserving(ticket, claim)

    def _claimed(self, ticket: Ticket, claim: ExposureClaim, keys: list[str],
                 args: list[Any]) -> tuple[Any, list[str], list[Any]]:
        """The reservation script's call with the object's part added."""
        names = self.names
        if claim.object_id is None:  # a create: its answer names the object
            record, link = names.meta, "c:" + object_key(names, claim.vendor, "")
        else:
            record = object_key(names, claim.vendor, claim.object_id)
            link = "o:" + record
        return (self._exposure_reserve,
                [*keys, record, f"{names.prefix}ol:{ticket.request_id}"],
                [*args, "" if claim.object_id is None else claim.version, claim.state or "",
                 link])

    async def settle_exposure(self, outcome: Outcome, report: ExposureReport | None
                              ) -> int | None:
        keys, args = self._settle_call(outcome)
        if report is not None:
            args += ["" if report.exposure is None else report.exposure, report.state or "",
                     report.object_id or ""]
        try:
            result = await self._call(self._settle_script, keys, args)
        except StateError:
            self._retries.keep(outcome)  # settled plainly when Redis is back
            raise
        result, given = self.exposure_extras(result)
        settled, events = self._after_settle(outcome, result)
        if events:
            await self._announce(events, self.clock())
        return given if settled is not None else None

    def exposure_extras(self, result: Any) -> tuple[Any, int]:
        """A settlement's reply without the object's part; the give-backs' ledger rows
        kept for PostgreSQL, and their total."""
        if not isinstance(result, list) or _EXTRAS not in result:
            return result, 0
        at = result.index(_EXTRAS)
        entry, text, given = result[at + 1:at + 4]
        if text:
            self.wal.add(entry or None, {"k": "j", "e": text})
        return result[:at], int(given)

