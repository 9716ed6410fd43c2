"""A mock Stripe/Twilio/Resend on loopback that counts what reaches it, and a real `outlay serve`
whose `vendors:` section points at it with the gateway's own (fake) credentials.

The mock runs an aiohttp server on a thread of its own, so tests may drive it with the
official SDKs' blocking clients as well as with asyncio. It answers through SimulatedVendors,
so each SDK parses vendor-shaped replies, and records every request byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from aiohttp import web

from outlay.simulator.vendors import FAULT_HEADER, SimulatedVendors
from outlay.upstream import UpstreamRequest
from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer

from ..harness import Gateway
from ..replicas import Replica

STRIPE_SECRET = "sk_test_gateway"
TWILIO_SID = "ACgateway" + "0" * 25  # 34 characters, like a real account SID
TWILIO_TOKEN = "tok_gateway_twilio"
RESEND_KEY = "re_gateway"
START_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 200

_RUNNING: pytest.StashKey[list[Gateway]] = pytest.StashKey()


@dataclass(frozen=True)
class Received:
    """One request as it reached the mock vendor."""

    vendor: str
    method: str
    path: str  # vendor-relative, as sent (still %-encoded)
    query: str  # as sent (still %-encoded)
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def basic_auth(self) -> tuple[str, str]:
        scheme, _, value = (self.authorization or "").partition(" ")
        assert scheme.lower() == "basic", self.authorization
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password


class MockVendors:
    """Stripe at `{url}/stripe`, Twilio at `{url}/twilio`, Resend at `{url}/resend`."""

    def __init__(self) -> None:
        self.sim = SimulatedVendors()
        # set by a test that needs calls in flight together; read on the server's thread
        self.delay_s = 0.0
        self.fault: str | None = None  # answer every request with this simulated fault
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, vendor: str) -> str:
        return f"{self.url}/{vendor}"

    # -- what arrived -------------------------------------------------------------------
    def mark(self) -> int:
        """A position in the log; `since(mark)` lists what arrived after it."""
        with self._lock:
            return len(self._received)

    def since(self, mark: int, vendor: str | None = None) -> list[Received]:
        with self._lock:
            calls = self._received[mark:]
        return [c for c in calls if vendor is None or c.vendor == vendor]

    @contextlib.contextmanager
    def slow(self, delay_s: float) -> Iterator[None]:
        """Answer every request `delay_s` late, so that calls overlap at the gateway."""
        self.delay_s = delay_s
        try:
            yield
        finally:
            self.delay_s = 0.0

    @contextlib.contextmanager
    def faulty(self, fault: str) -> Iterator[None]:
        """Answer every request with a simulated fault (`Outlay-Sim-Fault`), e.g. error-503."""
        self.fault = fault
        try:
            yield
        finally:
            self.fault = None

    def creations(self, mark: int, vendor: str, path: str) -> list[Received]:
        """POSTs to `path` (or, for Twilio, any path ending in it) after `mark`."""
        return [c for c in self.since(mark, vendor)
                if c.method == "POST" and (c.path == path or c.path.endswith(path))]

    def made_elsewhere(self, path: str, **form: str) -> dict[str, Any]:
        """An object made on the mock Stripe directly, as the account's other software
        would make it, not through the gateway (call before `mark`: it is logged too)."""
        answer = httpx.post(f"{self.base_url('stripe')}{path}", data=form, timeout=10,
                            headers={"Authorization": f"Bearer {STRIPE_SECRET}"})
        assert answer.status_code == 200, answer.text
        made: dict[str, Any] = answer.json()
        return made

    # -- the server ---------------------------------------------------------------------
    async def _relay(self, request: web.Request) -> web.Response:
        vendor = request.match_info["vendor"]
        path = request.rel_url.raw_path.removeprefix(f"/{vendor}")
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        call = Received(vendor, request.method.upper(), path,
                        request.rel_url.raw_query_string, headers, body)
        with self._lock:
            self._received.append(call)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        forwarded = dict(request.headers)
        if self.fault is not None:
            forwarded[FAULT_HEADER] = self.fault
        answer = await self.sim.send(UpstreamRequest(
            provider=vendor, method=request.method, path=path, headers=forwarded,
            body=body, stream=False, query=request.rel_url.raw_query_string))
        try:
            data = await answer.read()
        finally:
            await answer.close()
        return web.Response(status=answer.status, body=data, headers=answer.headers)

    def start(self) -> MockVendors:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start(), which fails the fixture
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="mock-vendors", daemon=True)
        self._thread.start()
        assert ready.wait(START_TIMEOUT_S), "the mock vendor server did not start"
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{vendor}/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)


def vendor_config(mock: MockVendors, **extra: Any) -> dict[str, Any]:
    """A gateway config: the simulated LLM provider, every vendor pointed at the mock."""
    return {
        "simulated": {"latency_ms": 0},
        "vendors": {
            "stripe": {"base_url": mock.base_url("stripe"), "secret": STRIPE_SECRET},
            "twilio": {"base_url": mock.base_url("twilio"), "account_sid": TWILIO_SID,
                       "auth_token": TWILIO_TOKEN},
            "resend": {"base_url": mock.base_url("resend"), "api_key": RESEND_KEY},
        },
        **extra,
    }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for gateway in item.config.stash.get(_RUNNING, []):
            tail = "\n".join(gateway.log().splitlines()[-LOG_TAIL_LINES:])
            report.sections.append((f"outlay serve log ({gateway.name})", tail))
    return report


@contextlib.contextmanager
def running(config: pytest.Config, directory: Path, doc: dict[str, Any],
            workers: int) -> Iterator[Gateway]:
    gateway = Gateway(directory, doc, workers)
    running_list = config.stash.setdefault(_RUNNING, [])
    running_list.append(gateway)
    try:
        yield gateway.start()
    finally:
        try:
            gateway.stop()
        finally:
            running_list.remove(gateway)


@contextlib.contextmanager
def running_replica(config: pytest.Config, directory: Path, doc: dict[str, Any],
                    state_url: str, database: str | None, workers: int = 2
                    ) -> Iterator[Replica]:
    """A gateway on any state URL (SQLite, or Redis beside PostgreSQL) that keeps its port
    when restarted; its log joins the report of a test that fails."""
    replica = Replica(directory, doc, workers, state_url=state_url, database=database)
    running_list = config.stash.setdefault(_RUNNING, [])
    running_list.append(replica)
    try:
        yield replica.start()
    finally:
        try:
            replica.stop()
        finally:
            running_list.remove(replica)


@pytest.fixture(scope="package")
def mock_vendors() -> Iterator[MockVendors]:
    mock = MockVendors().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="package")
def vendor_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   mock_vendors: MockVendors) -> Iterator[Gateway]:
    """One `outlay serve --workers 2` for the package; each test uses agents of its own."""
    directory = tmp_path_factory.mktemp("vendors") / "gw"
    with running(request.config, directory, vendor_config(mock_vendors), workers=2) as gw:
        yield gw


@pytest.fixture(scope="package")
def redis_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  mock_vendors: MockVendors, redis_server: RedisServer,
                  postgres_server: PostgresServer) -> Iterator[Replica]:
    """`outlay serve --workers 2` on Redis beside PostgreSQL, for the package: policies and
    decisions go through both."""
    directory: Path = tmp_path_factory.mktemp("vendors-redis")
    database = postgres_server.new_database()
    try:
        with running_replica(request.config, directory, vendor_config(mock_vendors),
                             f"{redis_server.url}?tenant=t_{secrets.token_hex(8)}",
                             database) as gw:
            yield gw
    finally:
        postgres_server.drop_database(database)
