"""A provider endpoint's breaker opening and closing raises provider.unhealthy and
provider.recovered, once each, through the webhook outbox."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from outlay.gateway.health import HealthEvents
from outlay.state.sqlite.store import SqliteStore
from outlay.upstream.base import UpstreamRequest
from outlay.upstream.breaker import BreakerState
from outlay.upstream.http import Endpoint, HttpUpstream


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_changes_become_events(aiohttp_server: AiohttpServer,
                                             tmp_path: Path) -> None:
    answers = [500, 500, 200]

    async def chat(_: web.Request) -> web.Response:
        return web.json_response({}, status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = await aiohttp_server(app)
    store = SqliteStore(str(tmp_path / "h.db"))
    await store.open()
    await store.add_webhook("http://127.0.0.1:9/hook", ["*"])
    health = HealthEvents()
    health.store = store
    clock = Clock()
    endpoint = Endpoint(f"http://127.0.0.1:{server.port}/v1", "sk-test")
    upstream = HttpUpstream({"openai": [endpoint]}, failure_threshold=2, cooldown_s=30,
                            clock=clock, on_health_change=health)
    request = UpstreamRequest("openai", "POST", "/chat/completions", {}, b"{}", False)
    try:
        for _ in range(2):  # two 500s in a row open the breaker
            answer = await upstream.send(request)
            await answer.close()
        clock.now += 31  # the cool-down passes: one probe, which succeeds
        answer = await upstream.send(request)
        assert answer.status == 200
        await answer.close()
        await health.drain()
        rows = store.conn.execute("SELECT body FROM outbox ORDER BY created_ms, rowid")
        events = [json.loads(r[0]) for r in rows]
        assert [e["type"] for e in events] == ["provider.unhealthy", "provider.recovered"]
        assert events[0]["data"] == {"provider": "openai", "base_url": endpoint.base_url,
                                     "state": "open"}
    finally:
        await upstream.close()
        await store.close()


async def test_a_change_before_the_store_is_attached_is_dropped() -> None:
    health = HealthEvents()
    health("openai", Endpoint("http://127.0.0.1:9/v1", None), BreakerState.OPEN)
    assert not health._pending
    await health.drain()
