"""The `telemetry:` section of the configuration: where each agent call's span is exported
over OTLP/HTTP (off when the section is absent or names no endpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from outlay import config_values as cv
from outlay.config_values import ConfigError, known_fields

TRACES_PATH = "/v1/traces"
_FIELDS = ("otlp_endpoint", "service_name", "headers", "timeout_s", "max_queue")


@dataclass(frozen=True)
class TelemetrySettings:
    """An OTLP/HTTP trace exporter: where to send, with which headers, how long to wait."""

    traces_url: str  # the endpoint with /v1/traces, as OTLP/HTTP exporters build it
    service_name: str = "outlay"
    # sent with every export (a collector's API key): never logged, never in repr
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}),
                                       repr=False)
    timeout_s: float = 5.0  # per export, connect to last byte
    max_queue: int = 2048  # spans waiting to be sent, per worker; more are dropped


def telemetry_section(raw: object, where: str) -> TelemetrySettings | None:
    """The exporter the section configures; None when it is absent or names no endpoint."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping like {{otlp_endpoint: "
                          f"http://127.0.0.1:4318}}, got {type(raw).__name__}")
    known_fields(raw, _FIELDS, where)
    if raw.get("otlp_endpoint") is None:
        return None  # an unset env: reference turns the export off, as it is by default
    values: dict[str, Any] = {"traces_url": traces_url(raw["otlp_endpoint"],
                                                       f"{where}.otlp_endpoint")}
    if raw.get("service_name") is not None:
        values["service_name"] = cv.nonempty_text(raw["service_name"], f"{where}.service_name")
    if raw.get("headers") is not None:
        values["headers"] = MappingProxyType(_headers(raw["headers"], f"{where}.headers"))
    if raw.get("timeout_s") is not None:
        values["timeout_s"] = cv.real(0.001)(raw["timeout_s"], f"{where}.timeout_s")
    if raw.get("max_queue") is not None:
        values["max_queue"] = cv.integer(1)(raw["max_queue"], f"{where}.max_queue")
    return TelemetrySettings(**values)


def traces_url(value: object, where: str) -> str:
    """An OTLP/HTTP endpoint (`http://collector:4318`) as the URL spans are posted to: the
    base gets `/v1/traces`, a URL already ending in it is kept."""
    text = cv.nonempty_text(value, where)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} must be an http:// or https:// URL such as "
                          f"http://127.0.0.1:4318, got {text!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where} must not carry a query or fragment, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ConfigError(f"{where} has a bad port, got {text!r}") from None
    base = text.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _headers(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of header names to values")
    headers = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name or not name.isascii() or any(
                c in name for c in " :\t\r\n"):
            raise ConfigError(f"{where}: {name!r} is not a header name")
        headers[name] = cv.credential(text, f"{where}.{name}")
    return headers
