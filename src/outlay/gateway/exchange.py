"""One HTTP exchange as the LLM routes see it: the request they read and the answer they
write, whichever server carries it (aiohttp's, or the lean HTTP/1.1 server of gateway/h1.py
that serves the LLM routes of `outlay serve`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from aiohttp import web

from outlay.policy.errors import TooLarge, TooSlow


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body of a request aiohttp's server carries; TooLarge past `max_bytes`,
    TooSlow when it is not all there within the body timeout (gateway/handoff.py)."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    except web.HTTPRequestTimeout:
        raise too_slow() from None
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


def _too_large(max_bytes: int) -> TooLarge:
    return TooLarge("request_too_large", f"The request body is larger than {max_bytes} bytes.")


def too_slow() -> TooSlow:
    return TooSlow("request_timeout", "The request body did not arrive in time "
                   "(server.body_timeout_s); the connection is closed.")


class Exchange(ABC):
    """A request, read whole, and its answer: either `send` once, or `start`, `write`…,
    `end`. A write to an agent that went away raises ConnectionError."""

    headers: Mapping[str, str]  # case-insensitive
    query: str  # as the agent encoded it, without the `?`
    content_type: str  # the media type in lower case, application/octet-stream when none

    @abstractmethod
    async def body(self, max_bytes: int) -> bytes:
        """The whole body; TooLarge past `max_bytes`."""

    @abstractmethod
    async def send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """A whole answer."""

    @abstractmethod
    async def start(self, status: int, headers: Mapping[str, str]) -> None:
        """The head of an answer whose body follows in pieces."""

    @abstractmethod
    async def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    async def end(self) -> None: ...

    @abstractmethod
    def abort(self) -> None:
        """Cut the connection: the answer cannot be completed, and ending it cleanly would
        pass a truncated answer off as a whole one."""

    @abstractmethod
    def gone(self) -> bool:
        """Whether the agent hung up (a call waiting in the queue then leaves it)."""


class AiohttpExchange(Exchange):
    """An exchange carried by aiohttp's server; `response` is what the handler returns."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.headers = request.headers
        self.query = request.rel_url.raw_query_string
        self.content_type = request.content_type
        self.response: web.StreamResponse | None = None

    async def body(self, max_bytes: int) -> bytes:
        return await read_body(self.request, max_bytes)

    async def send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.response = web.Response(status=status, body=body, headers=headers)
        await self._prepare(self.response)
        await self.response.write_eof()

    async def start(self, status: int, headers: Mapping[str, str]) -> None:
        self.response = web.StreamResponse(status=status, headers=headers)
        await self._prepare(self.response)

    async def _prepare(self, response: web.StreamResponse) -> None:
        if not self.request.content.is_eof():
            # a body left unread (a refused key's) or late: the connection closes after this
            # answer, as gateway/handoff.py has aiohttp do, and the answer says so
            response.force_close()
        await response.prepare(self.request)

    async def write(self, chunk: bytes) -> None:
        assert self.response is not None
        await self.response.write(chunk)

    async def end(self) -> None:
        assert self.response is not None
        await self.response.write_eof()

    def abort(self) -> None:
        if self.request.transport is not None:
            self.request.transport.close()

    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()
