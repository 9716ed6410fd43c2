"""Forwards vendor calls (Stripe, Twilio, Resend, others from config) to the real vendor.

The gateway's credential is injected and the agent's is never forwarded. Transport, pooling,
header hygiene and circuit breaking are HttpUpstream's; this module adds what is vendor
specific: how each vendor takes its credential, and Twilio's account SID in the path.
"""

from __future__ import annotations

import base64
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, get_args
from urllib.parse import unquote

from yarl import URL

from outlay.upstream.base import (
    EndpointHealth,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.http import Endpoint, HttpUpstream

VendorAuth = Literal["bearer", "basic", "header"]

DEFAULT_VENDOR_URLS: Mapping[str, str] = MappingProxyType(
    {
        "stripe": "https://api.stripe.com",
        "twilio": "https://api.twilio.com",
        "resend": "https://api.resend.com",
    }
)

# The first segment after /Accounts/ names the Twilio account; ".json" ends it when the
# account itself is fetched (/2010-04-01/Accounts/AC….json).
_TWILIO_ACCOUNT = re.compile(r"^(/[^/]+/Accounts/)([^/]+?)(\.json)?(?=/|$)")


@dataclass(frozen=True)
class VendorEndpoint:
    """Where a vendor lives and how it takes the gateway's credential.

    - ``bearer``: ``Authorization: Bearer <secret>`` (Stripe, Resend).
    - ``basic``: HTTP basic ``username:secret``; with no username the secret is the user
      name and the password is empty, as Stripe-style APIs expect (Twilio: SID and token).
    - ``header``: the secret as is in ``header_name``.

    ``account_sid`` (Twilio) replaces whatever account the agent's SDK put in the path.
    """

    base_url: str
    auth: VendorAuth
    secret: str = field(repr=False)
    username: str | None = None
    account_sid: str | None = None
    header_name: str | None = None

    def __post_init__(self) -> None:
        if self.auth not in get_args(VendorAuth):
            raise ValueError(f"auth must be bearer, basic or header, not {self.auth!r}")
        if self.auth == "header" and not self.header_name:
            raise ValueError("auth: header needs a header_name")

    def credential_headers(self) -> tuple[tuple[str, str], ...]:
        """The request headers that carry this vendor's credential."""
        if self.auth == "bearer":
            return (("Authorization", f"Bearer {self.secret}"),)
        if self.auth == "basic":
            user, password = (
                (self.username, self.secret) if self.username is not None else (self.secret, "")
            )
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            return (("Authorization", f"Basic {token}"),)
        assert self.header_name is not None  # checked in __post_init__
        return ((self.header_name, self.secret),)


class VendorUpstream:
    """Sends vendor calls to the vendors' real base URLs with the gateway's credentials.

    ``request.provider`` names the vendor and ``request.path`` is relative to its base URL.
    A vendor missing from ``vendors`` is unreachable: nothing is sent.
    """

    def __init__(
        self,
        vendors: Mapping[str, VendorEndpoint],
        timeout_s: float = 120,
        *,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._vendors = dict(vendors)
        self._http = HttpUpstream(
            {
                name: [Endpoint(vendor.base_url, None, auth_headers=vendor.credential_headers())]
                for name, vendor in self._vendors.items()
            },
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    @property
    def vendors(self) -> frozenset[str]:
        """The names of the vendors this upstream forwards to."""
        return frozenset(self._vendors)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        vendor = self._vendors.get(request.provider)
        if vendor is None:
            raise UpstreamUnreachable(f"vendor {request.provider!r} is not configured")
        if _has_dot_segment(request.path):
            # The gateway priced the path as written; a vendor that resolves "..", or our own
            # account rewrite, would act on another resource than the one that was priced.
            raise UpstreamUnreachable(f"refusing a {request.provider} path with dot segments")
        if vendor.account_sid is not None:
            request = replace(request, path=with_account_sid(request.path, vendor.account_sid))
        return await self._http.send(request)

    async def close(self) -> None:
        await self._http.close()

    def health(self) -> list[EndpointHealth]:
        """The breaker state of every vendor, for the admin API and metrics."""
        return self._http.health()


def with_account_sid(path: str, account_sid: str) -> str:
    """The Twilio path with its ``/Accounts/{sid}`` segment naming ``account_sid``."""
    return _TWILIO_ACCOUNT.sub(lambda m: m.group(1) + account_sid + (m.group(3) or ""), path, 1)


def vendor_endpoints(vendors_config: Mapping[str, Mapping[str, Any]]) -> dict[str, VendorEndpoint]:
    """The vendors of SPEC §9's ``vendors:`` section that have credentials.

    Secrets are expected already resolved (an unset ``env:`` reference is None); a vendor
    without its secret is left out, so the caller may simulate it. A section that cannot
    work whatever the secrets (bad auth, no base_url for an unknown vendor) is a ValueError.
    """
    endpoints: dict[str, VendorEndpoint] = {}
    for name, section in vendors_config.items():
        endpoint = _vendor_endpoint(name, section)
        if endpoint is not None:
            endpoints[name] = endpoint
    return endpoints


def _vendor_endpoint(name: str, section: Mapping[str, Any]) -> VendorEndpoint | None:
    where = f"vendors.{name}"
    if name not in DEFAULT_VENDOR_URLS and section.get("base_url") is None:
        close = difflib.get_close_matches(name, list(DEFAULT_VENDOR_URLS), n=1, cutoff=0.6)
        raise ValueError(f"{where}.base_url is required: the vendor has no default"
                         + (f" (did you mean {close[0]}?)" if close else ""))
    base_url = _base_url(section.get("base_url"), DEFAULT_VENDOR_URLS.get(name), where)
    if name == "stripe":
        # api_key is accepted too, so a natural slip does not silently fall back to simulation.
        secret = _secret(section, where, "secret", "api_key")
        return None if secret is None else VendorEndpoint(base_url, "bearer", secret)
    if name == "resend":
        secret = _secret(section, where, "api_key", "secret")
        return None if secret is None else VendorEndpoint(base_url, "bearer", secret)
    if name == "twilio":
        account_sid = _secret(section, where, "account_sid")
        token = _secret(section, where, "auth_token")
        if account_sid is None or token is None:
            return None
        return VendorEndpoint(
            base_url, "basic", token, username=account_sid, account_sid=account_sid
        )
    auth = _auth(section.get("auth"), f"{where}.auth")
    header_name = _optional_str(section.get("header_name"), f"{where}.header_name")
    if auth == "header" and not header_name:
        raise ValueError(f"{where}.header_name is required with auth: header")
    secret = _secret(section, where, "secret")
    if secret is None:
        return None
    return VendorEndpoint(
        base_url,
        auth,
        secret,
        username=_optional_str(section.get("username"), f"{where}.username"),
        header_name=header_name,
    )


def _base_url(value: object, default: str | None, where: str) -> str:
    if value is None:
        if default is None:
            raise ValueError(f"{where}.base_url is required: the vendor has no default")
        return default
    if not isinstance(value, str):
        raise ValueError(f"{where}.base_url must be a string")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"{where}.base_url {value!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{where}.base_url {value!r} must be an http(s) URL with a host")
    return value.rstrip("/")


def _auth(value: object, where: str) -> VendorAuth:
    if value is None or value == "bearer":
        return "bearer"
    if value == "basic":
        return "basic"
    if value == "header":
        return "header"
    raise ValueError(f"{where} must be bearer, basic or header, not {value!r}")


def _secret(section: Mapping[str, Any], where: str, *names: str) -> str | None:
    """The first of ``names`` set to a non-empty string; None when none is set."""
    for name in names:
        value = _optional_str(section.get(name), f"{where}.{name}")
        if value:
            return value
    return None


def _optional_str(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{where} must be a string, got {type(value).__name__}")


def _has_dot_segment(path: str) -> bool:
    # Decoded, because servers differ on whether %2e%2e or ..%2F count as "..".
    for segment in path.split("/"):
        for part in re.split(r"[/\\]", unquote(segment)):
            if part in (".", ".."):
                return True
    return False
