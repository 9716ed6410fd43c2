"""Vendor calls on payment objects (Stripe's payment intents and charges), counted by exposure
(vendors.objects, state.exposure).

A call is priced on the object's record: it reserves what it may add to what the object
already holds, and the store admits it only if the record is still the one it was priced on
(else it is priced again). An object Outlay has not counted yet (made elsewhere) is read
from the vendor first, with the gateway's credential, and its whole exposure reserved. The
call is settled to what the vendor's answer shows the object holds; what will no longer
move is given back to every scope that was charged for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from aiohttp import web

from outlay.gateway.admission import admit, refuse_invalid, unavailable
from outlay.gateway.context import Gateway
from outlay.gateway.headers import limit_headers
from outlay.gateway.vendor_errors import vendor_refusal
from outlay.gateway.vendor_forward import Finish, forward, read_vendor
from outlay.policy.approvals import RequestShape
from outlay.policy.decide import authenticate
from outlay.policy.decision import Call
from outlay.policy.errors import OutlayError, Unavailable
from outlay.policy.money import micros_to_usd
from outlay.state.base import Outcome, Reservation, Settled, StateError, Ticket, charged
from outlay.state.exposure import ExposureClaim, ExposureReport, ObjectMoved
from outlay.upstream.base import UpstreamBroken, UpstreamRequest, UpstreamUnreachable
from outlay.vendors.objects import ObjectCall, ObjectPricing

# how often a call is priced again when its object changed meanwhile (calls on one object
# at once); each try is one read of the record, and some call on the object always wins
MAX_PRICINGS = 8


@dataclass(frozen=True)
class Caller:
    """Who makes the call, as the request says."""

    request_id: str
    key_hash: str | None
    approval_id: str | None
    account: str  # the vendor account (vendors.vendor_account) its idempotency keys are kept on
    shape: RequestShape  # what an approval it presents must have been opened for
    call: Call  # what the call asks for that a policy may not allow (policy.vendor_checks)
    tags: Mapping[str, str] = field(default_factory=dict)  # X-Outlay-Tags


async def object_call(gw: Gateway, caller: Caller, pricing: ObjectPricing, call: ObjectCall,
                      sent: UpstreamRequest) -> web.StreamResponse:
    vendor = sent.provider
    for _ in range(MAX_PRICINGS):
        priced = await _price(gw, caller, pricing, call, vendor)
        if isinstance(priced, OutlayError):
            return vendor_refusal(priced, vendor, caller.request_id)
        cost, claim = priced
        ticket = Ticket(caller.request_id, caller.key_hash,
                        replace(caller.call, cost_micros=cost),
                        f"vendor.{vendor}",
                        idempotency_key=call.idempotency_key if cost else None,
                        idempotency_account=caller.account, approval_id=caller.approval_id,
                        shape=caller.shape, may_wait=True, tags=caller.tags)
        try:
            reservation = await admit(gw, ticket, claim)
        except ObjectMoved:
            continue  # nothing was written: price it on the record as it is now
        if not isinstance(reservation, Reservation):
            return vendor_refusal(reservation, vendor, caller.request_id)
        ours = {"X-Outlay-Request-Id": reservation.id,
                **limit_headers(reservation.limits, gw.clock())}
        if reservation.amount:
            ours["X-Outlay-Reserved-USD"] = micros_to_usd(reservation.amount)
        if reservation.replay_of:
            ours["X-Outlay-Replay-Of"] = reservation.replay_of
        return await forward(gw, sent, reservation, ours,
                             _finisher(gw, pricing, call, vendor, reservation))
    busy = await _refuse(gw, caller, vendor, Unavailable(
        "enforcement_unavailable", f"The {call.kind} {call.object_id} kept changing while "
        "Outlay counted this call on it; try again."))
    return vendor_refusal(busy, vendor, caller.request_id)


async def _price(gw: Gateway, caller: Caller, pricing: ObjectPricing, call: ObjectCall,
                 vendor: str) -> tuple[int, ExposureClaim] | OutlayError:
    """What the call reserves, and the record it was priced on."""
    if call.object_id is None:  # a create: its answer names the object
        return pricing.target(call, None), ExposureClaim(vendor, None, 0)
    try:
        record = await gw.store.vendor_object(vendor, call.object_id)
    except StateError as exc:
        return await _refuse(gw, caller, vendor, unavailable(gw, exc))
    if record is not None:
        return (max(0, pricing.target(call, record.state) - record.held),
                ExposureClaim(vendor, call.object_id, record.version))
    state = await _read_first(gw, caller, pricing, call, vendor)
    if isinstance(state, OutlayError):
        return state
    return pricing.target(call, state), ExposureClaim(vendor, call.object_id, 0, state)


async def _read_first(gw: Gateway, caller: Caller, pricing: ObjectPricing, call: ObjectCall,
                      vendor: str) -> str | OutlayError | None:
    """The object as the vendor has it, for an object Outlay has not counted; None when the
    vendor does not know it (the call itself then fails the same way)."""
    try:  # the read uses the gateway's credential: only for a caller whose key is good
        key = None if caller.key_hash is None else await gw.store.key_by_hash(caller.key_hash)
    except StateError as exc:
        return await _refuse(gw, caller, vendor, unavailable(gw, exc))
    if authenticate(key, gw.clock()) is not None or call.read_path is None:
        return None  # refused by the decision, which says why
    read = UpstreamRequest(vendor, "GET", call.read_path, dict(call.read_headers), b"", False)
    why = ""
    try:
        status, body = await read_vendor(gw, read)
    except (UpstreamUnreachable, UpstreamBroken) as failure:
        status, body, why = 0, b"", str(failure)
    if 400 <= status < 500:
        return None
    seen = pricing.seen(call, body) if 200 <= status < 300 else None
    if seen is not None:
        return seen.state
    why = why or (f"it answered {status}" if status >= 300 else f"its answer shows no {call.kind}")
    return await _refuse(gw, caller, vendor, Unavailable(
        "upstream_unavailable", f"Outlay reads a {call.kind} it has not counted before a call "
        f"on it, and {vendor} did not answer the read of {call.object_id}: {why}.",
        status=502))


async def _refuse(gw: Gateway, caller: Caller, vendor: str, error: OutlayError
                  ) -> OutlayError:
    ticket = Ticket(caller.request_id, caller.key_hash, Call(vendor=vendor), f"vendor.{vendor}")
    return await refuse_invalid(gw, ticket, error)


def _finisher(gw: Gateway, pricing: ObjectPricing, call: ObjectCall, vendor: str,
              reservation: Reservation) -> Finish:
    async def finish(status: int, settled: Settled, data: bytes | None) -> dict[str, str]:
        report = None
        if settled == "settled":
            seen = None if data is None else pricing.seen(call, data)
            report = (ExposureReport() if seen is None  # shows nothing: the hold stands
                      else ExposureReport(seen.object_id, seen.exposure, seen.state))
        # a call that succeeded is charged what it reserved; the object's answer then
        # gives back what no longer can move
        cost = reservation.amount if settled == "settled" else 0
        gw.metrics.settled(vendor, "", settled, charged(settled, cost, reservation.amount))
        try:
            given = await gw.store.settle_exposure(
                Outcome(reservation.id, status, cost, 0, settled), report)
        except StateError:
            return {}  # the money stays held, and the reaper charges it after its lease
        if settled != "settled":
            return {}
        headers = {"X-Outlay-Cost-USD": micros_to_usd(reservation.amount)}
        if given:
            headers["X-Outlay-Returned-USD"] = micros_to_usd(given)
            gw.metrics.gave_back(gw.vendor_label(vendor), given)
        return headers

    return finish

