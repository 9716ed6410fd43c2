"""Fixtures: a gateway built by create_app on a SQLite file in tmp_path, served in process the
two ways `outlay serve` may carry a request (aiohttp's server, or gateway/h1.py handing it on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.admin.harness import ADMIN_TOKEN, gateway_app
from tests.gateway.conftest import AsServed, ServedByH1


@pytest.fixture(params=["aiohttp", "h1"])
async def ui(request: pytest.FixtureRequest, aiohttp_client: AiohttpClient,
             tmp_path: Path) -> TestClient[Any, Any]:
    app, store, _ = gateway_app(tmp_path / "outlay.db")
    served = AsServed if request.param == "aiohttp" else ServedByH1
    client = await aiohttp_client(served(app))
    await store.init_admin_token(ADMIN_TOKEN)
    return client
