"""Which upstream serves which provider, from the settings."""

from __future__ import annotations

from outlay.settings import Settings
from outlay.upstream.base import Upstream
from outlay.upstream.http import Endpoint, HttpUpstream
from outlay.upstream.simulated import SimulatedUpstream


def upstream_from_settings(settings: Settings) -> Upstream:
    """The simulated provider when no provider has credentials; real endpoints otherwise."""
    if settings.simulated:
        return SimulatedUpstream(latency_ms=settings.simulated_latency_ms)
    endpoints = {
        provider: [Endpoint(e.base_url or "", e.api_key, e.weight) for e in configured]
        for provider, configured in settings.providers.items()
    }
    return HttpUpstream(endpoints)
