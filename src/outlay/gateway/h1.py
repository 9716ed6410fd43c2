"""The HTTP/1.1 server of `outlay serve`: LLM calls, the request path every agent pays for,
are read and answered here with nothing between the socket and the route; every other
request (admin, vendors, models, health, anything unusual) goes to aiohttp's server.

A connection starts here. At a request boundary, when the next request is not a plain one
on an LLM route (gateway/h1_head.py), the connection with every byte not yet read is handed
to aiohttp's protocol and stays there: aiohttp judges that request from its first byte.
Requests on one connection are answered in order, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

from aiohttp import web

from outlay.gateway.exchange import Exchange
from outlay.gateway.h1_head import HANDOFF, Head, parse_head

log = logging.getLogger("outlay")

Handler = Callable[[Exchange], Awaitable[None]]
KEEPALIVE_S = 3630.0  # an idle connection is closed after this, as aiohttp's server does
SWEEP_S = 10.0
READ_AHEAD = 256 * 1024  # bytes buffered past a request in flight before reading pauses
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_NO_BODY = {204, 304}  # answers that never have a body, nor a length (RFC 9110 §8.6)


class H1Server:
    """The connections of one listening socket, and what serves them."""

    def __init__(self, routes: Mapping[str, Handler], fallback: Callable[[], asyncio.Protocol],
                 max_body: int) -> None:
        self.routes, self.fallback, self.max_body = routes, fallback, max_body
        self.connections: set[H1Connection] = set()
        self.stopping = False
        self._date = (0, "")
        self._sweeper: asyncio.Task[None] | None = None

    def protocol(self) -> H1Connection:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return H1Connection(self)

    def date(self) -> str:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            deadline = time.monotonic() - KEEPALIVE_S
            for conn in [c for c in self.connections
                         if c.task is None and c.idle_since < deadline]:
                conn.close()

    async def shutdown(self, grace_s: float) -> None:
        """Close idle connections, give answers in progress `grace_s` seconds, then cut."""
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if conn.task is None:
                conn.close()
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        for conn in list(self.connections):
            conn.close()


class H1Connection(asyncio.Protocol):
    def __init__(self, server: H1Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.idle_since = time.monotonic()
        self.lost = False
        self._reading = True
        self._writable: asyncio.Future[None] | None = None  # set while writes are paused

    # -- asyncio's side --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self._next()
        elif len(self.buf) > READ_AHEAD and self._reading and self.transport is not None:
            self.transport.pause_reading()
            self._reading = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # -- requests ------------------------------------------------------------------------------
    def _next(self) -> None:
        """Start on the next request in the buffer, if it is all here."""
        if self.transport is None or self.server.stopping:
            return
        head = parse_head(self.buf, self.server.routes, self.server.max_body)
        if head is None:
            self._resume_reading()
            return
        if head is HANDOFF:
            self._handoff()
            return
        assert isinstance(head, Head)
        end = head.end + head.length
        if len(self.buf) < end:
            self._resume_reading()
            return
        body = bytes(self.buf[head.end:end])
        del self.buf[:end]
        self.task = asyncio.get_running_loop().create_task(self._serve(head, body))

    async def _serve(self, head: Head, body: bytes) -> None:
        ex = H1Exchange(self, head, body)
        try:
            await self.server.routes[head.path](ex)
            if ex.state != "done":
                raise RuntimeError(f"{head.path}: the route ended without an answer")
        except ConnectionError:
            ex.keep = False  # the agent went away
        except asyncio.CancelledError:
            ex.keep = False  # the server stopping, or the kill switch cutting a stream
            raise
        except Exception:
            log.exception("error answering POST %s", head.path)
            ex.keep = False
            if ex.state == "new" and not self.lost:
                with contextlib.suppress(ConnectionError):
                    await ex.send(500, {"Content-Type": "text/plain"},
                                  b"500 Internal Server Error")
        finally:
            self.task = None
            self.idle_since = time.monotonic()
            if not ex.keep or head.close or self.server.stopping:
                self.close()
            elif self.buf:
                self._next()
            else:
                self._resume_reading()

    def _handoff(self) -> None:
        """aiohttp's server takes the connection, and every byte not read yet."""
        assert self.transport is not None
        self.server.connections.discard(self)
        proto = self.server.fallback()
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        data, self.buf = bytes(self.buf), bytearray()
        if data:
            proto.data_received(data)
        self._resume_reading()
        self.transport = None

    # -- writing -------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.lost or self.transport is None:
            raise ConnectionResetError("the agent closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable
        if self.lost:
            raise ConnectionResetError("the agent closed the connection")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _wake_writer(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume_reading(self) -> None:
        if not self._reading and self.transport is not None:
            self.transport.resume_reading()
            self._reading = True


class H1Exchange(Exchange):
    def __init__(self, conn: H1Connection, head: Head, body: bytes) -> None:
        self.conn, self._body = conn, body
        self.headers = head.headers
        self.query = head.query
        ctype = head.headers.get("Content-Type")
        self.content_type = (ctype.partition(";")[0].strip().lower() if ctype
                             else "application/octet-stream")
        self.keep = not head.close  # the connection serves another request after this one
        self.state = "new"  # new → streaming → done
        self._unsent = b""  # a stream's head, until its first chunk

    async def body(self, max_bytes: int) -> bytes:
        return self._body  # longer bodies than the limit never get here (h1_head)

    def _head(self, status: int, headers: Mapping[str, str], framing: str | None) -> bytes:
        if self.state != "new":
            raise RuntimeError("the answer has already begun")
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                 f"Date: {self.conn.server.date()}"]
        if framing is not None:
            lines.append(framing)
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if not self.keep:
            lines.append("Connection: close")
        text = "\r\n".join(lines) + "\r\n\r\n"
        if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
            raise ValueError("a header name or value holds a line break")
        return text.encode()

    async def send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        if status in _NO_BODY:
            head, body = self._head(status, headers, None), b""
        else:
            head = self._head(status, headers, f"Content-Length: {len(body)}")
        self.state = "done"
        self.conn.write(head + body)

    async def start(self, status: int, headers: Mapping[str, str]) -> None:
        # the head goes out with the first chunk, in one packet, as aiohttp's server does
        self._unsent = self._head(status, headers, "Transfer-Encoding: chunked")
        self.state = "streaming"
        if self.conn.lost:
            raise ConnectionResetError("the agent closed the connection")

    async def write(self, chunk: bytes) -> None:
        if self.state != "streaming":
            raise RuntimeError("write before start, or after end")
        if chunk:
            self.conn.write(b"%b%x\r\n%b\r\n" % (self._unsent, len(chunk), chunk))
            self._unsent = b""
            await self.conn.drain()

    async def end(self) -> None:
        if self.state != "streaming":
            raise RuntimeError("end before start, or twice")
        self.state = "done"
        self.conn.write(self._unsent + b"0\r\n\r\n")
        self._unsent = b""

    def abort(self) -> None:
        self.keep = False
        self.conn.close()


class H1Site(web.SockSite):
    """aiohttp's site for a listening socket, with H1Server in front: aiohttp's runner
    starts and stops it with the application."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket,
                 routes: Mapping[str, Handler], max_body: int, shutdown_timeout: float
                 ) -> None:
        super().__init__(runner, sock, backlog=1024)
        self._routes, self._max_body, self._timeout = routes, max_body, shutdown_timeout
        self.h1: H1Server | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; the server is made here
        fallback = self._runner.server
        assert fallback is not None
        self.h1 = H1Server(self._routes, fallback, self._max_body)
        self._server = await asyncio.get_running_loop().create_server(
            self.h1.protocol, sock=self._sock, backlog=self._backlog)

    async def stop(self) -> None:
        await super().stop()  # no new connections
        if self.h1 is not None:
            await self.h1.shutdown(self._timeout)
