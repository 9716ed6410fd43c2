"""How the gateway talks to providers: real endpoints over HTTP, or an in-process simulator."""

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
from outlay.upstream.simulated import SimulatedUpstream

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Endpoint",
    "EndpointHealth",
    "HttpUpstream",
    "SimulatedUpstream",
    "Upstream",
    "UpstreamBroken",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamUnreachable",
]
