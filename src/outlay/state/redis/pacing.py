"""The Redis store's provider endpoints (policy/pacing.py): a call is decided with the first
endpoint it may go to, that endpoint's limits and pause checked by the same reservation
script as every scope's; an endpoint without room is passed over for the next, and when
none has room the call is refused (or queued) with provider_rate_limited. An upstream 429's
pause is a key with the end of the pause, which every worker and replica reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from outlay.policy.decision import Admit, ApprovalNeed, Event, Grant, KeyInfo, ScopeView
from outlay.policy.errors import OutlayError, RateHeld
from outlay.policy.model import Policy
from outlay.policy.pacing import Slot, held, provider_full
from outlay.state.base import Reservation, StateError, Ticket
from outlay.state.exposure import ExposureClaim
from outlay.state.redis.plan import Names

if TYPE_CHECKING:
    from redis.asyncio import Redis

Tags = tuple[list[tuple[str, str]], Mapping[str, Policy], Mapping[str, str]]


class Retry(Exception):
    """The decision must be made again: stale caches, a rebuilt state, or a replay."""


class EndpointFull(Exception):
    """The endpoint a call was decided with has no room (nothing was written): why, and in
    how many seconds it may."""

    def __init__(self, scope: str, why: tuple[str, int]) -> None:
        super().__init__(scope)
        self.scope, self.why = scope, why


class Admitted:
    __slots__ = ("approved", "value")

    def __init__(self, value: Reservation, approved: bool) -> None:
        self.value, self.approved = value, approved  # approved: the call used its approval


class RedisPacing:
    if TYPE_CHECKING:
        names: Names

        @property
        def redis(self) -> Redis: ...

        def clock(self) -> int: ...

        async def _decide(
            self, ticket: Ticket, key: KeyInfo, scopes: tuple[str, ...],
            policies: Mapping[str, Policy], now: int, grant: Grant | None,
            claim: ExposureClaim | None = None, tags: Tags = ([], {}, {}),
            slot: Slot | None = None) -> Admitted: ...

        async def _refused(
            self, ticket: Ticket, key: KeyInfo | None, now: int, error: OutlayError | None,
            scope: str | None, events: list[Event], approval: ApprovalNeed | None = None,
        ) -> None: ...

    async def _paced(
        self, ticket: Ticket, key: KeyInfo, scopes: tuple[str, ...],
        policies: Mapping[str, Policy], now: int, grant: Grant | None,
        claim: ExposureClaim | None, tags: Tags,
    ) -> Admitted:
        if not ticket.endpoints:
            return await self._decide(ticket, key, scopes, policies, now, grant, claim, tags)
        full: list[tuple[str, tuple[str, int]]] = []
        for slot in ticket.endpoints:
            try:
                return await self._decide(ticket, key, scopes, policies, now, grant, claim,
                                          tags, slot)
            except EndpointFull as endpoint:
                full.append((endpoint.scope, endpoint.why))
        refusal = provider_full(full)
        queued = held(refusal, [ScopeView(s, policies.get(s)) for s in scopes],
                      ticket.may_queue)
        if not isinstance(queued, Admit) and queued.queue_s is not None:
            raise RateHeld(refusal.error, queued.queue_s, refusal.scope, key.agent)
        await self._refused(ticket, key, now, refusal.error, refusal.scope, [])
        raise refusal.error  # _refused raised it already

    async def pause_endpoint(self, scope: str, until_ms: int) -> None:
        key = self.names.pause(scope)
        try:
            kept: Any = await self.redis.get(key)
            if kept is None or int(kept) < until_ms:
                # kept a little past its end, so a clock behind the server's still reads it
                await self.redis.set(key, str(until_ms),
                                     px=max(1, until_ms - self.clock()) + 60_000)
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
