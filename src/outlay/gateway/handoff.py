"""Time and size limits on what aiohttp's server carries.

aiohttp has one timer of its own, `keepalive_timeout`, for a connection waiting for its
next request; `outlay serve` sets it to `server.idle_timeout_s`. The rest is here:

- `Handed` is the protocol of a connection gateway/h1.py handed over: aiohttp's protocol
  behind a watch that closes the connection when a head is not whole within
  `header_timeout_s` of its first byte, answers 431 to a head over MAX_HEAD_BYTES, and
  gives the connection back to the count of open ones when it closes.
- `watch_requests`, the outermost middleware, tells that watch when a request's handler
  starts and ends, and fails a body not all received within `body_timeout_s` with
  HTTPRequestTimeout (408), whoever reads it. A body not all received when its answer is
  ready closes the connection after it (`Connection: close`; aiohttp's `lingering_time` is
  0, so none of it is drained).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import StreamReader, web

from outlay.gateway.deadline import Deadline

MAX_HEAD_BYTES = 32 * 1024  # a longer head is answered 431; aiohttp's line limits match
LINGER_S = 1.0  # how long the rest of a refused head is read and dropped before closing
_END = b"\r\n\r\n"
# a head is arriving (its time runs); the head is whole and a handler is due or running;
# between requests (aiohttp's keep-alive timer runs); closed after a 431
HEAD, BUSY, IDLE, DONE = "head", "busy", "idle", "done"
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 35\r\n"
              b"Connection: close\r\n\r\n431: Request Header Fields Too Large")


class Handed(asyncio.Protocol):
    """A connection aiohttp's server took over, from within a head whose time runs until
    `head_by` (loop time); `release` is called once when it closes."""

    def __init__(self, inner: asyncio.Protocol, header_s: float, release: Callable[[], None],
                 head_by: float) -> None:
        self.inner, self.header_s, self.release = inner, header_s, release
        self.transport: asyncio.Transport | None = None
        self.phase = HEAD
        self._head_by = head_by
        self._seen = 0  # bytes of the head so far, up to the last 3 ...
        self._tail = b""  # ... kept to find an end of head split between two reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.deadline = Deadline(asyncio.get_running_loop(), self._expired)
        self.deadline.start_at(self._head_by)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.phase == IDLE:
            self.phase, self._seen, self._tail = HEAD, 0, b""
            self.deadline.start(self.header_s)
        if self.phase == HEAD and not self._watch_head(data):
            return
        if self.phase != DONE:
            self.inner.data_received(data)

    def _watch_head(self, data: bytes) -> bool:
        """Follow the head arriving in `data`; False when it is too large (answered 431)."""
        scan = self._tail + data
        end = scan.find(_END)
        size = self._seen + (len(data) if end < 0 else end + len(_END) - len(self._tail))
        if size > MAX_HEAD_BYTES:
            self.phase = DONE
            self.deadline.cancel()
            if self.transport is not None:
                self.transport.write(_TOO_LARGE)
                # a lingering close: the answer, then our end of the stream, and the rest of
                # the client's bytes read and dropped for a moment; closing with them unread
                # would reset the connection, and a reset can discard the answer unread
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                    asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
                else:
                    self.transport.close()
            return False
        if end >= 0:
            self.phase = BUSY  # aiohttp has the whole head: its handler is due
            self.deadline.stop()
        else:
            self._seen, self._tail = size, scan[-(len(_END) - 1):]
        return True

    def _expired(self) -> None:
        if self.phase == HEAD and self.transport is not None:
            self.transport.close()

    def started(self) -> None:
        """A request's handler runs (its head was whole)."""
        self.phase = BUSY
        self.deadline.stop()

    def ended(self, keep: bool) -> None:
        """A request's handler returned; its answer is being written. Unless the connection
        is `keep`, it closes after the answer: what still comes is a body nobody reads."""
        if self.phase == BUSY and keep:
            self.phase = IDLE

    def eof_received(self) -> bool | None:
        if self.phase == DONE:
            return None  # answered 431 and lingering: the client is done, so are we
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = DONE
        self.deadline.cancel()
        self.release()
        self.inner.connection_lost(exc)


def watch_requests(body_s: float) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware: the handler's start and end for the connection's watch, and the
    time limit on its body."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        transport = request.transport
        watch = transport.get_protocol() if transport is not None else None
        if not isinstance(watch, Handed):
            watch = None  # aiohttp's own server, as in tests: no head watch
        else:
            watch.started()
        content = request.content
        timer = None if content.is_eof() else asyncio.get_running_loop().call_later(
            body_s, _too_slow, content)
        try:
            response = await handler(request)
        finally:
            if timer is not None:
                timer.cancel()
            if watch is not None:
                watch.ended(keep=content.is_eof())
        if not content.is_eof():
            # the rest of the body will not be read: the answer says the connection closes
            response.force_close()
        return response

    return middleware


def _too_slow(content: StreamReader) -> None:
    if not content.is_eof():
        content.set_exception(web.HTTPRequestTimeout(
            text="408: the request body did not arrive in time"))
