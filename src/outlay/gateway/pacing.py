"""Which endpoints of a provider a call may be sent to, in the order to try them, each with
the limits of its upstream key (`providers.<name>.endpoints[].limits`), for the store to
admit the call on the first with room (policy/pacing.py); and the pause an upstream 429
with Retry-After puts on its endpoint, kept in the state so every worker and replica
learns it."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

from outlay.policy.model import Policy
from outlay.policy.pacing import Slot, endpoint_scope
from outlay.retry_after import parse_retry_after
from outlay.settings import Settings
from outlay.state.base import Reservation, StateError, StateStore
from outlay.upstream.base import UpstreamResponse
from outlay.upstream.routing import weighted_order

log = logging.getLogger("outlay.gateway")

MAX_PAUSE_S = 3600.0  # a Retry-After longer than this pauses the endpoint this long


class Pacing:
    """The endpoints of every provider served by real endpoints (not the simulator)."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._slots: dict[str, tuple[tuple[Slot, ...], tuple[int, ...]]] = {}
        simulated = settings.simulate if not settings.simulated else set(settings.providers)
        for provider, endpoints in settings.providers.items():
            if provider in simulated:
                continue
            self._slots[provider] = (
                tuple(Slot(endpoint_scope(provider, i), e.limits or Policy())
                      for i, e in enumerate(endpoints)),
                tuple(e.weight for e in endpoints))

    def slots(self, provider: str) -> tuple[Slot, ...]:
        """The provider's endpoints in the order one call tries them (weighted, random)."""
        found = self._slots.get(provider)
        if found is None:
            return ()
        slots, weights = found
        if len(slots) == 1:
            return slots
        return tuple(weighted_order(slots, weights, self._rng))


async def paused(store: StateStore, now_ms: int, reservation: Reservation,
                 answer: UpstreamResponse) -> bool:
    """An endpoint's 429 with a Retry-After pauses it, for every worker and replica: True
    when it did (the call may then be tried once on another endpoint, or queued)."""
    until = pause_until(answer.headers, now_ms)
    if reservation.endpoint is None or until is None:
        return False
    try:
        await store.pause_endpoint(reservation.endpoint, until)
    except StateError as exc:
        log.warning("could not pause %s after its 429: %s", reservation.endpoint, exc)
        return False
    return True


def pause_until(headers: Mapping[str, str], now_ms: int) -> int | None:
    """Until when (ms) an endpoint that answered 429 with this Retry-After is paused."""
    wait = parse_retry_after(headers.get("Retry-After"), now_ms / 1000)
    if wait is None or wait <= 0:
        return None
    return now_ms + int(min(wait, MAX_PAUSE_S) * 1000)
