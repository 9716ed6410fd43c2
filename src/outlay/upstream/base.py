"""What the gateway needs from a provider: one request in, one response out.

UpstreamError
├── UpstreamUnreachable   nothing was sent: void the reservation, answer upstream_unavailable
└── UpstreamBroken        the request was sent but no complete answer came back: charge in full
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from outlay.upstream.breaker import BreakerState
from outlay.values import value


@value
class UpstreamRequest:
    """A call ready to forward; headers are already stripped of the agent's credential."""

    provider: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    stream: bool
    query: str = ""
    deployment: str | None = None  # Azure OpenAI: the deployment the call goes to
    endpoint: int | None = None  # the provider's endpoint it must go to (pacing), by place


class UpstreamResponse(Protocol):
    """A provider's answer, headers received, body not yet read.

    Headers come without hop-by-hop fields, content-length or content-encoding: the body is
    delivered decoded (gzip and deflate; a coding the client cannot decode keeps its
    Content-Encoding and its bytes), so the gateway may re-frame it as it likes.
    """

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield body bytes as they arrive; raise UpstreamBroken if the body is cut short."""
        ...

    async def read(self) -> bytes:
        """Read the whole body; raise UpstreamBroken if it is cut short."""
        ...

    async def close(self) -> None:
        """Release the connection; safe to call more than once."""
        ...


@dataclass(frozen=True)
class EndpointHealth:
    """A snapshot of one endpoint's breaker, for the admin API."""

    provider: str
    base_url: str
    weight: int
    state: BreakerState
    consecutive_failures: int


class Upstream(Protocol):
    """Sends requests to providers. Injected into the gateway so tests can swap the network."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Forward the request and return once response headers are in."""
        ...

    async def close(self) -> None:
        """Release pooled connections."""
        ...

    def health(self) -> list[EndpointHealth]:
        """Every endpoint it sends to, as this worker's circuit breakers see it."""
        ...


class UpstreamError(Exception):
    """Base of every failure to get an answer from a provider."""


class UpstreamUnreachable(UpstreamError):
    """Nothing was sent: connect refused, DNS failure, or every endpoint's circuit is open."""


class UpstreamBroken(UpstreamError):
    """The request was sent, then the connection broke or timed out before a complete answer."""
