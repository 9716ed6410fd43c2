"""How the gateway talks to providers and vendors: real endpoints over HTTP (the simulated
ones are in `outlay.simulator`)."""

from outlay.upstream.base import (
    EndpointHealth,
    Upstream,
    UpstreamBroken,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.breaker import BreakerState, CircuitBreaker
from outlay.upstream.http import Endpoint, HttpUpstream

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Endpoint",
    "EndpointHealth",
    "HttpUpstream",
    "Upstream",
    "UpstreamBroken",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamUnreachable",
]
