"""Vendor pass-through under /vendors/<vendor>/<path>: the cost is read from the request,
reserved on every scope, and the vendor's answer comes back unchanged. Calls on payment
objects (Stripe's payment intents and charges) are counted on the object instead
(gateway.vendor_objects)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import replace

from aiohttp import web
from multidict import CIMultiDictProxy

from outlay.gateway.admission import admit, new_request_id, refuse_invalid, refuse_unread
from outlay.gateway.context import GATEWAY, Gateway
from outlay.gateway.exchange import read_body
from outlay.gateway.header_values import approval_id, idempotency_key
from outlay.gateway.headers import limit_headers
from outlay.gateway.intake import agent_key
from outlay.gateway.llm_routes import Route
from outlay.gateway.settle import Settler
from outlay.gateway.vendor_errors import vendor_refusal
from outlay.gateway.vendor_forward import Finish, forward, outgoing, raw_path
from outlay.gateway.vendor_headers import NO_RULE
from outlay.gateway.vendor_objects import Caller, object_call
from outlay.gateway.vendor_remainder import with_remainder
from outlay.gateway.wiring import SIMULATED_ACCOUNT
from outlay.policy.approvals import request_shape
from outlay.policy.decision import Call
from outlay.policy.errors import BadRequest, OutlayError, invalid_request
from outlay.policy.money import micros_to_usd
from outlay.policy.tags import TAGS_HEADER, parse_tags
from outlay.state.base import Reservation, Settled, Ticket
from outlay.telemetry.trace_context import TRACEPARENT
from outlay.vendors import VendorCall, VendorEstimate, VendorPricing
from outlay.vendors.base import printable, route_path
from outlay.vendors.destinations import destinations
from outlay.vendors.objects import ObjectPricing


async def vendor_proxy(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    vendor = request.match_info["vendor"]
    metrics = gw.metrics
    metrics.in_flight += 1
    start = time.perf_counter()
    try:
        if gw.telemetry is None:
            return await _vendor_proxy(request, gw, vendor)
        label = gw.vendor_label(vendor)
        with gw.telemetry.call(f"vendor.{label}", label,
                               request.headers.get(TRACEPARENT), llm=False,
                               method=request.method):
            return await _vendor_proxy(request, gw, vendor)
    finally:
        metrics.in_flight -= 1
        metrics.observe(f"vendor.{gw.vendor_label(vendor)}", time.perf_counter() - start)


async def _vendor_proxy(request: web.Request, gw: Gateway, vendor: str) -> web.StreamResponse:
    rid = new_request_id()
    path = raw_path(request)
    secret = agent_key(request.headers)
    key_hash = gw.keys.hash_of(secret) if secret else None
    pricing = gw.vendor_pricing.get(vendor)
    call = Call(vendor=vendor)
    try:
        if pricing is None:
            raise BadRequest("invalid_request", f"Unknown vendor {vendor!r}: configure it under "
                             "`vendors:` in the configuration.", param="vendor")
        if await gw.keys.refusal(key_hash, gw.clock()) is not None:
            # refused whatever the body says: answered without reading it (aiohttp then
            # closes the connection if the body is not all here)
            refusal = await refuse_unread(gw, Ticket(rid, key_hash, call, f"vendor.{vendor}"))
            if refusal is not None:
                return vendor_refusal(refusal, vendor, rid)
            rid = new_request_id()
        approval = approval_id(request.headers)
        tags = parse_tags(request.headers.get(TAGS_HEADER))
        idempotency_key(request.headers)  # checked here; the vendor's pricing reads it
        raw = await read_body(request, gw.settings.max_body_bytes)
        vcall = VendorCall(vendor, request.method.upper(), path, request.content_type, raw,
                           {k.lower(): v for k, v in request.headers.items()})
        on_object = (pricing.object_call(vcall) if isinstance(pricing, ObjectPricing)
                     else None)
        est = None if on_object is not None else pricing.estimate(vcall)
        if est is not None and est.flow == "out" and request.rel_url.raw_query_string:
            raise invalid_request(
                "A call that moves money out takes its parameters in the body only: a query "
                "string could change what it moves after Outlay counted it.", "query")
        asked = _asked(gw, vcall, request.headers)
    except OutlayError as err:
        refusal = await refuse_invalid(gw, Ticket(rid, key_hash, call, f"vendor.{vendor}"), err)
        return vendor_refusal(refusal, vendor, rid)
    query = request.rel_url.raw_query_string
    caller = Caller(rid, key_hash, approval, vendor_account(gw, vendor, request.headers),
                    request_shape(vcall.method, f"{path}?{query}" if query else path, raw),
                    asked, tags)
    rule = gw.vendor_headers.get(vendor, NO_RULE)
    if on_object is not None:
        assert isinstance(pricing, ObjectPricing)
        return await object_call(gw, caller, pricing, on_object,
                                 outgoing(request, rule, vendor, path, raw))
    assert est is not None
    # a refund of the whole remainder: what it moves, read from Stripe first
    est = await with_remainder(gw, pricing, vcall, est, asked, key_hash, caller.tags or {})
    ticket = Ticket(rid, key_hash, replace(asked, cost_micros=est.cost_micros, clamp=est.clamp,
                                           flow=est.flow),
                    f"vendor.{vendor}", idempotency_key=est.idempotency_key,
                    idempotency_account=caller.account, approval_id=caller.approval_id,
                    shape=caller.shape, may_wait=True, tags=caller.tags, may_queue=True)
    reservation = await admit(gw, ticket, gone=lambda: _hung_up(request))
    if not isinstance(reservation, Reservation):
        return vendor_refusal(_worded(reservation, vcall), vendor, ticket.request_id)
    ours = {"X-Outlay-Request-Id": reservation.id,
            **limit_headers(reservation.limits, gw.clock())}
    if reservation.queued_ms:
        ours["X-Outlay-Queued-Ms"] = str(reservation.queued_ms)
    if reservation.amount:
        ours["X-Outlay-Reserved-USD"] = micros_to_usd(reservation.amount)
    if reservation.replay_of:
        ours["X-Outlay-Replay-Of"] = reservation.replay_of
    body = est.body
    if reservation.clamped_to is not None and est.limited is not None:
        body, said = est.limited(reservation.clamped_to)  # lowered to what the budgets leave
        ours.update(said)
    settle = _settler(gw, pricing, vcall, est, reservation)
    return await forward(gw, outgoing(request, rule, vendor, path, body), reservation, ours,
                         settle)


# the headers that make a Stripe call act on a connected account
ACCOUNT_HEADERS = ("Stripe-Account", "Stripe-Context")


def _asked(gw: Gateway, vcall: VendorCall, headers: CIMultiDictProxy[str]) -> Call:
    """What a vendor call asks for that a policy may not allow (policy.vendor_checks): the
    operation, the connected accounts it names (every value of every account header, as
    each is sent on: an empty one too, which no list holds) and where it sends."""
    vendor = vcall.vendor
    accounts: tuple[str, ...] = ()
    if vendor == "stripe":
        accounts = tuple(dict.fromkeys(value.strip() for name in ACCOUNT_HEADERS
                                       for value in headers.getall(name, ())))
    rule = gw.vendor_headers.get(vendor, NO_RULE)
    return Call(vendor=vendor, operation=(vcall.method, route_path(vcall.path)),
                accounts=accounts, any_account=rule.any_account,
                destinations=destinations(vcall))


def _settler(gw: Gateway, pricing: VendorPricing, vcall: VendorCall, est: VendorEstimate,
             reservation: Reservation) -> Finish:
    settler = Settler(gw, reservation, Route(f"vendor.{vcall.vendor}", vcall.vendor,
                                             vcall.path), None, flow=est.flow)

    async def finish(status: int, settled: Settled, data: bytes | None) -> dict[str, str]:
        if settled != "settled" or data is None:
            await settler.finish(status, settled)
            return {}
        actual = pricing.actual(vcall, status, data, est)
        cost = reservation.amount if actual is None else actual
        await settler.finish(status, "settled", cost)
        if est.cost_micros is None:
            return {}  # no price known: the ledger says `unpriced`
        return {"X-Outlay-Cost-USD": micros_to_usd(cost)}  # the bill, overrun or not

    return finish


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


def _worded(refusal: OutlayError, vcall: VendorCall) -> OutlayError:
    """A vendor call whose price is unknown, refused under a hard budget, says which."""
    if refusal.code != "price_unknown":
        return refusal
    where = printable(route_path(vcall.path))
    if refusal.details.get("flow") == "out":
        return BadRequest(
            "price_unknown",
            f"{vcall.method} {where} names no `amount`, so it would move the whole refundable "
            "remainder, which Outlay cannot know before the call; it cannot be reserved under "
            "a hard money-out budget (flow: out). Name the `amount` to move.",
            param="amount", vendor=vcall.vendor, method=vcall.method, path=where, flow="out")
    return BadRequest(
        "price_unknown",
        f"Outlay knows no price for {vcall.method} {where} on {vcall.vendor}, so it cannot "
        "be reserved under a hard budget. An operator can price it (or, if it moves no "
        f"money, free it with `usd: 0`) under vendors.{vcall.vendor}.rules.",
        vendor=vcall.vendor, method=vcall.method, path=where)


def _hung_up(request: web.Request) -> bool:
    """Whether the agent closed the connection (a call waiting in the queue leaves it)."""
    return request.transport is None or request.transport.is_closing()
