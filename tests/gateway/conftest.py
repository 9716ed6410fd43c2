"""Fixtures: the gateway built by create_app on a SQLite file in tmp_path, with a scripted
upstream and a manual clock injected, and the admin token set as `outlay serve` would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import BaseRunner, TestServer
from pytest_aiohttp import AiohttpClient

from outlay.gateway.app import create_app
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
        return await super()._make_runner(**kwargs)


@pytest.fixture
async def make_outlay(
    aiohttp_client: AiohttpClient, tmp_path: Path
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
        client = await aiohttp_client(AsServed(app))
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
