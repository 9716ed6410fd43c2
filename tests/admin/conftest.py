"""Fixtures: the gateway built by create_app on a SQLite file in tmp_path, the simulated
provider behind it, a manual clock, and the admin token set as `outlay serve` would."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from .harness import ADMIN_TOKEN, Admin, gateway_app


@pytest.fixture
async def admin(aiohttp_client: AiohttpClient, tmp_path: Path) -> Admin:
    app, store, clock = gateway_app(tmp_path / "outlay.db")
    client = await aiohttp_client(app)  # runs cleanup_ctx: the store is open from here
    await store.init_admin_token(ADMIN_TOKEN)
    return Admin(app, client, store, clock)
