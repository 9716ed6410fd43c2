"""`intercept_all` and `restore`: the whole process's LLM and vendor SDK traffic through the
gateway, and back, without touching the agent's code."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from outlay.sdk.key_guard import KeyGuard, guard_exporters
from outlay.sdk.llm_clients import route_llm_clients
from outlay.sdk.patches import Patches
from outlay.sdk.vendor_http import VendorRoutes, route_vendor_http

DEFAULT_GATEWAY = "http://127.0.0.1:8800"  # SPEC §4's default listen address


class _Interception:
    """The one interception of this process. Patching classes is process-wide by nature, so
    what was patched is kept here, where restore() finds it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.patches: Patches | None = None


_CURRENT = _Interception()


def intercept_all(
    key: str,
    base_url: str = DEFAULT_GATEWAY,
    vendors: Mapping[str, str | None] | None = None,
) -> None:
    """Send the official `openai` and `anthropic` clients, and vendor SDKs' HTTP calls to
    api.stripe.com, api.twilio.com and api.resend.com, through the gateway at `base_url`
    as the Outlay `key`.

    Clients constructed afterwards use the gateway whatever api_key or base_url they are
    given or find in the environment. `vendors` maps more hosts to vendor names (or a host to
    None to leave it alone). The key goes to the gateway only: a request to any other host
    sent through requests, httpx or httpx2 loses every header carrying it, and
    openai-agents' trace exporter does not send traces whose only credential is the key.
    Calling it again replaces the settings; `restore()` undoes it. Libraries that are not
    installed are skipped.
    """
    if not key or not isinstance(key, str):
        raise ValueError("key must be the Outlay key (olk_…)")
    gateway = _gateway_url(base_url)
    routes = VendorRoutes.build(gateway, key, vendors)
    with _CURRENT.lock:
        if _CURRENT.patches is not None:
            _CURRENT.patches.undo()  # never a wrapper around a wrapper
            _CURRENT.patches = None
        patches = Patches()
        try:
            guard = KeyGuard.of(gateway, key)
            route_llm_clients(patches, gateway, key)
            route_vendor_http(patches, routes, guard)
            guard_exporters(patches, guard)
        except BaseException:
            patches.undo()
            raise
        _CURRENT.patches = patches


def restore() -> None:
    """Put back every attribute intercept_all replaced; a no-op when nothing is intercepted.

    Clients constructed while interception was on keep talking to the gateway."""
    with _CURRENT.lock:
        if _CURRENT.patches is not None:
            _CURRENT.patches.undo()
            _CURRENT.patches = None


def _gateway_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment:
        raise ValueError(
            f"base_url must be the gateway's root URL, like {DEFAULT_GATEWAY}; got {base_url!r}")
    return url
