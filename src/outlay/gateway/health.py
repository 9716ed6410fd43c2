"""Provider health as webhook events: a circuit breaker opening is `provider.unhealthy`,
closing again after a successful probe is `provider.recovered`."""

from __future__ import annotations

import asyncio
import logging

from outlay.state.base import StateStore
from outlay.upstream.breaker import BreakerState
from outlay.upstream.http import Endpoint
from outlay.webhooks.outbox import WebhookStore

log = logging.getLogger("outlay")

_EVENTS = {BreakerState.OPEN: "provider.unhealthy", BreakerState.CLOSED: "provider.recovered"}


class HealthEvents:
    """The breakers' listener. Each change is announced once, in the background: a breaker
    changes state inside a call, which must not wait for the outbox."""

    def __init__(self) -> None:
        self.store: StateStore | None = None
        self._pending: set[asyncio.Task[object]] = set()

    def __call__(self, provider: str, endpoint: Endpoint, state: BreakerState) -> None:
        event = _EVENTS.get(state)  # half-open is a probe, not news
        store = self.store
        if event is None or not isinstance(store, WebhookStore):
            return
        data = {"provider": provider, "base_url": endpoint.base_url, "state": state.value}
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
            store.emit(event, data))
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not record a provider health event: %s", task.exception())

    async def drain(self) -> None:
        """Wait for the events still being written (at shutdown, and in tests)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
