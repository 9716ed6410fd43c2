"""Fixtures: a gateway built by create_app on a SQLite file in tmp_path, served in process the
two ways `outlay serve` may carry a request (aiohttp's server, or gateway/h1.py handing it on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from outlay.gateway.app import create_app
from outlay.settings import Settings
from outlay.state.sqlite import SqliteStore
from outlay.upstream.simulated import SimulatedUpstream
from tests.admin.harness import ADMIN_TOKEN, ManualClock, shipped_prices
from tests.gateway.conftest import AsServed, ServedByH1


@pytest.fixture(params=["aiohttp", "h1"])
async def ui(request: pytest.FixtureRequest, aiohttp_client: AiohttpClient,
             tmp_path: Path) -> TestClient[Any, Any]:
    path = tmp_path / "outlay.db"
    settings = Settings(state=f"sqlite:///{path}", admin_token=ADMIN_TOKEN)
    clock = ManualClock()
    store = SqliteStore(str(path), clock=clock)
    app = create_app(settings, store=store, upstream=SimulatedUpstream(),
                     prices=shipped_prices(), clock=clock)
    served = AsServed if request.param == "aiohttp" else ServedByH1
    client = await aiohttp_client(served(app))
    await store.init_admin_token(settings.admin_token)
    return client
