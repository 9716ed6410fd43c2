"""Fixtures: the gateway built by create_app on a SQLite file in tmp_path, the simulated
provider behind it, a manual clock, and the admin token set as `outlay serve` would."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from outlay.gateway.app import create_app
from outlay.settings import Settings
from outlay.state.sqlite import SqliteStore
from outlay.upstream.simulated import SimulatedUpstream

from .harness import ADMIN_TOKEN, Admin, ManualClock, shipped_prices


@pytest.fixture
async def admin(aiohttp_client: AiohttpClient, tmp_path: Path) -> Admin:
    path = tmp_path / "outlay.db"
    settings = Settings(state=f"sqlite:///{path}", admin_token=ADMIN_TOKEN)
    clock = ManualClock()
    store = SqliteStore(str(path), clock=clock)
    app = create_app(settings, store=store, upstream=SimulatedUpstream(),
                     prices=shipped_prices(), clock=clock)
    client = await aiohttp_client(app)  # runs cleanup_ctx: the store is open from here
    await store.init_admin_token(settings.admin_token)
    return Admin(app, client, store, clock)
