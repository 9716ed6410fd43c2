"""Loopback servers for the upstream tests: aiohttp apps, raw sockets, and a closed port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import uvloop
from aiohttp import web
from pytest_aiohttp import AiohttpServer

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    """Every async case here on both loops: `outlay serve` runs on uvloop, whose transports
    are not asyncio's classes."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Event], Awaitable[None]]


@pytest.fixture
async def serve(aiohttp_server: AiohttpServer) -> Callable[..., Awaitable[str]]:
    """Start an aiohttp app routing every path to one handler; returns its base URL."""

    async def start(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = await aiohttp_server(app)
        return f"http://127.0.0.1:{server.port}"

    return start


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    """Start a bare TCP server whose handler writes whatever bytes it likes.

    Handlers get an event that is set at teardown, so one that holds a connection open
    has something to wait on that always ends.
    """
    servers: list[asyncio.Server] = []
    release = asyncio.Event()

    async def start(handler: RawHandler) -> str:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer, release)
            finally:
                writer.close()
                await writer.wait_closed()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    release.set()
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """A loopback port bound but not listening: connecting to it is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
