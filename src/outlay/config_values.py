"""Converters of configuration values: each takes a value and the place it came from, and
returns the value or raises ConfigError naming the place."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from outlay.gateway.header_values import CREDENTIAL_MAX, printable_ascii

MIN_TOKEN_CHARS = 16


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the file or variable and the key."""


def known_fields(raw: Mapping[Any, object], known: Iterable[str], where: str) -> None:
    """ConfigError naming the fields of a section that are not among `known`."""
    names = tuple(known)
    unknown = sorted(str(key) for key in set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(names)}")


def nonempty_text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


def credential(value: object, where: str) -> str:
    """A secret clients send in a header: the gateway takes only printable ASCII there
    (gateway/header_values.py), so another token could never be presented."""
    text = nonempty_text(value, where)
    if not printable_ascii(text, CREDENTIAL_MAX):
        raise ConfigError(f"{where} must be at most {CREDENTIAL_MAX} printable ASCII "
                          "characters (0x20-0x7E)")
    return text


def bind_host(value: object, where: str) -> str:
    text = nonempty_text(value, where)
    # `--host [::1]` is how people copy an IPv6 address out of a URL; bind wants it bare.
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def url_text(value: object, where: str) -> str:
    text = nonempty_text(value, where)
    if "://" not in text:
        raise ConfigError(f"{where} must be a URL such as sqlite:///outlay.db, got {text!r}")
    return text


def number(value: object, where: str, *, integer: bool, minimum: float) -> float:
    parsed: object = value
    if isinstance(value, str):  # environment variables and flags arrive as text
        try:
            parsed = int(value) if integer else float(value)
        except ValueError:
            parsed = None
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if (
        isinstance(parsed, bool)
        or not isinstance(parsed, int | float)
        or not isinstance(parsed, kinds)
        or not math.isfinite(parsed)
        or parsed < minimum
    ):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind} >= {minimum:g}, got {value!r}")
    return parsed


def integer(minimum: int) -> Callable[[object, str], int]:
    return lambda value, where: int(number(value, where, integer=True, minimum=minimum))


def real(minimum: float) -> Callable[[object, str], float]:
    return lambda value, where: float(number(value, where, integer=False, minimum=minimum))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration(value: object, where: str) -> float:
    """Seconds, given as a number or as text with a unit: 3600, "90s", "30m", "1h", "7d"."""
    if isinstance(value, str):
        found = _DURATION.fullmatch(value.strip())
        if found is None:
            raise ConfigError(f"{where} must be seconds or a duration such as 90s, 30m, 1h or "
                              f"7d, got {value!r}")
        value = float(found[1]) * _UNIT_S[found[2]]
    seconds = number(value, where, integer=False, minimum=0)
    if seconds < 1:
        raise ConfigError(f"{where} must be at least 1 second, got {value!r}")
    return seconds


def bearer_token(value: object, where: str) -> str:
    """A bearer token: long enough not to be guessed, and sendable in a header as it is."""
    text = nonempty_text(value, where)
    if len(text) < MIN_TOKEN_CHARS or not all("!" <= ch <= "~" for ch in text):
        # the value is a secret: the message says what is wrong with it, never what it is
        raise ConfigError(f"{where} must be at least {MIN_TOKEN_CHARS} printable ASCII "
                          f"characters without spaces (got {len(text)} characters)")
    return text


def bearer_tokens(value: object, where: str) -> tuple[str, ...]:
    """Bearer tokens, comma-separated or a list (each as `bearer_token` checks it)."""
    parts = value if isinstance(value, list) else nonempty_text(value, where).split(",")
    return tuple(bearer_token(part.strip() if isinstance(part, str) else part, where)
                 for part in parts if not isinstance(part, str) or part.strip())


def port_number(value: object, where: str) -> int:
    port = integer(0)(value, where)  # 0 asks the OS for a free port, handy in tests
    if port > 65535:
        raise ConfigError(f"{where} must be a port number up to 65535, got {value!r}")
    return port


def parse_listen(value: object, where: str = "listen") -> tuple[str, int]:
    """Split ``host:port`` or ``[ipv6]:port`` into (host, port); IPv6 hosts lose the brackets."""
    text = nonempty_text(value, where)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:  # a bare IPv6 address: its colons make the port ambiguous
            sep = ""
    if not sep or not host or not port:
        raise ConfigError(f"{where} must be host:port or [ipv6]:port, got {text!r}")
    return host, port_number(port, f"{where} port")
