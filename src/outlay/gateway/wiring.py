"""Which upstream serves which provider or vendor, and how vendors are priced, from settings."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from outlay.gateway.vendor_headers import VendorHeaders, vendor_headers
from outlay.settings import Settings
from outlay.upstream.base import (
    EndpointHealth,
    Upstream,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.http import Endpoint, HealthListener, HttpUpstream
from outlay.upstream.vendors_http import VendorUpstream, vendor_endpoints
from outlay.vendors import BUILTIN_VENDORS, VendorPricing, pricing_for


def upstream_from_settings(
    settings: Settings, on_health_change: HealthListener | None = None
) -> Upstream:
    """The simulated provider when no provider has credentials; real endpoints otherwise, but
    for the providers whose section says `simulate: true`."""
    specs = settings.routing.specs
    simulated = frozenset(name for name in settings.simulate if name in specs)
    sim: Upstream | None = None
    if settings.simulated or simulated:
        # the simulator is loaded only when the settings ask for it
        from outlay.simulator.providers import SimulatedUpstream

        sim = SimulatedUpstream(
            latency_ms=settings.simulated_latency_ms, tiers=settings.service_tier_defaults,
            providers=sorted(specs) if settings.simulated else sorted(simulated),
            anthropic=frozenset(name for name, s in specs.items() if s.type == "anthropic"))
        if settings.simulated:
            return sim
    endpoints = {
        provider: [Endpoint(e.base_url or "", e.api_key, e.weight, style=specs[provider].type,
                            api_version=e.api_version) for e in configured]
        for provider, configured in settings.providers.items()
    }
    real = HttpUpstream(endpoints, on_health_change=on_health_change)
    return ProviderRouter(real, sim, simulated) if sim is not None else real


class ProviderRouter:
    """Real endpoints for the configured providers, the simulator for those a section marks
    `simulate: true`."""

    def __init__(self, real: Upstream, simulated: Upstream,
                 simulated_providers: frozenset[str]) -> None:
        self.real, self.simulated = real, simulated
        self.simulated_providers = simulated_providers

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if request.provider in self.simulated_providers:
            return await self.simulated.send(request)
        return await self.real.send(request)

    async def close(self) -> None:
        await self.real.close()
        await self.simulated.close()

    def health(self) -> list[EndpointHealth]:
        return self.real.health() + [h for h in self.simulated.health()
                                     if h.provider in self.simulated_providers]


class VendorRouter:
    """Vendors with credentials go to the real vendor; Stripe, Twilio and Resend without
    credentials go to the simulated ones, so the demo and tests run offline."""

    def __init__(self, real: VendorUpstream | None, simulated: Upstream | None,
                 simulated_vendors: frozenset[str] = frozenset()) -> None:
        self.real, self.simulated = real, simulated
        self.simulated_vendors = simulated_vendors

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if self.real is not None and request.provider in self.real.vendors:
            return await self.real.send(request)
        if self.simulated is not None and request.provider in self.simulated_vendors:
            return await self.simulated.send(request)
        raise UpstreamUnreachable(f"vendor {request.provider!r} has no credentials configured")

    async def close(self) -> None:
        for upstream in (self.real, self.simulated):
            if upstream is not None:
                await upstream.close()

    def health(self) -> list[EndpointHealth]:
        real = self.real.health() if self.real is not None else []
        configured = {h.provider for h in real}
        simulated = [h for h in self.simulated.health() if h.provider not in configured
                     ] if self.simulated is not None else []
        return real + simulated


def vendors_from_settings(settings: Settings) -> Upstream:
    endpoints = vendor_endpoints(settings.real_vendors)
    real = VendorUpstream(endpoints) if endpoints else None
    if real is not None and real.vendors.issuperset(BUILTIN_VENDORS):
        return VendorRouter(real, None)
    # the simulator is loaded only when a built-in vendor has no credentials
    from outlay.simulator.vendors import SIMULATED_VENDORS, SimulatedVendors

    return VendorRouter(real, SimulatedVendors(latency_ms=settings.simulated_latency_ms),
                        SIMULATED_VENDORS)


SIMULATED_ACCOUNT = "simulated"


def vendor_accounts(settings: Settings) -> dict[str, str]:
    """Which vendor account each vendor's calls go to, by a fingerprint of its credential
    (Twilio's account SID, else the secret; never the secret itself): a vendor's idempotency
    keys are the account's, whichever Outlay key sends them. Simulated vendors share one."""
    accounts = {}
    for vendor, endpoint in vendor_endpoints(settings.real_vendors).items():
        credential = endpoint.account_sid or endpoint.secret
        accounts[vendor] = hashlib.sha256(f"{vendor}\n{credential}".encode()).hexdigest()[:16]
    return accounts


def vendor_pricing(vendors: Mapping[str, Mapping[str, object]]) -> dict[str, VendorPricing]:
    """Pricing for the built-in vendors and every vendor named in the config."""
    names = dict.fromkeys((*BUILTIN_VENDORS, *vendors))
    return {name: pricing_for(name, vendors.get(name, {})) for name in names}


def vendor_headers_of(settings: Settings) -> dict[str, VendorHeaders]:
    """Which request headers each vendor is sent (gateway.vendor_headers); the built-in
    vendors without credentials go to the simulator."""
    credentialed = frozenset(vendor_endpoints(settings.vendors))
    return vendor_headers(settings.vendors, BUILTIN_VENDORS, credentialed)
