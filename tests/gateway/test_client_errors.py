"""A client's malformed request is logged as one INFO line, a few a second at most."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from outlay.gateway.client_errors import ClientErrorFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                             "Error handling request from %s", ("127.0.0.1",), exc_info)


def test_a_bad_head_becomes_one_info_line_without_a_traceback() -> None:
    quiet = ClientErrorFilter()
    bad = record(BadHttpMessage("Invalid header value char:\n\n  b'X-A: \\x01'\n   ^"))
    assert quiet.filter(bad)
    assert (bad.levelno, bad.levelname, bad.exc_info, bad.exc_text) == (
        logging.INFO, "INFO", None, None)
    assert bad.getMessage() == ("malformed request refused: 400, message: Invalid header "
                                "value char: b'X-A: \\x01' ^")
    assert "\n" not in bad.getMessage()


def test_other_records_pass_untouched() -> None:
    quiet = ClientErrorFilter()
    crash = record(RuntimeError("a bug of ours"))
    plain = record(None)
    assert quiet.filter(crash)
    assert quiet.filter(plain)
    assert crash.levelno == logging.ERROR
    assert crash.exc_info is not None
    assert plain.getMessage() == "Error handling request from 127.0.0.1"


def test_a_flood_is_held_to_a_few_lines_a_second_and_counted() -> None:
    clock = Clock()
    quiet = ClientErrorFilter(per_second=3, clock=clock)
    passed = [quiet.filter(record(BadHttpMessage("bad"))) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    clock.now += 1
    nxt = record(BadHttpMessage("bad"))
    assert quiet.filter(nxt)
    assert nxt.getMessage().endswith("(7 more not logged)")
    again = record(BadHttpMessage("bad"))
    assert quiet.filter(again)
    assert "more not logged" not in again.getMessage()
