"""No credential reaches the log: the text of every form aiohttp and Outlay write one in is
scrubbed, and the filter `outlay serve` installs scrubs messages, arguments and tracebacks."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import replace
from types import MappingProxyType

import pytest

from outlay.gateway import redaction
from outlay.gateway.redaction import REDACTED, RedactingFilter, Redactor, install, secrets_of
from outlay.settings import load_settings

KEY = "olk_3aYptX16fwfVwa71KKRAxWajNmpj4dVxzIZ_YCrxokM"
ADMIN = "oladm_Qm9vbGVhbiBsb2dpYyBpcyBmdW4"
CUSTOM = "e2e-admin-token-0123456789"  # an operator's own admin token: no prefix to spot

# (what was logged, what must be gone from it)
LEAKS = [
    # aiohttp's BadHttpMessage quotes the offending head line
    (f"Invalid header value char:\n\n  b'Authorization: Bearer {KEY}\\x01zz'\n     ^", KEY),
    (f"Missing expected CR after header value:\n\n  b'x-api-key: {KEY}\\nFoo: bar'", KEY),
    (f"Missing expected LF after header value:\n\n  b'X-Api-Key: {KEY}\\rFoo: bar'", KEY),
    # and "line too long" only the value
    (f"Got more than 8190 bytes when reading: b'Bearer {ADMIN}aaaaaaaaaa...'.", ADMIN),
    (f"Got more than 8190 bytes when reading: b'Bearer {CUSTOM}aaaaaaaaaa...'.", CUSTOM),
    (f"Got more than 8190 bytes when reading: b'{KEY}aaaaaaaaaa...'.", KEY),
    # a head as text, a mapping of headers, a repr of a pair
    (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n", KEY),
    (f"{{'Authorization': 'Bearer {CUSTOM}', 'x-api-key': '{KEY}'}}", CUSTOM),
    (f"{{'Authorization': 'Bearer {CUSTOM}', 'x-api-key': '{KEY}'}}", KEY),
    (f"('api-key', '{CUSTOM}')", CUSTOM),
    (f"Proxy-Authorization: Basic {CUSTOM}", CUSTOM),
    (f"Cookie: session={CUSTOM}", CUSTOM),
    ("Authorization: Basic QUMxOm9sa19zZWNyZXQ=", "QUMxOm9sa19zZWNyZXQ="),
    # keys and tokens anywhere, escaped bytes in them included
    (f"no such key {KEY} (revoked)", KEY),
    (f"admin token {ADMIN}.", ADMIN),
    ("b'olk_ab\\xffcdSECRETTAIL'", "SECRETTAIL"),
    (f"bearer\t{CUSTOM}", CUSTOM),
]


@pytest.mark.parametrize(("text", "secret"), LEAKS)
def test_every_form_of_a_credential_is_redacted(text: str, secret: str) -> None:
    clean = Redactor()(text)
    assert secret not in clean
    assert REDACTED in clean
    assert Redactor()(clean) == clean  # scrubbing twice changes nothing


def test_a_configured_secret_is_redacted_wherever_it_stands() -> None:
    redact = Redactor([CUSTOM, "sk-live-provider-key", None, "short"])
    clean = redact(f"upstream said: bad key sk-live-provider-key; token={CUSTOM}x; short")
    assert "sk-live-provider-key" not in clean
    assert CUSTOM not in clean
    assert clean.endswith("; short")  # too short to be told from a word: left alone


@pytest.mark.parametrize("text", [
    "Error handling request from 127.0.0.1",
    "answering 503 enforcement_unavailable: state store failed: disk I/O error",
    "worker 4242 exited (status 9); starting another",
    "An Authorization header is required",
    "charged 3 abandoned reservations in full",
    'scheme, _, token = request.headers.get("Authorization", "").partition(" ")',
])
def test_text_without_a_credential_is_left_as_it_is(text: str) -> None:
    assert Redactor()(text) == text


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing to a buffer, as `outlay serve` writes its log."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor([CUSTOM])))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_the_filter_scrubs_the_message_its_arguments_and_the_traceback(
    log: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, buffer = log
    try:
        raise ValueError(f"Invalid header value char: b'Authorization: Bearer {KEY}\\x01'")
    except ValueError:
        logger.exception("Error handling request %s with %s", KEY, CUSTOM)
    logger.warning("plain %d%%", 5)
    logger.warning("%s %s", "too few")  # arguments that do not fit: the bare message, no crash
    written = buffer.getvalue()
    assert KEY not in written
    assert CUSTOM not in written
    assert "Traceback (most recent call last)" in written
    assert "ValueError: Invalid header value char" in written
    assert "WARNING plain 5%" in written
    assert "WARNING %s %s" in written


@pytest.fixture
def clean_loggers() -> Iterator[None]:
    """install() changes process-wide loggers: they get their filters back afterwards."""
    targets = [*logging.getLogger().handlers,
               *(logging.getLogger(name) for name in redaction.LOGGERS)]
    before = {id(t): list(t.filters) for t in targets}
    try:
        yield
    finally:
        for target in targets:
            target.filters[:] = before[id(target)]


@pytest.mark.usefixtures("clean_loggers")
def test_install_covers_aiohttps_loggers_whatever_handler_takes_their_records(
    caplog: pytest.LogCaptureFixture
) -> None:
    install([CUSTOM])
    scrub = install([CUSTOM])  # again: replaced, not doubled
    server = logging.getLogger("aiohttp.server")
    assert [f for f in server.filters if isinstance(f, RedactingFilter)] == [scrub]
    with caplog.at_level(logging.ERROR, "aiohttp.server"):
        server.error("Error handling request: b'Authorization: Bearer %s'", CUSTOM)
    assert CUSTOM not in caplog.text
    assert REDACTED in caplog.text


def test_the_secrets_of_the_configuration() -> None:
    settings = load_settings(None, {
        "OUTLAY_ADMIN_TOKEN": CUSTOM, "OPENAI_API_KEY": "sk-openai-1234",
        "OUTLAY_METRICS_TOKEN": "scrape-token-0123456789",
    })
    assert {CUSTOM, "sk-openai-1234", "scrape-token-0123456789"} <= set(secrets_of(settings))
    vendors = replace(settings, vendors=MappingProxyType({
        "stripe": {"secret": "sk_test_123456"},
        "twilio": {"account_sid": "AC1", "auth_token": "twilio-token-1"}}))
    assert {"sk_test_123456", "twilio-token-1"} <= set(secrets_of(vendors))


def test_a_vendor_section_serve_will_refuse_still_gives_the_other_secrets() -> None:
    # no base_url for a vendor Outlay does not know: serve stops at start with its message
    settings = replace(load_settings(None, {"OUTLAY_ADMIN_TOKEN": CUSTOM}),
                       vendors=MappingProxyType({"acme": {"secret": "acme-secret-1"}}))
    assert [s for s in secrets_of(settings) if s] == [CUSTOM]
