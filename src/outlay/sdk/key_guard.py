"""The Outlay key goes to the gateway and nowhere else.

An agent configured only by OPENAI_API_KEY hands the Outlay key to whatever reads that
variable: openai-agents' trace exporter sends it, as a bearer token, to OpenAI's tracing
endpoint. Once intercepted, every request sent through `requests`, `httpx` or `httpx2` (the
clients of the official SDKs, their exporters and most others) to any host but the gateway
loses each header carrying the key; and openai-agents' exporter does not send the traces
whose only credential is the key (they would be refused there anyway).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from outlay.sdk.patches import Patches, optional_import

_LOG = logging.getLogger("outlay.sdk")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class KeyGuard:
    """Where the key may go (the gateway's scheme, host and port) and the key itself."""

    gateway: tuple[str, str, int]
    key: str

    @classmethod
    def of(cls, gateway_url: str, key: str) -> KeyGuard:
        return cls(_origin(gateway_url), key)

    def strip(self, url: str, headers: MutableMapping[str, Any]) -> None:
        """Remove every header carrying the key from a request to `url` unless it goes to
        the gateway."""
        if _origin(url) == self.gateway:
            return
        removed = [name for name, value in list(headers.items()) if self._carries(value)]
        for name in removed:
            del headers[name]
        if removed:
            _LOG.warning("outlay: removed the Outlay key (%s) from a request to %s, which is "
                         "not the gateway", ", ".join(removed), urlsplit(url).hostname)

    def _carries(self, value: object) -> bool:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        return isinstance(value, str) and self.key in value


def guard_exporters(patches: Patches, guard: KeyGuard) -> None:
    """openai-agents' trace exporter, when it is installed. (HTTP clients are guarded where
    vendor_http.py wraps their send.)"""
    processors = optional_import("agents.tracing.processors")
    exporter = getattr(processors, "BackendSpanExporter", None)
    if isinstance(exporter, type) and hasattr(exporter, "export"):
        patches.replace(exporter, "export", functools.partial(_export_without_key, guard))


def _export_without_key(guard: KeyGuard, export: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(export)
    def export_with_own_keys(self: Any, items: list[Any]) -> Any:
        default = getattr(self, "api_key", None)
        kept = [item for item in items
                if (getattr(item, "tracing_api_key", None) or default) != guard.key]
        if len(kept) < len(items):
            _LOG.info("outlay: %d trace item(s) not exported: their only credential is the "
                      "Outlay key (set a tracing key of its own, or turn tracing off)",
                      len(items) - len(kept))
        return export(self, kept)

    return export_with_own_keys


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0)
