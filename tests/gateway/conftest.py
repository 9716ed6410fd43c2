"""Fixtures: the gateway built by create_app on a SQLite file in tmp_path, with a scripted
upstream and a manual clock injected, and the admin token set as `outlay serve` would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseRunner, TestServer
from pytest_aiohttp import AiohttpClient
from yarl import URL

from outlay.gateway.app import create_app
from outlay.gateway.context import GATEWAY
from outlay.gateway.h1 import H1Site, Limits
from outlay.gateway.llm import llm_handlers
from outlay.gateway.server import bind, runner_options
from outlay.settings import Settings

from .fakes import (
    ADMIN_TOKEN,
    FakeUpstream,
    MakeOutlay,
    ManualClock,
    Outlay,
    WatchedStore,
    price_table,
)


class AsServed(TestServer):
    """A test server that, as `outlay serve` does, lets a handler run on when its client
    hangs up (aiohttp's test server cancels it)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        kwargs["handler_cancellation"] = False
        return await super()._make_runner(**runner_options(self.app[GATEWAY].settings),
                                          **kwargs)


class ServedByH1(AsServed):
    """As `outlay serve` runs the app: the LLM routes on gateway/h1.py, the rest handed to
    aiohttp's server."""

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self.runner = await self._make_runner(**kwargs)
        await self.runner.setup()
        assert isinstance(self.runner, web.AppRunner)
        sock = bind("127.0.0.1", 0)
        self.host, self.port = sock.getsockname()[:2]
        gw = self.app[GATEWAY]
        self.site = H1Site(self.runner, sock, llm_handlers(gw), Limits.of(gw.settings), gw.stop)
        await self.site.start()
        self.scheme = "http"
        self._root = URL(f"http://127.0.0.1:{self.port}")


@pytest.fixture(params=["aiohttp", "h1"])
def server(request: pytest.FixtureRequest) -> type[AsServed]:
    """Every in-process gateway test runs on both servers that carry the LLM routes."""
    return AsServed if request.param == "aiohttp" else ServedByH1


@pytest.fixture
async def make_outlay(
    aiohttp_client: AiohttpClient, tmp_path: Path, server: type[AsServed]
) -> AsyncIterator[MakeOutlay]:
    """Build a gateway; keyword arguments override Settings fields."""
    upstreams: list[FakeUpstream] = []

    async def make(**overrides: Any) -> Outlay:
        settings = Settings(state=f"sqlite:///{tmp_path / 'outlay.db'}",
                            admin_token=ADMIN_TOKEN, **overrides)
        clock = ManualClock()
        store = WatchedStore(str(tmp_path / "outlay.db"), clock=clock)
        upstream = FakeUpstream()
        upstreams.append(upstream)
        app = create_app(settings, store=store, upstream=upstream,
                         prices=price_table(), clock=clock)
        # runs cleanup_ctx: the store is open from here
        client = await aiohttp_client(server(app))
        await store.init_admin_token(settings.admin_token)
        return Outlay(client, upstream, store, clock, settings)

    yield make
    for upstream in upstreams:  # nothing stays parked on a pause past the test
        upstream.release.set()


@pytest.fixture
async def outlay(make_outlay: MakeOutlay) -> Outlay:
    return await make_outlay()


@pytest.fixture
async def key(outlay: Outlay) -> dict[str, Any]:
    """A key of agent-a, with no policy of its own."""
    return await outlay.mint()
