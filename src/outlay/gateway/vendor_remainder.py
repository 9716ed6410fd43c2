"""A Stripe refund moves money in its charge's currency, and one naming no `amount` the
charge's whole refundable remainder, neither of which the request says: Outlay reads the
charge (or payment intent) from Stripe first, with the gateway's credential and the call's
connected account, and reserves what the refund can move as Stripe reports it. A read Stripe
does not answer leaves the refund bounded by the dearest currency, or unpriced without an
amount (refused under a hard money-out budget, docs/contract.md §3.4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from outlay.gateway.context import Gateway
from outlay.gateway.vendor_forward import read_vendor
from outlay.policy.decide import authenticate, precheck
from outlay.policy.decision import Call, ScopeView, call_scopes
from outlay.policy.tags import merged, resolve, with_wildcards
from outlay.state.base import StateError
from outlay.upstream.base import UpstreamBroken, UpstreamRequest, UpstreamUnreachable
from outlay.vendors import VendorCall, VendorEstimate, VendorPricing
from outlay.vendors.pricing import CataloguedPricing


async def with_remainder(gw: Gateway, pricing: VendorPricing, call: VendorCall,
                         est: VendorEstimate, asked: Call, key_hash: str | None,
                         tags: Mapping[str, str]) -> VendorEstimate:
    """`est` priced as Stripe reports the charge a refund refunds; `est` unchanged for any
    other call, or when the read says nothing. The read uses the gateway's credential: only
    for a caller whose key is good and whose policies allow the call."""
    if est.flow != "out" or not isinstance(pricing, CataloguedPricing):
        return est
    read = pricing.refund_read(call)
    if read is None or not await _allowed(gw, replace(asked, flow=est.flow), key_hash, tags):
        return est
    try:
        status, body = await read_vendor(gw, UpstreamRequest(
            call.vendor, "GET", read.path, dict(read.headers), b"", False, read.query))
    except (UpstreamUnreachable, UpstreamBroken):
        return est
    return pricing.refund_priced(call, est, body) if 200 <= status < 300 else est


async def _allowed(gw: Gateway, asked: Call, key_hash: str | None,
                   tags: Mapping[str, str]) -> bool:
    """Whether the call's key is good and nothing its scopes' policies say alone refuses it
    (allow-lists, required tags, money out under uncapped spend budgets), each scope's
    policy read as the decision reads it: a tag value's own, else its `tag:<name>=*`'s.
    The decision checks again, and refuses what this lets through for any other reason."""
    try:
        key = None if key_hash is None else await gw.store.key_by_hash(key_hash)
        if key is None or authenticate(key, gw.clock()) is not None:
            return False
        labels = merged(tags, key.labels)
        scopes = call_scopes(key, asked.vendor, labels)
        own = {scope: policy for scope in with_wildcards(scopes)
               if (policy := await gw.store.get_policy(scope)) is not None}
    except StateError:
        return False
    in_force = resolve(scopes, own)
    views = [ScopeView(scope, in_force.get(scope)) for scope in scopes]
    return precheck(replace(asked, cost_micros=0), views, labels=labels) is None
