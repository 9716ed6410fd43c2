"""One request and its answer on gateway/h1.py's server, as the LLM routes see them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

from outlay.gateway.exchange import Exchange
from outlay.gateway.h1_head import Head

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_NO_BODY = {204, 304}  # answers that never have a body, nor a length (RFC 9110 §8.6)


class Dates:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._now = (0, "")

    def now(self) -> str:
        second = int(time.time())
        if self._now[0] != second:
            self._now = (second, formatdate(second, usegmt=True))
        return self._now[1]


class _Served(Protocol):
    @property
    def dates(self) -> Dates: ...


class Connection(Protocol):
    """What an exchange needs of its connection (gateway/h1.py's H1Connection)."""

    lost: bool

    @property
    def server(self) -> _Served: ...
    async def take_body(self) -> bytes: ...
    def may_keep(self) -> bool: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


class H1Exchange(Exchange):
    def __init__(self, conn: Connection, head: Head) -> None:
        self.conn = conn
        self.headers = head.headers
        self.query = head.query
        ctype = head.headers.get("Content-Type")
        self.content_type = (ctype.partition(";")[0].strip().lower() if ctype
                             else "application/octet-stream")
        self.keep = not head.close  # the connection serves another request after this one
        self.state = "new"  # new → streaming → done, or cut (abort)
        self._unsent = b""  # a stream's head, until its first chunk

    def gone(self) -> bool:
        return self.conn.lost

    async def body(self, max_bytes: int) -> bytes:
        # longer bodies than the limit never get here (h1_head); a late one raises TooSlow
        return await self.conn.take_body()

    def _head(self, status: int, headers: Mapping[str, str], framing: str | None) -> bytes:
        if self.state != "new":
            raise RuntimeError("the answer has already begun")
        if self.keep and not self.conn.may_keep():
            self.keep = False  # a body left unread that is too large, or too late, to drop
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                 f"Date: {self.conn.server.dates.now()}"]
        if framing is not None:
            lines.append(framing)
        # joined, not formatted: a CIMultiDict's names are istr, which an f-string formats
        # through the slow path for str subclasses (a tenth of a µs each, some twenty a call)
        lines += map(": ".join, headers.items())
        if not self.keep:
            lines.append("Connection: close")
        # no line break but between lines: looked for in the lines' text (memchr), rather
        # than counted over the whole head
        flat = "".join(lines)
        if "\n" in flat or "\r" in flat:
            raise ValueError("a header name or value holds a line break")
        lines += ("", "")  # the blank line that ends the head
        return "\r\n".join(lines).encode()

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
        self.state = "cut"  # over, on purpose: not a route that forgot to answer
        self.conn.close()
