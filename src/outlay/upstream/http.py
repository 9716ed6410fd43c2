"""Forwards calls to real provider endpoints over pooled, kept-alive HTTP/1.1 connections.

Endpoints are tried in weighted random order, skipping those whose circuit is open. A call
moves on to the next endpoint only when nothing was sent (connect errors), except for
idempotent methods, which may also move on when the connection breaks before an answer.
"""

from __future__ import annotations

import functools
import random
import re
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from multidict import CIMultiDict

from outlay.upstream.base import (
    EndpointHealth,
    UpstreamBroken,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.breaker import BreakerState, CircuitBreaker
from outlay.upstream.h1 import Connection, Pool
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
# Credentials are always ours to set; host, length and coding follow from the new request.
_REQUEST_DROPPED = _HOP_BY_HOP | {
    "host",
    "content-length",
    "accept-encoding",
    "authorization",
    "x-api-key",
    "api-key",
}
_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in _HOP_BY_HOP | {"content-length"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})  # no Content-Length when empty
_NOT_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")  # a request target holds no space or control
# codings decoded here (zlib's 32 + 15 reads both the gzip and the zlib wrapper); any other
# passes through as sent, with its Content-Encoding
_DECODED = frozenset({"gzip", "x-gzip", "deflate"})


@dataclass(frozen=True)
class Endpoint:
    """One base URL of a provider and the credential to present there."""

    base_url: str
    api_key: str | None = field(repr=False)
    weight: int = 1
    # Vendors present credentials other than a bearer api_key: basic auth, a named header.
    auth_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # the API it speaks: "openai", "anthropic" or "azure" (None: "anthropic" for the
    # provider of that name, else "openai")
    style: str | None = None
    # Azure OpenAI: calls go to {base_url}/openai/deployments/{deployment}{path}?api-version=
    api_version: str | None = None

    def __post_init__(self) -> None:
        # Checked here so a bad config fails at start-up, not as an outage on the first call.
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint base_url must be http(s): {self.base_url!r}")
        if self.weight < 0:
            raise ValueError(f"endpoint weight must not be negative: {self.weight}")
        try:
            parts = urlsplit(self.base_url)
            parts.port  # noqa: B018 (raises on a port that is not a number in range)
        except ValueError as exc:
            raise ValueError(f"endpoint base_url is not a URL: {self.base_url!r}: {exc}") from exc
        if not parts.hostname:
            raise ValueError(f"endpoint base_url has no host: {self.base_url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("endpoint base_url must not hold credentials (use api_key or "
                             f"auth): {parts.scheme}://…@{parts.hostname}")
        if parts.query or parts.fragment:
            raise ValueError(f"endpoint base_url must not have a query: {self.base_url!r}")


HealthListener = Callable[[str, Endpoint, BreakerState], None]


@dataclass(eq=False, slots=True)
class _Route:
    endpoint: Endpoint
    breaker: CircuitBreaker
    # where its calls go, found on its first call (an Endpoint's hash is worked out from
    # all its fields, on every lookup by it)
    target: _Target | None = None


@dataclass(frozen=True)
class _Target:
    """Where an endpoint's calls go: the origin's pool, the Host header, the base path."""

    pool: Pool
    host: str
    prefix: str
    # the credential headers of each provider that sends here (_auth_plan), made once
    plans: dict[str, _AuthPlan] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class _AuthPlan:
    """What an endpoint's calls of one provider carry beside the agent's headers."""

    replaced: frozenset[str]  # lower-case names the endpoint's own auth headers replace
    ours: tuple[tuple[str, str], ...]  # set here, before the endpoint's auth headers
    version: bool  # anthropic-version added unless the agent sent one
    auth: tuple[tuple[str, str], ...]  # the endpoint's auth headers, last


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
        tls: ssl.SSLContext | None = None,
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
        self._connect_timeout_s, self._read_timeout_s = connect_timeout_s, timeout_s
        self._rng = rng if rng is not None else random.Random()
        self._max_connections = max_connections  # per origin
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._targets: dict[Endpoint, _Target] = {}
        # https endpoints: the system's trusted CAs unless given (tests give their own CA)
        self._tls: ssl.SSLContext | None = tls

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        routes = self._routes.get(request.provider)
        if not routes:
            raise UpstreamUnreachable(f"no endpoints configured for provider {request.provider!r}")
        if request.endpoint is not None and 0 <= request.endpoint < len(routes):
            # admitted on this endpoint, within its key's limits: no other may take it
            order = [routes[request.endpoint]]
        else:
            order = weighted_order(routes, [r.endpoint.weight for r in routes], self._rng)
        failures: list[str] = []
        broken: UpstreamBroken | None = None
        for route in order:
            if not route.breaker.allow():
                failures.append(f"{route.endpoint.base_url}: circuit open")
                continue
            try:
                response = await self._send_once(route, request)
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
        pools, self._pools, self._targets = self._pools, {}, {}
        for routes in self._routes.values():
            for route in routes:
                route.target = None
        for pool in pools.values():
            pool.close()

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

    def _target(self, endpoint: Endpoint) -> _Target:
        target = self._targets.get(endpoint)
        if target is None:
            parts = urlsplit(endpoint.base_url)
            tls = parts.scheme == "https"
            host = parts.hostname or ""
            port = parts.port or (443 if tls else 80)
            pool = self._pools.get((parts.scheme, host, port))
            if pool is None:
                if tls and self._tls is None:
                    self._tls = ssl.create_default_context()
                pool = self._pools[parts.scheme, host, port] = Pool(
                    host, port, tls=self._tls if tls else None, limit=self._max_connections,
                    connect_timeout_s=self._connect_timeout_s,
                    read_timeout_s=self._read_timeout_s)
            name = f"[{host}]" if ":" in host else host
            default = port == (443 if tls else 80)
            target = self._targets[endpoint] = _Target(
                pool, name if default else f"{name}:{port}", parts.path.rstrip("/"))
        return target

    async def _send_once(self, route: _Route, request: UpstreamRequest) -> _HttpResponse:
        endpoint = route.endpoint
        target = route.target
        if target is None:
            target = route.target = self._target(endpoint)
        # the gateway forwards paths and queries exactly as the agent encoded them
        path = target.prefix + request.path
        query = request.query
        if endpoint.api_version is not None:
            path = f"{target.prefix}/openai/deployments/{request.deployment}{request.path}"
            query = "&".join([f"api-version={endpoint.api_version}", *(
                part for part in query.split("&")
                if part and not part.startswith("api-version="))])
        if query:
            path += "?" + query
        if _NOT_IN_TARGET.search(path) or not path.startswith("/"):
            raise UpstreamUnreachable(f"bad request target {path!r} for {endpoint.base_url}")
        method = request.method.upper()
        plan = target.plans.get(request.provider)
        if plan is None:
            plan = target.plans[request.provider] = _auth_plan(request.provider, endpoint)
        head = _head(method, path, target.host, _outbound_headers(plan, request.headers),
                     len(request.body))
        try:
            conn = await target.pool.exchange(head, request.body,
                                              expect_body=method != "HEAD")
        except UpstreamBroken as exc:
            raise UpstreamBroken(f"no complete answer: {exc}") from exc
        return _HttpResponse(conn)


class _HttpResponse:
    """An answer on a pooled connection, seen through the UpstreamResponse protocol."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.status: int = conn.status
        self.headers, coding = _inbound_headers(conn.headers)
        self._coding = coding
        self._decoder = zlib.decompressobj(32 + zlib.MAX_WBITS) if coding else None
        self._released = False

    async def _next(self) -> bytes | None:
        if self._released:
            raise UpstreamBroken("body cut short: the answer was closed before its end")
        try:
            chunk = await self._conn.next_chunk()
        except UpstreamBroken as exc:
            raise UpstreamBroken(f"body cut short: {exc}") from exc
        decoder = self._decoder
        if decoder is None:
            return chunk
        try:
            if chunk is None:
                rest, self._decoder = decoder.flush(), None
                return rest if rest else None
            return decoder.decompress(chunk)
        except zlib.error as exc:
            raise UpstreamBroken(f"cannot decode the {self._coding} body: {exc}") from exc

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._next()) is not None:
            if chunk:
                yield chunk

    async def read(self) -> bytes:
        parts = []
        while (chunk := await self._next()) is not None:
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def close(self) -> None:
        if not self._released:
            # kept for the next call if read to its end; an abandoned stream could take
            # minutes to drain, so its connection is dropped instead
            self._released = True
            self._conn.pool.release(self._conn)


def _listener(
    on_change: HealthListener | None, provider: str, endpoint: Endpoint
) -> Callable[[BreakerState, BreakerState], None] | None:
    if on_change is None:
        return None
    return lambda _old, new: on_change(provider, endpoint, new)


def _auth_plan(provider: str, endpoint: Endpoint) -> _AuthPlan:
    # the endpoint's own auth headers replace any of the same name, ours included
    replaced = frozenset(name.lower() for name, _ in endpoint.auth_headers)
    # identity keeps the bytes as the provider sent them, so streams pass through unbuffered
    ours = [("Accept-Encoding", "identity")]
    version = False
    style = endpoint.style or ("anthropic" if provider == "anthropic" else "openai")
    if style == "anthropic":
        if endpoint.api_key is not None:
            ours.append(("x-api-key", endpoint.api_key))
        version = "anthropic-version" not in replaced
    elif style == "azure":
        if endpoint.api_key is not None:
            ours.append(("api-key", endpoint.api_key))
    elif endpoint.api_key is not None:
        ours.append(("Authorization", f"Bearer {endpoint.api_key}"))
    return _AuthPlan(replaced, tuple((name, value) for name, value in ours
                                     if name.lower() not in replaced),
                     version, endpoint.auth_headers)


def _outbound_headers(plan: _AuthPlan, incoming: Mapping[str, str]) -> list[tuple[str, str]]:
    replaced = plan.replaced
    headers = [(name, value) for name, value in incoming.items()
               if (low := name.lower()) not in _REQUEST_DROPPED and low not in replaced]
    version = plan.version and not any(name.lower() == "anthropic-version"
                                       for name, _ in headers)
    headers += plan.ours
    if version:
        headers.append(("anthropic-version", ANTHROPIC_VERSION))
    headers += plan.auth
    return headers


def _head(method: str, path: str, host: str, headers: list[tuple[str, str]],
          body_length: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    if body_length or method not in _NO_BODY:
        lines.append(f"Content-Length: {body_length}\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    # one line break per line: a name or value holding one would smuggle in a header
    if head.count("\n") != len(lines) + 1 or head.count("\r") != len(lines) + 1:
        raise UpstreamUnreachable("a header to send holds a line break")
    try:
        # an agent's header bytes that are not UTF-8 came in as surrogates (aiohttp decodes
        # with surrogateescape): they go on as the very bytes the agent sent
        return head.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise UpstreamUnreachable("a header to send cannot be encoded") from None


def _inbound_headers(raw: list[tuple[bytes, bytes]]) -> tuple[CIMultiDict[str], str | None]:
    """The answer's headers less hop-by-hop ones and those this client consumes; and the
    content coding it decodes, if any (another one passes through with its header).
    One pass over the raw pairs: this runs on every call."""
    pairs: list[tuple[str, str]] = []
    named_in_connection: list[str] = []
    codings: list[str] = []
    for name, value in raw:
        text_name, kind = _name_of(name)
        if kind == _HOP:
            continue
        if kind == _CONNECTION:
            named_in_connection += value.decode("latin-1").split(",")
            continue
        text = value.decode("utf-8", "surrogateescape")
        if kind == _CODING:
            codings.append(text.strip().lower())
        pairs.append((text_name, text))
    headers: CIMultiDict[str] = CIMultiDict(pairs)  # made at once: add() is a call each
    for token in named_in_connection:  # rare: the hop-by-hop headers a server names
        headers.popall(token.strip(), None)
    coding = codings[0] if len(codings) == 1 and codings[0] in _DECODED else None
    if coding is not None or codings == ["identity"]:
        del headers["Content-Encoding"]
    return headers, coding


_PLAIN, _HOP, _CONNECTION, _CODING = "plain", "hop", "connection", "coding"


# a provider answers with the same few names on every call: each read once (bounded: a
# server may send any names it likes)
@functools.lru_cache(maxsize=1024)
def _name_of(raw: bytes) -> tuple[str, str]:
    """A header name as text, and what this client does with it."""
    low = raw.lower()
    if low == b"connection":
        kind = _CONNECTION
    elif low in _HOP_BY_HOP_BYTES:
        kind = _HOP
    elif low == b"content-encoding":
        kind = _CODING
    else:
        kind = _PLAIN
    return raw.decode("latin-1"), kind
