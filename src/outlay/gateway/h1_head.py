"""Reading the head of an HTTP/1.1 request on the LLM routes, for gateway/h1.py.

Only the plain shape that agents' SDKs send is read here: `POST <route> HTTP/1.1`, ASCII,
a body of `Content-Length` bytes. Anything else (another route or method, HTTP/1.0, chunked
bodies, `Expect`, upgrades, a body over the limit, a malformed or unusual line) is not
judged here at all: the connection goes to aiohttp's server, which reads the same bytes
from the start. Nothing this reader accepts can be read two ways.

An unfinished head goes to aiohttp as soon as its first bytes show it cannot be a plain one
(another method, a TLS handshake, a bare CR or LF, a control or non-ASCII byte): aiohttp
answers a malformed one 400 at once instead of both servers waiting for a `CRLFCRLF` that
never comes.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

from multidict import CIMultiDict

MAX_HEAD = 16_384  # bytes; a longer head is aiohttp's to refuse or accept
_START = b"POST /"  # how every plain head begins
# a header name is an RFC 9110 token
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# control characters, and CR or LF anywhere but together at a line's end
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")
# headers that make a request more than a plain one (content-length is read below)
_NOT_PLAIN = {"transfer-encoding", "expect", "upgrade"}


class Handoff:
    """Not a plain request on an LLM route: aiohttp's server takes the connection."""


HANDOFF = Handoff()


@dataclass(frozen=True, slots=True)
class Head:
    path: str
    query: str
    headers: CIMultiDict[str]
    length: int  # body bytes
    end: int  # where the body starts in the buffer
    close: bool  # `Connection: close`: the connection ends after the answer


def parse_head(buf: bytes | bytearray, routes: Container[str], max_body: int
               ) -> Head | Handoff | None:
    """The head at the start of `buf`; None while it is incomplete."""
    end = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
    if end < 0:
        return HANDOFF if len(buf) > MAX_HEAD + 3 or not _may_be_plain(buf) else None
    raw = bytes(buf[:end])
    if not raw.isascii():
        return HANDOFF
    text = raw.decode("ascii")
    if _BAD_CHARS.search(text):
        return HANDOFF
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "POST" or parts[2] != "HTTP/1.1" or "#" in parts[1]:
        return HANDOFF
    path, _, query = parts[1].partition("?")
    if path not in routes:
        return HANDOFF
    pairs: list[tuple[str, str]] = []
    length: int | None = None
    close = False
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _NAME.fullmatch(name):
            return HANDOFF
        value = value.strip(" \t")
        low = name.lower()
        if low == "content-length":
            if length is not None or not value.isdigit() or len(value) > 18:
                return HANDOFF
            length = int(value)
        elif low == "connection":
            tokens = {token.strip().lower() for token in value.split(",")}
            if "upgrade" in tokens:
                return HANDOFF
            close = close or "close" in tokens
        elif low in _NOT_PLAIN:
            return HANDOFF
        pairs.append((name, value))
    if length is None or length > max_body:
        return HANDOFF
    return Head(path, query, CIMultiDict(pairs), length, end + 4, close)


def _may_be_plain(buf: bytes | bytearray) -> bool:
    """Whether the start of a head, not yet whole, may still become a plain one."""
    if not _START.startswith(buf[:len(_START)]) or not buf.isascii():
        return False
    # a CR at the very end may yet be followed by its LF
    text = bytes(buf[:-1] if buf.endswith(b"\r") else buf).decode("ascii")
    return _BAD_CHARS.search(text) is None
