"""A lean HTTP/1.1 client for forwarding: a pool of kept-alive connections per origin,
answers parsed by llhttp (httptools), body bytes handed over as they arrive.

Forwarding needs a request written and an answer read, nothing of a general client's
object model, hooks, cookies or redirects; on a loaded gateway those were a sixth of a
worker's CPU. Failures are the upstream package's own: UpstreamUnreachable when nothing
was sent, UpstreamBroken once the request may have been.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import deque

import httptools

from outlay.loops import RunningLoop
from outlay.upstream.base import UpstreamBroken, UpstreamUnreachable

IDLE_S = 15.0  # a kept-alive connection unused this long is closed rather than reused
HIGH_WATER = 256 * 1024  # body bytes buffered unread before reading the socket pauses
LOW_WATER = 64 * 1024  # … and resumes
EARLY_S = 0.001  # a timer this close to a wait's deadline counts as on time
_FRAMING = (b"content-length", b"transfer-encoding")  # headers that frame a body


class Pool:
    """Connections to one origin (scheme, host, port), at most `limit` open at once."""

    def __init__(
        self, host: str, port: int, *, tls: ssl.SSLContext | None, limit: int,
        connect_timeout_s: float, read_timeout_s: float,
    ) -> None:
        self.host, self.port, self.tls, self.limit = host, port, tls, limit
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.origin = f"{'https' if tls else 'http'}://{host}:{port}"
        self._idle: list[tuple[Connection, float]] = []  # the most recent last: reused first
        self._open: set[Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.loop = RunningLoop()

    async def exchange(self, head: bytes, body: bytes, *, expect_body: bool = True
                       ) -> Connection:
        """Send one request; return its connection once the answer's head is in."""
        conn = await self._acquire()
        conn.begin(expect_body)
        if len(body) < 65536:
            conn.transport.write(head + body)  # one write, one segment for a small call
        else:
            conn.transport.writelines((head, body))
        try:
            await conn.head()
        except BaseException:
            conn.close()
            raise
        return conn

    def release(self, conn: Connection) -> None:
        """Done with a connection: kept for the next request if its answer was read to the
        end and the server keeps it alive, closed otherwise."""
        if conn.reusable():
            self._idle.append((conn, time.monotonic()))
            self._wake_one()
        else:
            conn.close()

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    def lost(self, conn: Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()

    async def _acquire(self) -> Connection:
        while True:
            now = time.monotonic()
            while self._idle:
                conn, since = self._idle.pop()
                if not conn.closed and now - since < IDLE_S:
                    return conn
                conn.close()
            if len(self._open) < self.limit:
                return await self._connect()
            waiter = self.loop.get().create_future()
            self._waiters.append(waiter)
            await waiter

    async def _connect(self) -> Connection:
        loop = self.loop.get()
        conn = Connection(self)
        self._open.add(conn)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.lost(conn)
            what = f"no connection within {self.connect_timeout_s:g} s" if isinstance(
                exc, TimeoutError) else describe(exc)
            raise UpstreamUnreachable(f"cannot connect to {self.origin}: {what}") from exc
        except BaseException:  # cancelled: asyncio closes what it had opened
            self.lost(conn)
            raise
        return conn

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Connection(asyncio.Protocol):
    """One connection and the answer being read on it (llhttp's callbacks fill it)."""

    transport: asyncio.Transport

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        # one timer for the waits' time limit, moved lazily: a wait only records its
        # deadline, and the timer, firing early, sets itself again (a timer made and
        # cancelled per wait, twice a call, cost more than the rest of the wait)
        self._due = math.inf  # when the wait under way times out (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self.begin(True)

    def begin(self, expect_body: bool) -> None:
        """Ready to read the answer to a request just written (or the first one)."""
        self.expect_body = expect_body
        self.in_use = True
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = self.done = self.keep_alive = self.paused = False
        self.until_close = False  # a body that ends when the server closes
        self.error: UpstreamBroken | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self._waiter: asyncio.Future[None] | None = None

    # -- reading, for the pool and the response --------------------------------------------
    async def head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()
        if not self.expect_body:  # the answer to a HEAD: never framed by its headers
            self.done, self.keep_alive = True, False

    async def next_chunk(self) -> bytes | None:
        """The next body bytes, or None at the end of the body."""
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.paused and self.buffered <= LOW_WATER and not self.closed:
                    self.paused = False
                    self.transport.resume_reading()
                return chunk
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()

    def reusable(self) -> bool:
        return (self.done and self.keep_alive and not self.closed and not self.chunks
                and self.error is None)

    def close(self) -> None:
        if not self.done:  # whoever still waits on this answer learns it will not come
            self._fail(UpstreamBroken("the connection was closed"))
        self.in_use = False
        self._stop_timer()
        if not self.closed:
            self.closed = True
            self.transport.close()

    async def _wait(self) -> None:
        loop = self.pool.loop.loop
        assert loop is not None  # kept by the pool before it made this connection
        waiter = self._waiter = loop.create_future()
        self._due = loop.time() + self.pool.read_timeout_s
        if self._timer is None:  # else it fires before this deadline, and moves on to it
            self._timer = loop.call_at(self._due, self._time_out)
        try:
            await waiter
        finally:
            self._waiter = None
            self._due = math.inf

    def _time_out(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # no wait under way: the next one sets a timer
        loop = self.pool.loop.loop
        assert loop is not None
        if self._due - loop.time() > EARLY_S:  # a later wait than the one it was set for
            self._timer = loop.call_at(self._due, self._time_out)
            return
        waiter.set_exception(UpstreamBroken(f"no answer within {self.pool.read_timeout_s:g} s"))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamBroken) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the Transport API without deriving from its class
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use or self.done:
            # nothing was asked: a server talking out of turn is not to be trusted again
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"not a valid HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport: an HTTP/1.1 half-close ends the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        if self.in_use and not self.done:
            if self.head_done and self.until_close and exc is None:
                self._complete()  # the server closing was the end of the body
            else:
                self._fail(UpstreamBroken(
                    "the connection closed before the answer was complete"
                    + (f": {describe(exc)}" if exc is not None else "")))
        self.pool.lost(self)

    # -- llhttp's callbacks ----------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 1xx: an interim answer, the real one follows
            self.headers = []
            return
        self.status = status
        framed = False
        for name, _ in self.headers:  # a loop, not any() over a generator: every answer
            if name.lower() in _FRAMING:
                framed = True
                break
        self.until_close = not framed and status not in (204, 304)
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of a 1xx
        self.keep_alive = self.parser.should_keep_alive()
        self._complete()

    def _complete(self) -> None:
        self.done = True
        self._wake()


def describe(exc: BaseException) -> str:
    # timeouts and resets often carry an empty message; the class name is then the useful part
    return str(exc) or type(exc).__name__
