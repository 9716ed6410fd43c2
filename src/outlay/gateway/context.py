"""What the request path needs, built once per worker and passed explicitly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from outlay.gateway.background import Background
from outlay.gateway.holds import Holds
from outlay.gateway.keycheck import KeyCheck
from outlay.gateway.metrics import Metrics, Snapshots
from outlay.gateway.outages import Throttled
from outlay.gateway.pacing import Pacing
from outlay.gateway.queue import RateQueue
from outlay.gateway.stop import Stop
from outlay.gateway.vendor_headers import VendorHeaders
from outlay.pricing.table import PriceTable
from outlay.settings import Settings
from outlay.state.base import StateStore
from outlay.telemetry.export import Exporter
from outlay.upstream.base import Upstream
from outlay.upstream.providers import Providers
from outlay.vendors import VendorPricing


@dataclass
class Flight:
    """An LLM call in flight: when its key expires, its reservation, and when that
    reservation's lease last began."""

    expires_ms: int | None
    reservation_id: str
    leased_ms: int


@dataclass
class Streams:
    """LLM calls in flight, by key id, so a revoked or expired key's streams can be cut, and
    a long one's reservation kept held while it lasts."""

    by_key: dict[str, dict[asyncio.Task[object], Flight]] = field(default_factory=dict)

    def add(self, key_id: str, task: asyncio.Task[object], flight: Flight) -> None:
        self.by_key.setdefault(key_id, {})[task] = flight

    def due(self, now_ms: int, lease_ms: int) -> list[str]:
        """The reservations of calls still running past half their lease, marked as leased
        anew from now (their lease is about to be renewed)."""
        ids = []
        for tasks in self.by_key.values():
            for task, flight in tasks.items():
                if now_ms - flight.leased_ms >= lease_ms // 2 and not task.done():
                    flight.leased_ms = now_ms
                    ids.append(flight.reservation_id)
        return ids

    def remove(self, key_id: str, task: asyncio.Task[object]) -> None:
        tasks = self.by_key.get(key_id)
        if tasks is not None:
            tasks.pop(task, None)
            if not tasks:
                del self.by_key[key_id]

    def cut(self, key_id: str) -> int:
        tasks = self.by_key.pop(key_id, {})
        for task in tasks:
            task.cancel()
        return len(tasks)

    def cut_expired(self, now_ms: int) -> int:
        cut = 0
        for key_id in list(self.by_key):
            tasks = self.by_key[key_id]
            expiring = [t for t, f in tasks.items()
                        if f.expires_ms is not None and f.expires_ms <= now_ms]
            for task in expiring:
                task.cancel()
                self.remove(key_id, task)
                cut += 1
        return cut


@dataclass
class Gateway:
    settings: Settings
    store: StateStore
    upstream: Upstream
    prices: PriceTable
    clock: Callable[[], int]
    vendors: Upstream
    vendor_pricing: Mapping[str, VendorPricing]
    # a fingerprint of each configured vendor's credential: its account (gateway/wiring.py)
    vendor_accounts: Mapping[str, str] = field(default_factory=dict)
    # which request headers each vendor is sent, and whether it takes any connected account
    vendor_headers: Mapping[str, VendorHeaders] = field(default_factory=dict)
    streams: Streams = field(default_factory=Streams)
    outages: Throttled = field(default_factory=Throttled)  # 503s of an unreachable store
    metrics: Metrics = field(default_factory=Metrics)
    holds: Holds = field(default_factory=Holds)  # calls waiting for calls in flight to settle
    telemetry: Exporter | None = None  # each call's span, to the OTLP collector (None: off)
    # where the workers of one server leave their counts for each other (None: one worker)
    snapshots: Snapshots | None = None
    # the worker's loop, set when the app starts: asyncio.current_task(loop) is a dict
    # lookup, while finding the running loop costs a getpid() per call on Python 3.11
    loop: asyncio.AbstractEventLoop | None = None
    # tests only (OUTLAY_TEST_PAUSE_BEFORE_FORWARD_S): a pause between a call's decision and
    # its sending, for the fault suite to kill a replica there; 0 everywhere else
    pause_before_forward_s: float = 0.0
    stop: Stop = field(default_factory=Stop)  # the worker's stop, under one deadline
    # derived once from the price table: the request path reads them on every call
    aliases: dict[str, str] = field(init=False)
    # label values: a vendor path outside the configuration must not become a series
    known_vendors: frozenset[str] = field(init=False)
    routing: Providers = field(init=False)  # which provider serves a request's model
    free_models: tuple[str, ...] = field(init=False)
    keys: KeyCheck = field(init=False)  # a request's key, judged before its body is read
    background: Background = field(init=False)  # background responses held until finished
    queue: RateQueue = field(init=False)  # calls waiting for room (on_rate_limit: queue)
    pacing: Pacing = field(init=False)  # the endpoints a provider's calls may go to

    def vendor_label(self, vendor: str) -> str:
        """The vendor as metrics name it: a path outside the configuration is "unknown"."""
        return vendor if vendor in self.known_vendors else "unknown"

    def __post_init__(self) -> None:
        self.keys = KeyCheck(self.store)
        self.queue = RateQueue(self.settings.queue_max_waiting)
        self.metrics.queue_depth = lambda: self.queue.depth
        self.pacing = Pacing(self.settings)
        self.metrics.retries = self.store.settlement_retries
        if self.telemetry is not None:
            self.metrics.spans = self.telemetry.counts
        self.routing = self.settings.routing
        self.known_vendors = frozenset({*self.routing.specs, *self.vendor_pricing})
        self.aliases = self.prices.aliases()
        self.background = Background(
            self.upstream, self.clock,
            None if self.snapshots is None else self.snapshots.directory)
        self.free_models = tuple(
            name for name in self.prices.names()
            if (price := self.prices.resolve(name)) is not None and price.free
        )


GATEWAY = web.AppKey("gateway", Gateway)
