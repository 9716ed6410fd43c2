"""Vendor pass-through under /vendors/<vendor>/<path>: the cost is read from the request,
reserved on every scope, and the vendor's answer comes back unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping

from aiohttp import web

from outlay.gateway.admission import admit, new_request_id, refuse_invalid
from outlay.gateway.context import GATEWAY, Gateway
from outlay.gateway.errors import error_response
from outlay.gateway.exchange import read_body
from outlay.gateway.forward import response_headers
from outlay.gateway.headers import limit_headers
from outlay.gateway.intake import agent_key
from outlay.gateway.llm_routes import Route
from outlay.gateway.settle import Settler
from outlay.gateway.wiring import SIMULATED_ACCOUNT
from outlay.policy.approvals import APPROVAL_HEADER, presented_approval, request_shape
from outlay.policy.decision import Call
from outlay.policy.errors import BadRequest, OutlayError, Unavailable
from outlay.policy.money import micros_to_usd
from outlay.state.base import Reservation, Ticket
from outlay.state.keys import hash_secret
from outlay.upstream.base import UpstreamBroken, UpstreamRequest, UpstreamUnreachable
from outlay.vendors import VendorCall, VendorEstimate, VendorPricing

# Never forwarded: the agent's credential, and what describes the agent's own connection.
_DROP = {"authorization", "x-api-key", "x-outlay-approval", "host", "content-length",
         "connection", "keep-alive",
         "transfer-encoding", "accept-encoding", "cookie", "proxy-authorization", "te",
         "upgrade", "expect"}


async def vendor_proxy(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    vendor = request.match_info["vendor"]
    metrics = gw.metrics
    metrics.in_flight += 1
    start = time.perf_counter()
    try:
        return await _vendor_proxy(request, gw, vendor)
    finally:
        metrics.in_flight -= 1
        metrics.observe(f"vendor.{gw.vendor_label(vendor)}", time.perf_counter() - start)


async def _vendor_proxy(request: web.Request, gw: Gateway, vendor: str) -> web.StreamResponse:
    rid = new_request_id()
    path = _raw_path(request)
    secret = agent_key(request.headers)
    key_hash = hash_secret(secret) if secret else None
    pricing = gw.vendor_pricing.get(vendor)
    call = Call(vendor=vendor)
    try:
        if pricing is None:
            raise BadRequest("invalid_request", f"Unknown vendor {vendor!r}: configure it under "
                             "`vendors:` in the configuration.", param="vendor")
        approval = presented_approval(request.headers.get(APPROVAL_HEADER))
        raw = await read_body(request, gw.settings.max_body_bytes)
        vcall = VendorCall(vendor, request.method.upper(), path, request.content_type, raw,
                           {k.lower(): v for k, v in request.headers.items()})
        est = pricing.estimate(vcall)
    except OutlayError as err:
        refusal = await refuse_invalid(gw, Ticket(rid, key_hash, call, f"vendor.{vendor}"), err)
        return error_response(refusal, "openai", rid)

    query = request.rel_url.raw_query_string
    ticket = Ticket(rid, key_hash, Call(vendor=vendor, cost_micros=est.cost_micros),
                    f"vendor.{vendor}", idempotency_key=est.idempotency_key,
                    idempotency_account=vendor_account(gw, vendor, request.headers),
                    approval_id=approval,
                    shape=request_shape(vcall.method, f"{path}?{query}" if query else path, raw),
                    may_wait=True)
    reservation = await admit(gw, ticket)
    if not isinstance(reservation, Reservation):
        return error_response(reservation, "openai", ticket.request_id)
    ours = {"X-Outlay-Request-Id": reservation.id,
            **limit_headers(reservation.limits, gw.clock())}
    if reservation.amount:
        ours["X-Outlay-Reserved-USD"] = micros_to_usd(reservation.amount)
    if reservation.replay_of:
        ours["X-Outlay-Replay-Of"] = reservation.replay_of
    outgoing = UpstreamRequest(
        provider=vendor, method=request.method.upper(), path=path,
        headers={k: v for k, v in request.headers.items() if k.lower() not in _DROP},
        body=est.body, stream=False, query=request.rel_url.raw_query_string,
    )
    return await _forward(gw, pricing, vcall, est, reservation, outgoing, ours)


def vendor_account(gw: Gateway, vendor: str, headers: Mapping[str, str]) -> str:
    """The vendor account a call acts on, which its idempotency key belongs to: the
    configured credential's, and for Stripe the connected account `Stripe-Account` names
    (kept as a fingerprint: the header may hold any bytes)."""
    account = gw.vendor_accounts.get(vendor, SIMULATED_ACCOUNT)
    connected = headers.get("Stripe-Account") if vendor == "stripe" else None
    if connected:
        digest = hashlib.sha256(connected.encode("utf-8", "surrogateescape")).hexdigest()
        account = f"{account}:{digest[:16]}"
    return account


def _raw_path(request: web.Request) -> str:
    """The vendor-relative path as the agent encoded it, `%3F` and `%23` included.

    aiohttp decodes match_info; forwarding that would end the path at a decoded `?` or `#`.
    Pricing decodes the path itself (vendors.base.route_path). aiohttp routes on the path
    with `%2F` kept encoded, so the raw path has the route's slashes: /vendors/<v>/<rest>.
    """
    parts = request.rel_url.raw_path.split("/", 3)
    return "/" + (parts[3] if len(parts) == 4 else "")


async def _forward(
    gw: Gateway, pricing: VendorPricing, vcall: VendorCall, est: VendorEstimate,
    reservation: Reservation, outgoing: UpstreamRequest, ours: dict[str, str],
) -> web.StreamResponse:
    route = Route(f"vendor.{vcall.vendor}", vcall.vendor, vcall.path)
    settle = Settler(gw, reservation, route, None)
    try:
        answer = await gw.vendors.send(outgoing)
        try:
            data = await answer.read()
        finally:
            await answer.close()
    except UpstreamUnreachable as exc:
        await settle.finish(502, "void")
        return error_response(Unavailable(
            "upstream_unavailable", f"The vendor {vcall.vendor} could not be reached: {exc}",
            status=502), "openai", reservation.id, ours)
    except (UpstreamBroken, asyncio.CancelledError) as exc:
        # the vendor may have acted: the whole reservation is charged
        await settle.finish(502, "unsettled")
        if isinstance(exc, asyncio.CancelledError):
            raise
        return error_response(Unavailable(
            "upstream_unavailable", f"The connection to {vcall.vendor} broke: {exc}",
            status=502), "openai", reservation.id, ours)
    status = answer.status
    if 400 <= status < 500:
        await settle.finish(status, "void")  # refused before any money moved
    elif status >= 500:
        await settle.finish(status, "unsettled")  # the vendor cannot say whether it acted
    else:
        actual = pricing.actual(vcall, status, data, est)
        cost = reservation.amount if actual is None else actual
        await settle.finish(status, "settled", cost)
        ours["X-Outlay-Cost-USD"] = micros_to_usd(min(cost, reservation.amount))
    return web.Response(status=status, body=data,
                        headers=response_headers(answer.headers, ours))
