"""A Stripe refund naming no `amount` refunds the whole refundable remainder of its charge
(or payment intent), which the request does not say: Outlay reads the object from Stripe
first, with the gateway's credential and the call's `Stripe-Account`, and reserves that
remainder as money out. A read Stripe does not answer leaves the refund unpriced (refused
under a hard money-out budget, docs/contract.md §3.4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from outlay.gateway.context import Gateway
from outlay.gateway.vendor_forward import read_vendor
from outlay.policy.decide import authenticate, precheck
from outlay.policy.decision import Call, ScopeView, call_scopes
from outlay.policy.tags import merged
from outlay.state.base import StateError
from outlay.upstream.base import UpstreamBroken, UpstreamRequest, UpstreamUnreachable
from outlay.vendors import VendorCall, VendorEstimate, VendorPricing
from outlay.vendors.pricing import CataloguedPricing


async def with_remainder(gw: Gateway, pricing: VendorPricing, call: VendorCall,
                         est: VendorEstimate, asked: Call, key_hash: str | None,
                         tags: Mapping[str, str]) -> VendorEstimate:
    """`est` priced at the remainder Stripe reports, for a money-out call it could not
    price; `est` unchanged otherwise. The read uses the gateway's credential: only for a
    caller whose key is good and whose policies allow the call (operations, accounts)."""
    if est.cost_micros is not None or est.flow != "out" or not isinstance(
            pricing, CataloguedPricing):
        return est
    read = pricing.remainder_read(call)
    if read is None or not await _allowed(gw, asked, key_hash, tags):
        return est
    path, headers = read
    try:
        status, body = await read_vendor(gw, UpstreamRequest(
            call.vendor, "GET", path, dict(headers), b"", False))
    except (UpstreamUnreachable, UpstreamBroken):
        return est
    moved = pricing.remainder(body) if 200 <= status < 300 else None
    if moved is None:
        return est
    return replace(est, cost_micros=moved,
                   describe=f"{est.describe} (as {path} reports it)")


async def _allowed(gw: Gateway, asked: Call, key_hash: str | None,
                   tags: Mapping[str, str]) -> bool:
    """Whether the call's key is good and no allow-list of its scopes refuses it (the
    decision checks again, and refuses what this lets through for any other reason)."""
    try:
        key = None if key_hash is None else await gw.store.key_by_hash(key_hash)
        if key is None or authenticate(key, gw.clock()) is not None:
            return False
        scopes = call_scopes(key, asked.vendor, merged(tags, key.labels))
        views = [ScopeView(scope, await gw.store.get_policy(scope)) for scope in scopes]
    except StateError:
        return False
    return precheck(replace(asked, cost_micros=0), views) is None
