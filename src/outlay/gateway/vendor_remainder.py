"""A Stripe refund naming no `amount` refunds the whole refundable remainder of its charge
(or payment intent), which the request does not say: Outlay reads the object from Stripe
first, with the gateway's credential and the call's `Stripe-Account`, and reserves that
remainder as money out. A read Stripe does not answer leaves the refund unpriced (refused
under a hard money-out budget, docs/contract.md §3.4)."""

from __future__ import annotations

from dataclasses import replace

from outlay.gateway.context import Gateway
from outlay.gateway.vendor_forward import read_vendor
from outlay.upstream.base import UpstreamBroken, UpstreamRequest, UpstreamUnreachable
from outlay.vendors import VendorCall, VendorEstimate, VendorPricing
from outlay.vendors.pricing import CataloguedPricing


async def with_remainder(gw: Gateway, pricing: VendorPricing, call: VendorCall,
                         est: VendorEstimate) -> VendorEstimate:
    """`est` priced at the remainder Stripe reports, for a money-out call it could not
    price; `est` unchanged otherwise (for a caller whose key was checked already)."""
    if est.cost_micros is not None or est.flow != "out" or not isinstance(
            pricing, CataloguedPricing):
        return est
    read = pricing.remainder_read(call)
    if read is None:
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
