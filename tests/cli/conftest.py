"""Fixtures: a fake admin API on loopback, and a helper that runs `outlay` commands against it.

The CLI is synchronous, so it runs in a worker thread while the event loop serves the fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from pytest_aiohttp import AiohttpServer

from outlay.cli.main import main

from .fakes import ADMIN_TOKEN, FakeAdmin, RunCli


@pytest.fixture
async def fake_admin(aiohttp_server: AiohttpServer) -> FakeAdmin:
    fake = FakeAdmin()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def run_cli(fake_admin: FakeAdmin) -> RunCli:
    """Run `outlay ARGS --url <fake> --token <token>` in a thread; returns click's Result.

    ``pass_url=False`` / ``token=None`` leave those flags out, to test OUTLAY_URL and friends.
    """

    async def run(
        *args: str,
        url: str | None = None,
        token: str | None = ADMIN_TOKEN,
        pass_url: bool = True,
        env: Mapping[str, str | None] | None = None,
        obj: Any = None,
        stdin: str | None = None,
    ) -> Result:
        argv = [*args]
        if pass_url:
            argv += ["--url", url or fake_admin.url]
        if token is not None:
            argv += ["--token", token]
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, main, argv, env=env, obj=obj, input=stdin, catch_exceptions=False
        )

    return run
