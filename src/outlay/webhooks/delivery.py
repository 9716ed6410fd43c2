"""The delivery worker: leases due deliveries from the outbox, POSTs each, signed, to its
endpoint, and records every attempt. It runs as one background task per gateway worker,
beside the request path and never on it: requests only write events into the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from outlay import __version__
from outlay.retry_after import parse_retry_after
from outlay.settings import Settings
from outlay.webhooks.backoff import DAY_S, Backoff
from outlay.webhooks.outbox import DeliveryJob, FinalState, WebhookStore
from outlay.webhooks.signing import headers as signed_headers

log = logging.getLogger("outlay.webhooks")

USER_AGENT = f"Outlay-Webhooks/{__version__}"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class DeliverySettings:
    poll_s: float = 0.5  # how often to look for due deliveries when not poked
    concurrency: int = 8  # sends in flight at once, per worker
    timeout_s: float = 10.0  # per attempt, connect to last byte
    lease_s: float = 30.0  # a claim outlives the attempt's timeout by far
    shutdown_grace_s: float = 2.0  # sends in flight may finish this long when stopping
    retention_s: float = 30 * DAY_S  # finished deliveries are kept this long, then pruned
    prune_every_s: float = 3600.0
    backoff: Backoff = field(default_factory=Backoff)


def delivery_settings(settings: Settings) -> DeliverySettings:
    """Delivery as the configuration's `webhooks:` section asks."""
    return DeliverySettings(
        concurrency=settings.webhook_concurrency,
        timeout_s=settings.webhook_timeout_s,
        # a claim must outlive the attempt it covers, or another worker sends it again
        lease_s=max(30.0, 3 * settings.webhook_timeout_s),
        retention_s=settings.webhook_retention_days * DAY_S,
        backoff=Backoff(horizon_s=settings.webhook_retry_hours * 3600.0),
    )


class Deliverer:
    """Sends the outbox. Every attempt is recorded; 2xx is delivered, 410 disables the
    endpoint, anything else is retried on the backoff schedule until its horizon."""

    def __init__(
        self, store: WebhookStore, settings: DeliverySettings | None = None, *,
        clock: Callable[[], int] = _wall_ms, rng: random.Random | None = None,
        signing_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or DeliverySettings()
        self.clock = clock  # ms, the store's time: schedules retries
        # webhook-timestamp is checked by receivers against their own clock: always real time
        self.signing_clock = signing_clock
        self.rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._pruned_ms: int | None = None

    def poke(self) -> None:
        """Look for due deliveries now (after a transaction that enqueued events)."""
        if self._wake is not None:
            self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
            headers={"User-Agent": USER_AGENT},
        )
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="outlay-webhook-delivery")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sending:
            # what is cut off here keeps its lease until it runs out, then is sent again
            _, late = await asyncio.wait(set(self._sending),
                                         timeout=self.settings.shutdown_grace_s)
            for send in late:
                send.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._wake = None

    async def _run(self) -> None:
        assert self._wake is not None
        me = asyncio.current_task()
        while me is None or not me.cancelling():  # a store driver may swallow a stop
            self._wake.clear()
            free = self.settings.concurrency - len(self._sending)
            claimed = await self._claim(free) if free > 0 else 0
            if free == 0 or claimed < free:
                await self._prune()
                # not wait_for: on 3.11 it swallows a stop() that lands in the turn a
                # poke wakes it, and the worker would then run on forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_s):
                        await self._wake.wait()

    async def _claim(self, limit: int) -> int:
        try:
            jobs = await self.store.claim_deliveries(
                limit, round(self.settings.lease_s * 1000))
        except Exception:  # the worker outlives a state store that is down for a while
            log.exception("cannot claim webhook deliveries")
            return 0
        for job in jobs:
            send = asyncio.create_task(self.deliver(job))
            self._sending.add(send)
            send.add_done_callback(self._sent)
        return len(jobs)

    def _sent(self, send: asyncio.Task[None]) -> None:
        self._sending.discard(send)
        if self._wake is not None:
            self._wake.set()  # a slot is free

    async def _prune(self) -> None:
        now = self.clock()
        if self._pruned_ms is not None and (
                now - self._pruned_ms < self.settings.prune_every_s * 1000):
            return
        self._pruned_ms = now
        try:
            await self.store.prune_deliveries(now - round(self.settings.retention_s * 1000))
        except Exception:
            log.exception("cannot prune old webhook deliveries")

    async def deliver(self, job: DeliveryJob) -> None:
        """Make one attempt and record it, with what follows from it."""
        session = self._session
        if session is None:
            raise RuntimeError("the deliverer is not started")
        status: int | None = None
        error: str | None = None
        retry_after: str | None = None
        started = time.monotonic()
        signed = signed_headers(job.secrets, job.event_id, int(self.signing_clock()), job.body)
        try:
            async with session.post(
                job.url, data=job.body, allow_redirects=False,
                headers={**signed, "Content-Type": "application/json"},
            ) as response:
                status = response.status
                if not 200 <= status < 300:
                    error = f"HTTP {status} {response.reason or ''}".rstrip()
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            error = f"no answer within {self.settings.timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_ms = round((time.monotonic() - started) * 1000)
        final, next_ms = self._outcome(job, status, retry_after)
        if final == "disabled":
            log.warning("webhook endpoint %s answered 410 Gone: disabled", job.endpoint_id)
        elif final == "failed":
            log.warning("gave up delivering %s to %s after %d attempts (%s)", job.event_id,
                        job.endpoint_id, job.attempts + 1, error)
        try:
            await self.store.record_attempt(job, status, error, duration_ms, next_ms, final)
        except Exception:  # its lease runs out and it is sent again
            log.exception("cannot record a webhook attempt for %s", job.event_id)

    def _outcome(
        self, job: DeliveryJob, status: int | None, retry_after: str | None
    ) -> tuple[FinalState | None, int | None]:
        if status is not None and 200 <= status < 300:
            return "delivered", None
        if status == 410:
            return "disabled", None
        now = self.clock()
        next_ms = self.settings.backoff.next_attempt_ms(
            job.attempts + 1, now, job.created_ms, self.rng,
            parse_retry_after(retry_after, now / 1000))
        return ("failed", None) if next_ms is None else (None, next_ms)


DELIVERER = web.AppKey("webhook_deliverer", Deliverer)


# how the app's stop runs a step of its own: a name and the work, bounded (gateway/stop.py)
StopStep = Callable[[str, Awaitable[object]], Awaitable[object]]


def attach_deliverer(
    app: web.Application, store: object, clock: Callable[[], int],
    settings: DeliverySettings | None = None, step: StopStep | None = None,
) -> Deliverer | None:
    """Give the app a Deliverer over `store`, started and stopped with the app (after the
    store opens, before it closes: call this after the cleanup context that opens it), its
    stop a `step` of the app's when given. A store that keeps no outbox gets none."""
    if not isinstance(store, WebhookStore):
        return None
    deliverer = Deliverer(store, settings, clock=clock)
    app[DELIVERER] = deliverer

    async def run(_: web.Application) -> AsyncIterator[None]:
        await deliverer.start()
        yield
        if step is None:
            await deliverer.stop()
        else:
            await step("webhook deliveries", deliverer.stop())

    app.cleanup_ctx.append(run)
    return deliverer


def poke(app: web.Application) -> None:
    """Wake the app's deliverer, if it has one: events were just enqueued."""
    deliverer = app.get(DELIVERER)
    if deliverer is not None:
        deliverer.poke()
