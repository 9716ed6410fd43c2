"""No credential in the log: every record `outlay serve` writes is scrubbed of them first.

aiohttp logs the raw line of a malformed request head ("Error handling request", with the
BadHttpMessage that quotes it), and that line can be `Authorization: Bearer olk_…`. So the
scrubbing is a logging.Filter on the log's handlers and on the loggers that write request
text, which rewrites each record's message, arguments and traceback text: what a
credential looks like in a header line, after an auth scheme, as an Outlay key or admin
token, and the secrets of the configuration themselves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator

from outlay.settings import Settings
from outlay.upstream.vendors_http import vendor_endpoints

REDACTED = "[redacted]"
# Loggers that write request text (aiohttp's server, its access log, its web handlers) or
# errors that may quote it (Outlay's own). A filter on a logger sees only its own records,
# so the handlers get one as well.
LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.internal",
           "aiohttp.client", "asyncio", "outlay", "outlay.gateway", "outlay.state",
           "outlay.webhooks")
# A credential header as a head line, a repr of one (b'x-api-key: …'), in a mapping
# ('Authorization': '…') or a pair ('api-key', '…'): the value runs to the end of the line
# or of the quoted text.
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key|cookie)"
    r"""(['"]?[ \t]*[:=][ \t]*['"]?|['"][ \t]*,[ \t]*['"])[^'"\r\n]+""")
# A credential after its scheme, wherever it stands (aiohttp's "line too long" quotes only
# the value: b'Bearer oladm_…').
_SCHEME = re.compile(r"""(?i)\b(bearer|basic)([ \t]+)[^\s'"]+""")
# Outlay's keys and admin tokens by their prefix; a backslash is part of one as well, so a
# key with escaped bytes in it (olk_ab\xffcd, in a repr) goes whole.
_TOKEN = re.compile(r"\b(olk|oladm)_[A-Za-z0-9_\-\\]+")
_SHORTEST_SECRET = 6  # shorter configured "secrets" would blank out ordinary words


class Redactor:
    """Text with every credential in it replaced by [redacted]."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= _SHORTEST_SECRET},
                       key=len, reverse=True)  # a secret holding another goes first
        self._secrets = re.compile("|".join(map(re.escape, known))) if known else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
        text = _SCHEME.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
        return _TOKEN.sub(lambda m: f"{m[1]}_{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Scrubs each record it sees, in place, and lets it through."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports that itself
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            # the traceback as the handler's formatter would write it, scrubbed once here
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()


def secrets_of(settings: Settings) -> Iterator[str | None]:
    """The credentials of the configuration: the admin and metrics tokens, providers' and
    vendors' keys."""
    yield settings.admin_token
    yield settings.metrics_token
    yield settings.secret_key
    yield from settings.old_secret_keys
    for endpoints in settings.providers.values():
        yield from (endpoint.api_key for endpoint in endpoints)
    try:
        vendors = vendor_endpoints(settings.vendors)
    except ValueError:  # a section serve refuses at start anyway
        return
    for vendor in vendors.values():
        yield vendor.secret
        yield from (value for _, value in vendor.credential_headers())


def install(secrets: Iterable[str | None] = ()) -> RedactingFilter:
    """Scrub every record of the root logger's handlers (configure them first) and of
    LOGGERS, whatever handler takes them. Installing again replaces the filter."""
    scrub = RedactingFilter(Redactor(secrets))
    targets: list[logging.Filterer] = [*logging.getLogger().handlers]
    targets += [logging.getLogger(name) for name in LOGGERS]
    for target in targets:
        for old in [f for f in target.filters if isinstance(f, RedactingFilter)]:
            target.removeFilter(old)
        target.addFilter(scrub)
    return scrub
