"""GET /admin/v1/providers: every endpoint the gateway sends to, with its circuit breaker, as
the worker that answers sees it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer

from outlay.gateway.app import create_app
from outlay.gateway.context import GATEWAY
from outlay.settings import Settings
from outlay.upstream.base import UpstreamRequest, UpstreamUnreachable
from outlay.upstream.http import Endpoint, HttpUpstream

from .conftest import AsServed
from .fakes import ADMIN, ADMIN_TOKEN, ManualClock, WatchedStore, price_table


async def test_a_failing_endpoint_shows_its_breaker_open(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    async def failing(_: web.Request) -> web.Response:
        return web.json_response({}, status=500)

    provider = web.Application()
    provider.router.add_post("/v1/chat/completions", failing)
    server = await aiohttp_server(provider)
    healthy = Endpoint(f"http://127.0.0.1:{server.port}/healthy/v1", "sk-b")
    failing_ep = Endpoint(f"http://127.0.0.1:{server.port}/v1", "sk-a", weight=3)
    upstream = HttpUpstream({"openai": [failing_ep], "anthropic": [healthy]},
                            failure_threshold=2, cooldown_s=600)
    settings = Settings(state=f"sqlite:///{tmp_path / 'o.db'}", admin_token=ADMIN_TOKEN)
    clock = ManualClock()
    app = create_app(settings, store=WatchedStore(str(tmp_path / "o.db"), clock=clock),
                     upstream=upstream, prices=price_table(), clock=clock)
    client = await aiohttp_client(AsServed(app))
    await app[GATEWAY].store.init_admin_token(ADMIN_TOKEN)
    request = UpstreamRequest("openai", "POST", "/chat/completions", {}, b"{}", False)
    for _ in range(2):  # two 500s in a row open the breaker
        answer = await upstream.send(request)
        await answer.close()
    with pytest.raises(UpstreamUnreachable):  # the breaker is open
        await upstream.send(request)
    resp = await client.get("/admin/v1/providers", headers=ADMIN)
    assert resp.status == 200
    body = await resp.json()
    assert body["worker"] == os.getpid()
    llm = {p["provider"]: p for p in body["providers"] if p["kind"] == "llm"}
    assert llm["openai"] == {"kind": "llm", "provider": "openai",
                             "base_url": failing_ep.base_url, "weight": 3, "state": "open",
                             "consecutive_failures": 2, "simulated": False}
    assert (llm["anthropic"]["state"], llm["anthropic"]["consecutive_failures"]) == ("closed", 0)
    vendors = {p["provider"]: p for p in body["providers"] if p["kind"] == "vendor"}
    assert set(vendors) == {"stripe", "twilio", "resend"}  # simulated: no credentials set
    assert {p["base_url"] for p in vendors.values()} == {"simulated"}
    assert all(p["simulated"] for p in vendors.values())


async def test_providers_need_the_admin_token(aiohttp_client: AiohttpClient,
                                              tmp_path: Path) -> None:
    settings = Settings(state=f"sqlite:///{tmp_path / 'o.db'}", admin_token=ADMIN_TOKEN)
    app = create_app(settings, prices=price_table())
    client = await aiohttp_client(AsServed(app))
    await app[GATEWAY].store.init_admin_token(ADMIN_TOKEN)
    assert (await client.get("/admin/v1/providers")).status == 401
    resp = await client.get("/admin/v1/providers", headers=ADMIN)
    assert resp.status == 200
    llm = [p for p in (await resp.json())["providers"] if p["kind"] == "llm"]
    assert {(p["provider"], p["base_url"]) for p in llm} == {
        ("openai", "simulated"), ("anthropic", "simulated")}

