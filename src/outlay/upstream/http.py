"""Forwards calls to real provider endpoints over one pooled aiohttp session.

Endpoints are tried in weighted random order, skipping those whose circuit is open. A call
moves on to the next endpoint only when nothing was sent (connect errors), except for
idempotent methods, which may also move on when the connection breaks before an answer.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from outlay.upstream.base import (
    UpstreamBroken,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.breaker import BreakerState, CircuitBreaker
from outlay.upstream.routing import weighted_order

ANTHROPIC_VERSION = "2023-06-01"

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# The body is re-framed on the way out, and we decode it, so length and coding are ours.
_RESPONSE_DROPPED = _HOP_BY_HOP | {"content-length", "content-encoding"}
# Credentials are always ours to set; host, length and coding follow from the new request.
_REQUEST_DROPPED = _HOP_BY_HOP | {
    "host",
    "content-length",
    "accept-encoding",
    "authorization",
    "x-api-key",
}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class Endpoint:
    """One base URL of a provider and the credential to present there."""

    base_url: str
    api_key: str | None = field(repr=False)
    weight: int = 1
    # Vendors present credentials other than a bearer api_key: basic auth, a named header.
    auth_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        # Checked here so a bad config fails at start-up, not as an outage on the first call.
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint base_url must be http(s): {self.base_url!r}")
        if self.weight < 0:
            raise ValueError(f"endpoint weight must not be negative: {self.weight}")


@dataclass(frozen=True)
class EndpointHealth:
    """A snapshot of one endpoint's breaker, for the admin API and metrics."""

    provider: str
    base_url: str
    weight: int
    state: BreakerState
    consecutive_failures: int


HealthListener = Callable[[str, Endpoint, BreakerState], None]


@dataclass(frozen=True)
class _Route:
    endpoint: Endpoint
    breaker: CircuitBreaker


class HttpUpstream:
    """Talks to providers over HTTP with per-endpoint circuit breakers and failover.

    ``timeout_s`` bounds each wait for bytes from the provider (as the official SDKs do),
    not the whole call, so a long stream that keeps producing is never cut.
    """

    def __init__(
        self,
        endpoints: Mapping[str, Sequence[Endpoint]],
        timeout_s: float = 600,
        *,
        connect_timeout_s: float = 10.0,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        max_connections: int = 1000,
        on_health_change: HealthListener | None = None,
    ) -> None:
        self._routes: dict[str, list[_Route]] = {
            provider: [
                _Route(
                    endpoint,
                    CircuitBreaker(
                        failure_threshold,
                        cooldown_s,
                        clock,
                        _listener(on_health_change, provider, endpoint),
                    ),
                )
                for endpoint in provider_endpoints
            ]
            for provider, provider_endpoints in endpoints.items()
        }
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._rng = rng if rng is not None else random.Random()
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        routes = self._routes.get(request.provider)
        if not routes:
            raise UpstreamUnreachable(f"no endpoints configured for provider {request.provider!r}")
        session = self._ensure_session()
        order = weighted_order(routes, [route.endpoint.weight for route in routes], self._rng)
        failures: list[str] = []
        broken: UpstreamBroken | None = None
        for route in order:
            if not route.breaker.allow():
                failures.append(f"{route.endpoint.base_url}: circuit open")
                continue
            try:
                response = await self._send_once(session, route.endpoint, request)
            except UpstreamUnreachable as exc:
                route.breaker.record_failure()
                failures.append(f"{route.endpoint.base_url}: {exc}")
                continue
            except UpstreamBroken as exc:
                route.breaker.record_failure()
                if request.method.upper() not in _IDEMPOTENT:
                    raise
                broken = exc
                failures.append(f"{route.endpoint.base_url}: {exc}")
                continue
            if response.status >= 500:
                route.breaker.record_failure()
            else:
                route.breaker.record_success()
            return response
        summary = f"every {request.provider} endpoint failed: " + "; ".join(failures)
        if broken is not None:
            # Something was sent somewhere, so the caller must treat the call as made.
            raise UpstreamBroken(summary) from broken
        raise UpstreamUnreachable(summary)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def health(self) -> list[EndpointHealth]:
        """The breaker state of every configured endpoint."""
        return [
            EndpointHealth(
                provider,
                route.endpoint.base_url,
                route.endpoint.weight,
                route.breaker.state,
                route.breaker.consecutive_failures,
            )
            for provider, routes in self._routes.items()
            for route in routes
        ]

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Created on first use because a ClientSession binds to the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=self._timeout,
                # Cookies set by a provider for one agent must never ride along for another.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def _send_once(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, request: UpstreamRequest
    ) -> _HttpResponse:
        url = endpoint.base_url.rstrip("/") + request.path
        if request.query:
            url += "?" + request.query
        headers = _outbound_headers(request.provider, endpoint, request.headers)
        try:
            # The gateway forwards paths and queries exactly as the agent encoded them.
            target = URL(url, encoded=True)
        except ValueError as exc:
            raise UpstreamUnreachable(f"bad endpoint URL {url!r}: {exc}") from exc
        try:
            raw = await session.request(
                request.method,
                target,
                headers=headers,
                data=request.body or None,
                allow_redirects=False,
            )
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ConnectionTimeoutError,
            aiohttp.InvalidURL,
        ) as exc:
            raise UpstreamUnreachable(f"cannot connect to {endpoint.base_url}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamBroken(f"no complete answer: {_describe(exc)}") from exc
        return _HttpResponse(raw)


class _HttpResponse:
    """An aiohttp response seen through the UpstreamResponse protocol."""

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self._raw = raw
        self.status: int = raw.status
        self.headers: Mapping[str, str] = _inbound_headers(raw.headers)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._raw.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamBroken(f"body cut short: {_describe(exc)}") from exc

    async def read(self) -> bytes:
        try:
            return await self._raw.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamBroken(f"body cut short: {_describe(exc)}") from exc

    async def close(self) -> None:
        if self._raw.content.at_eof():
            self._raw.release()
        else:
            # Draining an abandoned stream could take minutes; dropping the connection is cheaper.
            self._raw.close()


def _listener(
    on_change: HealthListener | None, provider: str, endpoint: Endpoint
) -> Callable[[BreakerState, BreakerState], None] | None:
    if on_change is None:
        return None
    return lambda _old, new: on_change(provider, endpoint, new)


def _outbound_headers(
    provider: str, endpoint: Endpoint, incoming: Mapping[str, str]
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        if name.lower() not in _REQUEST_DROPPED:
            headers.add(name, value)
    # Identity keeps the bytes as the provider sent them, so streams pass through unbuffered.
    headers["Accept-Encoding"] = "identity"
    if provider == "anthropic":
        if endpoint.api_key is not None:
            headers["x-api-key"] = endpoint.api_key
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
    elif endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    for name, value in endpoint.auth_headers:
        headers[name] = value
    return headers


def _inbound_headers(raw: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    connection_values = raw.getall("Connection", [])
    named_in_connection = {
        token.strip().lower() for value in connection_values for token in value.split(",")
    }
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in raw.items():
        lowered = name.lower()
        if lowered not in _RESPONSE_DROPPED and lowered not in named_in_connection:
            headers.add(name, value)
    return headers


def _describe(exc: BaseException) -> str:
    # Timeouts often carry an empty message; the class name is then the useful part.
    return str(exc) or type(exc).__name__
