"""A webhook receiver on loopback, as a customer would run one: it verifies every delivery
with the reference `standardwebhooks` package and answers as the test scripts it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

Answer = Callable[[web.Request], Awaitable[web.Response]]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: Any  # the verified, parsed JSON; None when verification failed
    verified_with: list[int]  # indexes of the secrets that verify it


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    port: int = 0
    got: list[Received] = field(default_factory=list)
    answer: Answer | None = None  # default: 200
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified, parsed = [], None
        for n, secret in enumerate(self.secrets):
            try:
                parsed = Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(n)
        self.got.append(Received(headers, body, parsed, verified))
        if self.answer is not None:
            return await self.answer(request)
        return web.Response(status=200)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        # a handler a test left waiting must not hold the teardown for long
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def payloads(self) -> list[Any]:
        return [r.payload for r in self.got]


def closed_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def eventually(check: Callable[[], Any], within: float = 5.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {check}")
        await asyncio.sleep(0.01)
