"""The head reader of the LLM routes' server: the plain requests it reads, and everything it
leaves to aiohttp's server untouched."""

from __future__ import annotations

import pytest

from outlay.gateway.h1_head import HANDOFF, MAX_HEAD, Head, parse_head

ROUTES = {"/v1/chat/completions", "/v1/messages"}
BODY = b'{"model": "m"}'


def request(*headers: str, line: str = "POST /v1/chat/completions HTTP/1.1",
            length: bool = True) -> bytes:
    lines = [line, "Host: gw", *headers]
    if length:
        lines.append(f"Content-Length: {len(BODY)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + BODY


def parse(data: bytes, max_body: int = 1000) -> Head:
    head = parse_head(data, ROUTES, max_body)
    assert isinstance(head, Head), head
    return head


def test_a_plain_request_is_read() -> None:
    data = request("Authorization: Bearer olk_1", "content-type:application/json ",
                   line="POST /v1/chat/completions?api-version=2 HTTP/1.1")
    head = parse(data)
    assert head.path == "/v1/chat/completions"
    assert head.query == "api-version=2"
    assert head.headers["authorization"] == "Bearer olk_1"
    assert head.headers["Content-Type"] == "application/json"  # spaces around trimmed
    assert head.length == len(BODY)
    assert data[head.end:] == BODY
    assert not head.close


def test_connection_close_is_noticed() -> None:
    assert parse(request("Connection: keep-alive, Close")).close
    assert parse(request("Connection: close", "Connection: keep-alive")).close


def test_an_incomplete_head_waits_for_more() -> None:
    data = request()
    end = data.index(b"\r\n\r\n")
    for cut in (0, 1, 5, 6, 30, end, end + 1, end + 3):
        assert parse_head(data[:cut], ROUTES, 1000) is None, data[:cut]


@pytest.mark.parametrize("start", [
    b"GET /healthz HTTP/1.1\nHost: x\n",  # bare LF
    b"POST /v1/chat/completions HTTP/1.1\nHost: x\n",
    b"POST /v1/chat/completions HTTP/1.1\rHost: x",  # bare CR
    b"POST /v1/chat/completions HTTP/1.1\r\nX-A: a\x01",
    b"POST /v1/chat/completions HTTP/1.1\r\nX-A: caf\xc3\xa9",
    b"POST /\xff",
    b"\x16\x03\x01\x00\xc4\x01\x00\x00\xc0\x03\x03",  # a TLS ClientHello
    b"hello there, this is not http",
    b"G",
    b"P0ST",
    b"\r\n",
], ids=repr)
def test_an_unfinished_head_that_cannot_be_plain_goes_to_aiohttp_at_once(start: bytes) -> None:
    # aiohttp judges it from its first byte: a malformed one is answered 400 at once
    assert parse_head(start, ROUTES, 1000) is HANDOFF


def test_header_names_may_hold_any_token_character() -> None:
    head = parse(request("X-!#$%&'*+.^_`|~9: a", "a_b: c", "-: d", "X-Tab:\tv\t"))
    assert head.headers["X-!#$%&'*+.^_`|~9"] == "a"
    assert head.headers["a_b"] == "c"
    assert head.headers["-"] == "d"
    assert head.headers["x-tab"] == "v"


def test_the_next_request_is_read_from_the_start_of_the_buffer() -> None:
    first, second = request(), request(line="POST /v1/messages HTTP/1.1")
    head = parse(first + second)
    assert head.end + head.length == len(first)
    assert parse((first + second)[len(first):]).path == "/v1/messages"


@pytest.mark.parametrize("data", [
    request(line="GET /v1/chat/completions HTTP/1.1"),
    request(line="POST /v1/models HTTP/1.1"),
    request(line="POST /admin/v1/keys HTTP/1.1"),
    request(line="POST /v1/chat/completions HTTP/1.0"),
    request(line="POST /v1/chat/completions  HTTP/1.1"),
    request(line="POST /v1/chat/completions#x HTTP/1.1"),
    request(line="POST http://gw/v1/chat/completions HTTP/1.1"),
    request("Transfer-Encoding: chunked", length=False),
    request("Transfer-Encoding: chunked"),
    request("Expect: 100-continue"),
    request("Upgrade: websocket", "Connection: upgrade"),
    request("Content-Length: 14"),  # twice, even when equal
    request("Content-Length: +14", length=False),
    request("Content-Length: 1_4", length=False),
    request("Content-Length: \u00b9\u2074", length=False),
    request("Content-Length: 99999999999999999999", length=False),
    request(length=False),
    request("Bad Name: x"),
    request("Name : x"),
    request(" folded: x"),
    request("NoColon"),
    request("X-Null: a\x00b"),
    request("X-Lone-LF: a\nb"),
    request("X-Lone-CR: a\rb"),
    request("X-LF-CR: a\n\rb"),  # as many CRs as LFs, but not as CRLFs
    request("X-CR-CRLF: a\r\r\nb"),
    request("X-CRLF-LF: a\r\n\nb"),
    request("X-Del: a\x7fb"),
    request("X-Vt: a\x0bb"),
    request("X-Utf8: caf\u00e9"),
    b"\r\n" + request(),
], ids=lambda data: repr(data[:60]))
def test_anything_but_a_plain_llm_request_goes_to_aiohttp(data: bytes) -> None:
    assert parse_head(data, ROUTES, 1000) is HANDOFF


def test_a_body_over_the_limit_goes_to_aiohttp() -> None:
    assert parse_head(request(), ROUTES, len(BODY) - 1) is HANDOFF
    assert isinstance(parse_head(request(), ROUTES, len(BODY)), Head)


def test_a_head_too_long_to_be_plain_goes_to_aiohttp() -> None:
    long = request("X-Long: " + "a" * MAX_HEAD)
    assert parse_head(long, ROUTES, 1000) is HANDOFF
    unfinished = long[: long.index(b"\r\n\r\n")]
    assert parse_head(unfinished, ROUTES, 1000) is HANDOFF
    assert parse_head(unfinished[:MAX_HEAD], ROUTES, 1000) is None


def test_names_seen_before_are_judged_as_the_first_time() -> None:
    """The names already read are kept with their lower case: a name seen before is still
    read the same, a line without a colon is still handed off (even one that is just a name
    seen before), and a name that is no token still is none."""
    from outlay.gateway import h1_head

    for _ in range(3):
        head = parse(request("X-Trace: 1", "content-TYPE: application/json"))
        assert head.headers["x-trace"] == "1"
        assert head.headers["Content-Type"] == "application/json"
        assert "X-Trace" in h1_head._TOKENS
        assert parse_head(request("X-Trace"), ROUTES, 1000) is HANDOFF
        assert parse_head(request("X Trace: 1"), ROUTES, 1000) is HANDOFF
        assert parse_head(request("Content-length: 1", "Content-Length: 1"), ROUTES,
                          1000) is HANDOFF


def test_the_names_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from outlay.gateway import h1_head

    monkeypatch.setattr(h1_head, "_TOKENS", {})
    for i in range(h1_head._TOKENS_MAX + 50):
        assert parse(request(f"X-N{i}: {i}")).headers[f"x-n{i}"] == str(i)
    assert len(h1_head._TOKENS) == h1_head._TOKENS_MAX
