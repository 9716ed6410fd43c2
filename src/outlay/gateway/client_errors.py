"""A client's malformed request is the client's mistake, not the server's: aiohttp logs each
one at ERROR with a traceback, so a stream of garbage bytes would flood the log with what
reads as server failures. This filter turns each into one INFO line without the traceback,
and lets at most a few through per second, saying how many it held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

LOGGER = "aiohttp.server"
PER_SECOND = 10


class ClientErrorFilter(logging.Filter):
    def __init__(self, per_second: int = PER_SECOND,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.per_second, self.clock = per_second, clock
        self.second, self.passed, self.held = -1, 0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        second = int(self.clock())
        if second != self.second:
            self.second, self.passed = second, 0
        if self.passed >= self.per_second:
            self.held += 1
            return False
        self.passed += 1
        summary = " ".join(str(error).split())  # the status, message and quoted line
        held, self.held = self.held, 0
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg = "malformed request refused: %s" + (" (%d more not logged)" if held else "")
        record.args = (summary, held) if held else (summary,)
        record.exc_info, record.exc_text = None, None
        return True


def install() -> ClientErrorFilter:
    """Put the filter on aiohttp's server logger (once; installing again replaces it)."""
    logger = logging.getLogger(LOGGER)
    for old in [f for f in logger.filters if isinstance(f, ClientErrorFilter)]:
        logger.removeFilter(old)
    quiet = ClientErrorFilter()
    logger.addFilter(quiet)
    return quiet
