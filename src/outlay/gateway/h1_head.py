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

from multidict import CIMultiDict

from outlay.values import value

MAX_HEAD = 16_384  # bytes; a longer head is aiohttp's to refuse or accept
_START = b"POST /"  # how every plain head begins
# a header name is an RFC 9110 token
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# printable ASCII and tab: once they are deleted from a plain head, only its CRLFs are left
_VISIBLE = bytes([0x09, *range(0x20, 0x7F)])
# headers that make a request more than a plain one (content-length is read below)
_NOT_PLAIN = {"transfer-encoding", "expect", "upgrade"}
_READ = {"content-length", "connection", *_NOT_PLAIN}  # the headers the loop looks at
# header names already seen to be tokens, each with its lower case: agents' SDKs send the same
# dozen names on every request (bounded: a client may send any names it likes)
_TOKENS: dict[str, str] = {}
_TOKENS_MAX = 1024


class Handoff:
    """Not a plain request on an LLM route: aiohttp's server takes the connection."""


HANDOFF = Handoff()


@value  # one per request: a frozen dataclass's fields cost a setattr call each
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
    raw = buf[:end]
    if not _clean(raw):
        return HANDOFF
    text = raw.decode("ascii")
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
    names = _TOKENS
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return HANDOFF
        low = names.get(name)
        if low is None:
            # most names are letters, digits and dashes: told so without the regex (the
            # head is ASCII, so isalnum means [0-9A-Za-z])
            if not (name.replace("-", "").isalnum() or _NAME.fullmatch(name)):
                return HANDOFF
            low = name.lower()
            if len(names) < _TOKENS_MAX:
                names[name] = low
        value = value.strip(" \t")
        if low in _READ:
            if low == "content-length":
                if length is not None or not value.isdigit() or len(value) > 18:
                    return HANDOFF
                length = int(value)
            elif low == "connection":
                tokens = {token.strip().lower() for token in value.split(",")}
                if "upgrade" in tokens:
                    return HANDOFF
                close = close or "close" in tokens
            else:
                return HANDOFF
        pairs.append((name, value))
    if length is None or length > max_body:
        return HANDOFF
    return Head(path, query, CIMultiDict(pairs), length, end + 4, close)


def _may_be_plain(buf: bytes | bytearray) -> bool:
    """Whether the start of a head, not yet whole, may still become a plain one."""
    if not _START.startswith(buf[:len(_START)]):
        return False
    # a CR at the very end may yet be followed by its LF
    return _clean(buf[:-1] if buf.endswith(b"\r") else buf)


def _clean(raw: bytes | bytearray) -> bool:
    """Whether `raw` holds only printable ASCII and tabs, and CR and LF only together as
    CRLF: what is left without the visible bytes is then CRLF as many times as `raw` holds
    it (the count sees every CR and LF of a CRLF, and each just once). Two passes in C: a
    regular expression with lookarounds at every position took 10 µs on a typical head."""
    return raw.translate(None, _VISIBLE) == b"\r\n" * raw.count(b"\r\n")
