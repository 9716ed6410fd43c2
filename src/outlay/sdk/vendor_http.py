"""Vendor SDKs' HTTP calls to their vendors' hosts, sent to the gateway's /vendors/<vendor>/ route
instead, with the Outlay key in place of the vendor credential.

The stripe, twilio and resend SDKs send through `requests.Session.send` (every blocking
client) or `httpx.Client.send` / `httpx.AsyncClient.send` (stripe's and resend's async
clients), so those three methods are the narrowest points that see all their calls. A call to
any other host passes, without the Outlay key (key_guard.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from outlay.sdk.key_guard import KeyGuard
from outlay.sdk.patches import Patches, optional_import

DEFAULT_VENDOR_HOSTS: Mapping[str, str] = {
    "api.stripe.com": "stripe",
    "api.twilio.com": "twilio",
    "api.resend.com": "resend",
}
_VENDOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


@dataclass(frozen=True)
class VendorRoutes:
    """Which host is which vendor, and where and as whom its calls go instead."""

    gateway: str  # the gateway's root URL, no trailing slash
    key: str
    hosts: Mapping[str, str]  # lower-case host name -> vendor

    @classmethod
    def build(cls, gateway: str, key: str,
              vendors: Mapping[str, str | None] | None = None) -> VendorRoutes:
        """The default hosts, with `vendors` added over them (a host mapped to None is
        dropped, so its calls go to the vendor as they are)."""
        hosts = dict(DEFAULT_VENDOR_HOSTS)
        for host, vendor in (vendors or {}).items():
            name = host.strip().lower()
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(f"vendors: {host!r} is not a host name (no scheme, port or "
                                 "path), like 'api.stripe.com'")
            if vendor is None:
                hosts.pop(name, None)
            elif _VENDOR_NAME.fullmatch(vendor):
                hosts[name] = vendor
            else:
                raise ValueError(f"vendors: {vendor!r} is not a vendor name, like 'stripe'")
        return cls(gateway, key, hosts)

    def target(self, url: str) -> str | None:
        """The gateway URL standing in for `url`, or None when `url` is no vendor's.

        Path and query stay as the SDK encoded them: the gateway forwards them as sent.
        """
        parts = urlsplit(url)
        vendor = self.hosts.get(parts.hostname or "")
        if vendor is None:
            return None
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.gateway}/vendors/{vendor}{parts.path or '/'}{query}"

    def put_credentials(self, headers: MutableMapping[str, Any]) -> None:
        """The Outlay key where the SDK put its credential. The gateway reads a bearer token,
        an `x-api-key` or a basic-auth password on every vendor route, so basic auth stays
        basic (Twilio keeps its account SID as the user name) and anything else is bearer."""
        current = headers.get("Authorization")
        if isinstance(current, bytes):
            current = current.decode("latin-1")
        headers["Authorization"] = self._authorization(current)
        if "x-api-key" in headers:
            headers["x-api-key"] = self.key

    def _authorization(self, current: str | None) -> str:
        scheme, _, value = (current or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                user = ""
            return "Basic " + base64.b64encode(f"{user}:{self.key}".encode()).decode("ascii")
        return f"Bearer {self.key}"


def route_vendor_http(patches: Patches, routes: VendorRoutes, guard: KeyGuard) -> None:
    """Vendor hosts' calls to the gateway; every other call without the key (`guard`)."""
    requests = optional_import("requests")
    if requests is not None:
        patches.replace(requests.Session, "send",
                        functools.partial(_requests_send, routes, guard))
    # httpx2 is the official SDKs' fork of httpx, which their exporters use too
    for name in ("httpx", "httpx2"):
        httpx = optional_import(name)
        if httpx is None:
            continue
        patches.replace(httpx.Client, "send", functools.partial(_httpx_send, routes, guard))
        patches.replace(httpx.AsyncClient, "send",
                        functools.partial(_httpx_send_async, routes, guard))


def _requests_send(routes: VendorRoutes, guard: KeyGuard,
                   send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    def send_through_gateway(self: Any, request: Any, **kwargs: Any) -> Any:
        target = routes.target(request.url) if isinstance(request.url, str) else None
        if target is not None:
            request.url = target
            request.headers.pop("Host", None)
            routes.put_credentials(request.headers)
            # proxies were chosen for the vendor's host; send() chooses again for the gateway's
            kwargs.pop("proxies", None)
        elif isinstance(request.url, str):
            guard.strip(request.url, request.headers)
        return send(self, request, **kwargs)

    return send_through_gateway


def _httpx_send(routes: VendorRoutes, guard: KeyGuard,
                send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    def send_through_gateway(self: Any, request: Any, **kwargs: Any) -> Any:
        if _to_gateway(routes, request):
            kwargs["auth"] = None  # the client's own auth would put the vendor credential back
        else:
            guard.strip(str(request.url), request.headers)
        return send(self, request, **kwargs)

    return send_through_gateway


def _httpx_send_async(routes: VendorRoutes, guard: KeyGuard,
                      send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    async def send_through_gateway(self: Any, request: Any, **kwargs: Any) -> Any:
        if _to_gateway(routes, request):
            kwargs["auth"] = None
        else:
            guard.strip(str(request.url), request.headers)
        return await send(self, request, **kwargs)

    return send_through_gateway


def _to_gateway(routes: VendorRoutes, request: Any) -> bool:
    """Point an httpx request at the gateway; False when it is not a vendor's."""
    target = routes.target(str(request.url))
    if target is None:
        return False
    request.url = type(request.url)(target)
    # httpx wrote the vendor's Host when it built the request
    request.headers["Host"] = request.url.netloc.decode("ascii")
    routes.put_credentials(request.headers)
    return True
