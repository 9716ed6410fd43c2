"""A real `outlay serve` fed malformed and hostile requests carrying an agent key and the
admin token: afterwards its whole output (stdout and stderr) holds neither."""

from __future__ import annotations

import base64
import contextlib
import socket
import time

import pytest

from .harness import ADMIN_TOKEN, SHARED_CONFIG, Launch, unique

pytestmark = pytest.mark.e2e

READ_S = 1.0  # a malformed head that gets no answer is given up on after this


def send(port: int, data: bytes) -> bytes:
    """Send `data` on a connection of its own; whatever comes back within READ_S."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + READ_S
        with contextlib.suppress(OSError):  # a timeout, or a reset after a 400
            while time.monotonic() < deadline:
                piece = sock.recv(65536)
                if not piece:
                    break
                got += piece
    return got


def hostile_requests(key: bytes, admin: bytes) -> list[bytes]:
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    length = b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return [
        # a control byte in the credential's own line: aiohttp quotes the line
        post + b"Authorization: Bearer " + key + b"\x01zz\r\n\r\n",
        b"GET /admin/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin
        + b"\x7f\r\n\r\n",
        # a line too long: aiohttp quotes its value
        b"GET /admin/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin
        + b"a" * 9000 + b"\r\n\r\n",
        post + b"x-api-key: " + key + b"b" * 9000 + b"\r\n\r\n",
        # bare LF and bare CR after the credential, a bare-LF head, a bad header name
        post + b"x-api-key: " + key + b"\nFoo: bar\r\n\r\n",
        post + b"x-api-key: " + key + b"\rFoo: bar\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\nHost: x\nx-api-key: " + key + b"\n\n",
        post + b"Authorization: Bearer " + key + b"\r\n\x01Foo: bar\r\n\r\n",
        # framing that cannot be read one way only
        post + b"Authorization: Bearer " + key + b"\r\nTransfer-Encoding: chunked\r\n"
        + length + b"\r\n" + body,
        # the key in a request line that is not one
        b"POST /v1/chat/completions?key=" + key + b"\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /admin/v1/keys?token=" + admin + b" \x00 HTTP/1.1\r\n\r\n",
        # bytes that are not UTF-8 in and after the credential
        post + length + b"Authorization: Bearer " + key + b"\xff\xfe\r\n\r\n" + body,
        post + length + b"Authorization: Bearer " + key + b"\r\nX-Outlay-Approval: \xff\r\n\r\n"
        + body,
        b"POST /vendors/twilio/2010-04-01/Accounts/AC1/Messages.json HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Basic " + base64.b64encode(b"AC1:" + key + b"\xff") + b"\xfe\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"GET /admin/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin
        + b"\xff\r\n\r\n",
        # a TLS ClientHello's first bytes, then the key as if in its payload
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + key + admin,
    ]


def test_no_key_or_admin_token_in_the_log_after_malformed_requests(launch: Launch) -> None:
    gateway = launch(SHARED_CONFIG, workers=2, name="logscan")
    secret = gateway.mint_key(unique("log-scan"))["key"]
    key, admin = secret.encode(), ADMIN_TOKEN.encode()
    answers = [send(gateway.port, raw) for raw in hostile_requests(key, admin)]
    assert sum(a.startswith(b"HTTP/1.") for a in answers) >= 12, answers
    assert not [a for a in answers if a.startswith((b"HTTP/1.1 5", b"HTTP/1.0 5"))], answers
    gateway.stop()  # everything it had to say is written

    log = gateway.log()
    # a malformed head is logged with the line it stopped at (the admin's line too long
    # quotes "Bearer <token>"): the scrubbing had something to do, and did it; and a
    # client's mistake is one line, not a server error with a traceback
    assert "malformed request refused" in log
    assert "Traceback" not in log
    assert "[redacted]" in log
    for leaked in (secret, secret.removeprefix("olk_"), ADMIN_TOKEN):
        assert leaked not in log, f"{leaked} is in the log:\n{log}"
