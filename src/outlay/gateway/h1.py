"""The HTTP/1.1 server of `outlay serve`: LLM calls, the request path every agent pays for,
are read and answered here with nothing between the socket and the route; every other
request (admin, vendors, models, health, anything unusual) goes to aiohttp's server.

A connection starts here. At a request boundary, when the next request is not a plain one
on an LLM route (gateway/h1_head.py), the connection with every byte not yet read is handed
to aiohttp's protocol (behind gateway/handoff.py's watch) and stays there: aiohttp judges
that request from its first byte. Requests on one connection are answered in order, one at
a time.

A route starts once its head is read and takes its body when it wants it, so an LLM call's
key is checked before its body is waited for. Each connection has one deadline at a time:
a head must be whole within `header_s` of its first byte (of the connection's start, for
the first), a body within `body_s` of its head (else the route gets TooSlow: 408), and an
idle connection is closed after `idle_s`. Past `max_connections` open connections, new ones
are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from outlay.gateway.deadline import Deadline
from outlay.gateway.exchange import Exchange, too_slow
from outlay.gateway.h1_exchange import Dates, H1Exchange
from outlay.gateway.h1_head import HANDOFF, Head, parse_head
from outlay.gateway.handoff import Handed
from outlay.gateway.outages import Throttled
from outlay.gateway.stop import Stop
from outlay.settings import Settings

log = logging.getLogger("outlay")

Handler = Callable[[Exchange], Awaitable[None]]
# bytes buffered past a request in flight, or of a body its route has not asked for yet,
# before reading pauses
READ_AHEAD = 256 * 1024
DRAIN_MAX = 64 * 1024  # the most of a body left unread that is received and dropped
# where a connection is: each of the first four has a deadline
HEAD, IDLE, BODY, DRAIN, BUSY, CLOSED = "head", "idle", "body", "drain", "busy", "closed"


@dataclass(frozen=True)
class Limits:
    """What one connection may take, and how many may be open (the `server:` section)."""

    max_body: int = 4 * 1024 * 1024
    header_s: float = 15.0
    idle_s: float = 75.0
    body_s: float = 60.0
    max_connections: int = 10_000

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.header_timeout_s, settings.idle_timeout_s,
                   settings.body_timeout_s, settings.max_connections)


class H1Server:
    """The connections of one listening socket, and what serves them."""

    def __init__(self, routes: Mapping[str, Handler], fallback: Callable[[], asyncio.Protocol],
                 limits: Limits) -> None:
        self.routes, self.fallback, self.limits = routes, fallback, limits
        self.connections: set[H1Connection] = set()  # those served here, not handed over
        self.open = 0  # every open connection, handed over or not
        self.stopping = False
        self.dates = Dates()
        self.refusals = Throttled(every_s=10.0)

    def protocol(self) -> H1Connection:
        return H1Connection(self)

    def release(self) -> None:
        """An open connection is gone."""
        self.open -= 1

    async def shutdown(self, grace_s: float) -> None:
        """Close idle connections, give answers in progress `grace_s` seconds, then cut."""
        self.stopping = True
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
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.lost = False
        self.counted = False  # this protocol holds one of the server's open connections
        self.phase = HEAD
        self.need = 0  # bytes of the request in progress's body not yet taken by its route
        self.late = False  # that body missed its deadline
        self._body: asyncio.Future[None] | None = None  # set while the route waits for it
        self._reading = True
        self._writable: asyncio.Future[None] | None = None  # set while writes are paused

    # -- asyncio's side --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        server = self.server
        if server.open >= self.limits.max_connections or server.stopping:
            server.refusals.warn(f"closing new connections at once: {server.open} are open "
                                 f"(server.max_connections: {self.limits.max_connections})")
            self.transport.close()
            self.transport = None
            return
        server.open += 1
        self.counted = True
        server.connections.add(self)
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline = Deadline(asyncio.get_running_loop(), self._expired)
        self.deadline.start(self.limits.header_s)  # the first head, from the start

    def data_received(self, data: bytes) -> None:
        if self.phase == CLOSED:
            return  # what comes after an answer that closes the connection is never read
        self.buf += data
        if self.task is None:
            if self.phase != DRAIN:
                self._next()
            elif self._drop_body():
                self._between()
        elif self.phase == BODY:
            if len(self.buf) >= self.need:
                self.phase = BUSY
                self.deadline.stop()
                self._wake_body(None)
            elif self._body is None and len(self.buf) > READ_AHEAD:
                # the route has not asked for the body yet, and may refuse it unread (a
                # refused key): no more of it is read until it does
                self._pause_reading()
        elif len(self.buf) - self.need > READ_AHEAD:
            self._pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.counted:
            return  # closed at the start
        self.counted = False
        self.server.connections.discard(self)
        self.server.release()
        self.deadline.cancel()
        self._wake_writer()
        self._wake_body(ConnectionResetError("the agent closed the connection"))

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.deadline.loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # -- requests ------------------------------------------------------------------------------
    def _next(self) -> None:
        """Start on the next request in the buffer, if its head is all here."""
        if self.transport is None or self.server.stopping:
            return
        head = parse_head(self.buf, self.server.routes, self.limits.max_body)
        if head is None:
            if self.phase != HEAD:  # its first bytes: the head's time starts now
                self.phase = HEAD
                self.deadline.start(self.limits.header_s)
            self._resume_reading()
            return
        if head is HANDOFF:
            self._handoff()
            return
        assert isinstance(head, Head)
        del self.buf[:head.end]
        self.need, self.late = head.length, False
        if len(self.buf) >= head.length:
            self.phase = BUSY
            self.deadline.stop()
        else:
            self.phase = BODY
            self.deadline.start(self.limits.body_s)
            if len(self.buf) > READ_AHEAD:
                self._pause_reading()  # until the route asks for the body
        # the connection's loop, kept: a lookup of the running loop costs a getpid() on 3.11
        self.task = self.deadline.loop.create_task(self._serve(head))

    async def _serve(self, head: Head) -> None:
        ex = H1Exchange(self, head)
        try:
            await self.server.routes[head.path](ex)
            # else the agent went away mid-answer, or the route cut the connection (abort)
            if ex.state not in ("done", "cut") and not self.lost:
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
            if not ex.keep or head.close or self.server.stopping:
                self.close()
            elif self._drop_body():
                self._between()
            else:  # the rest of a small body the route left unread, dropped as it comes
                self.phase = DRAIN
                self._resume_reading()

    async def take_body(self) -> bytes:
        """The body of the request in progress, once it is all here."""
        if len(self.buf) < self.need:
            if self.late:
                raise too_slow()
            if self.lost:
                raise ConnectionResetError("the agent closed the connection")
            self._body = self.deadline.loop.create_future()
            self._resume_reading()
            try:
                await self._body
            finally:
                self._body = None
        body = bytes(self.buf[:self.need])
        del self.buf[:self.need]
        self.need = 0
        return body

    def may_keep(self) -> bool:
        """Whether the connection may serve another request after this answer, as far as
        the body goes: taken, or small enough to drop as it arrives and not late."""
        return not self.need or (not self.late and self.need - len(self.buf) <= DRAIN_MAX)

    def _drop_body(self) -> bool:
        """Drop what has come of a body its route left unread; True once none is left."""
        gone = min(len(self.buf), self.need)
        if gone:
            del self.buf[:gone]
            self.need -= gone
        return not self.need

    def _between(self) -> None:
        """After an answer: the next request if it has begun, else an idle spell."""
        if self.buf:
            self.phase = IDLE  # _next starts the head's time if it is not all here
            self._next()
        else:
            self.phase = IDLE
            self.deadline.start(self.limits.idle_s)
            self._resume_reading()

    def _expired(self) -> None:
        if self.phase == BODY:
            # the route answers (408 when it waits for the body); the connection then closes
            self.late = True
            self.phase = BUSY
            self._wake_body(too_slow())
        elif self.phase in (HEAD, IDLE, DRAIN):  # a head, a body dropped or an idle spell
            self.close()

    def _wake_body(self, error: BaseException | None) -> None:
        waiter = self._body
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def _handoff(self) -> None:
        """aiohttp's server takes the connection, and every byte not read yet."""
        assert self.transport is not None
        self.server.connections.discard(self)
        self.counted = False  # the count goes with the connection
        head_by = self.deadline.at if self.phase == HEAD else (
            self.deadline.loop.time() + self.limits.header_s)
        self.deadline.cancel()
        handed = Handed(self.server.fallback(), self.limits.header_s, self.server.release,
                        head_by)
        self.transport.set_protocol(handed)
        handed.connection_made(self.transport)
        data, self.buf = bytes(self.buf), bytearray()
        if data:
            handed.data_received(data)
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
        self.phase = CLOSED
        if self.transport is not None:
            self.transport.close()

    def _wake_writer(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause_reading(self) -> None:
        if self._reading and self.transport is not None:
            self.transport.pause_reading()
            self._reading = False

    def _resume_reading(self) -> None:
        if not self._reading and self.transport is not None:
            self.transport.resume_reading()
            self._reading = True


class H1Site(web.SockSite):
    """aiohttp's site for a listening socket, with H1Server in front: aiohttp's runner
    starts and stops it with the application."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket,
                 routes: Mapping[str, Handler], limits: Limits, stop: Stop,
                 on_stop: Callable[[], None] | None = None) -> None:
        super().__init__(runner, sock, backlog=1024)
        self._routes, self._limits, self._stop = routes, limits, stop
        self._on_stop = on_stop  # as it stops taking connections (calls waiting: answered)
        self.h1: H1Server | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; the server is made here
        fallback = self._runner.server
        assert fallback is not None
        self.h1 = H1Server(self._routes, fallback, self._limits)
        self._server = await asyncio.get_running_loop().create_server(
            self.h1.protocol, sock=self._sock, backlog=self._backlog)

    async def stop(self) -> None:
        """No new connections; the answers in progress on both servers get the stop's grace
        at the same time (aiohttp's, for the connections handed to it, waits up to twice the
        time it is given: for the answer, then for its cancellation)."""
        self._stop.begin()
        await super().stop()
        if self._on_stop is not None:
            self._on_stop()
        started, grace = time.monotonic(), self._stop.grace()
        waits = [] if self.h1 is None else [self.h1.shutdown(grace)]
        fallback = self._runner.server
        if fallback is not None:
            fallback.pre_shutdown()
            waits.append(fallback.shutdown(grace / 2))
        await asyncio.gather(*waits)
        self._stop.took("answers in progress", time.monotonic() - started)
