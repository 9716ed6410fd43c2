"""A handle on an in-process gateway for the admin tests: the admin API called as an operator
would, and agent calls answered by the built-in simulated provider."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from outlay.gateway.app import create_app
from outlay.pricing.table import PriceTable
from outlay.settings import Settings
from outlay.simulator.providers import SimulatedUpstream
from outlay.state.sqlite.store import SqliteStore

ADMIN_TOKEN = "adm"
# 2025-06-15T12:00:00Z: mid-month and mid-day, so no period turns over during a test.
START_MS = 1_749_988_800_000
CHAT = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}]}


@cache
def shipped_prices() -> PriceTable:
    """The shipped price table; immutable, so loaded once for the session."""
    return PriceTable.load()


class ManualClock:
    """Milliseconds since the epoch, moved only by the test."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def gateway_app(path: Path, **settings_fields: Any
                ) -> tuple[web.Application, SqliteStore, ManualClock]:
    """The gateway the admin tests serve: create_app on the SQLite file at `path`, the
    simulated provider behind it and a manual clock. Once it runs (its store open), set the
    admin token as `outlay serve` would: `await store.init_admin_token(ADMIN_TOKEN)`."""
    settings = Settings(state=f"sqlite:///{path}", admin_token=ADMIN_TOKEN, **settings_fields)
    clock = ManualClock()
    store = SqliteStore(str(path), clock=clock)
    app = create_app(settings, store=store, upstream=SimulatedUpstream(),
                     prices=shipped_prices(), clock=clock)
    return app, store, clock


@dataclass
class Admin:
    app: web.Application
    client: TestClient[Any, Any]
    store: SqliteStore
    clock: ManualClock

    async def call(self, method: str, path: str, body: object = None, *,
                   token: str | None = ADMIN_TOKEN, expect: int | None = 200) -> Any:
        """Call /admin/v1/<path>; check the status unless `expect` is None; return the JSON."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        resp = await self.client.request(method, f"/admin/v1/{path}", **kwargs)
        data = await resp.json()
        if expect is not None:
            assert resp.status == expect, data
        return data

    async def refused(self, method: str, path: str, body: object = None, *, status: int = 400,
                      code: str = "invalid_request") -> dict[str, Any]:
        """Call an admin route expecting an error; check its shape; return the error object."""
        data = await self.call(method, path, body, expect=status)
        assert set(data) == {"error"}, data
        error: dict[str, Any] = data["error"]
        assert {"message", "type", "code", "param"} <= set(error)
        assert error["code"] == code, error
        assert error["message"]
        return error

    async def mint(self, agent: str = "agent-a", **fields: Any) -> dict[str, Any]:
        minted: dict[str, Any] = await self.call("POST", "keys", {"agent": agent, **fields},
                                                 expect=201)
        return minted

    async def chat(self, secret: str, **fields: Any) -> ClientResponse:
        resp: ClientResponse = await self.client.post(
            "/v1/chat/completions", json={**CHAT, **fields},
            headers={"Authorization": f"Bearer {secret}"})
        await resp.read()
        return resp
