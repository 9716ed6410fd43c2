"""Sending an admitted vendor call and answering with the vendor's answer, unchanged: what
every vendor call shares, whichever way its reservation is then settled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from outlay.gateway.admission import cleared_to_send
from outlay.gateway.context import Gateway
from outlay.gateway.forward import response_headers
from outlay.gateway.vendor_errors import vendor_refusal
from outlay.gateway.vendor_headers import VendorHeaders
from outlay.policy.errors import Unavailable
from outlay.state.base import Reservation, Settled
from outlay.upstream.base import UpstreamBroken, UpstreamRequest, UpstreamUnreachable

# settles the call (status, how, the vendor's answer if any); the headers to add
Finish = Callable[[int, Settled, bytes | None], Awaitable[dict[str, str]]]


def raw_path(request: web.Request) -> str:
    """The vendor-relative path as the agent encoded it, `%3F` and `%23` included.

    aiohttp decodes match_info; forwarding that would end the path at a decoded `?` or `#`.
    Pricing decodes the path itself (vendors.base.route_path). aiohttp routes on the path
    with `%2F` kept encoded, so the raw path has the route's slashes: /vendors/<v>/<rest>.
    """
    parts = request.rel_url.raw_path.split("/", 3)
    return "/" + (parts[3] if len(parts) == 4 else "")


def outgoing(request: web.Request, rule: VendorHeaders, vendor: str, path: str, body: bytes
             ) -> UpstreamRequest:
    """The agent's request as it goes to the vendor, with only the headers the vendor is
    sent (gateway.vendor_headers); the credential is added on sending."""
    return UpstreamRequest(
        provider=vendor, method=request.method.upper(), path=path,
        headers=rule.forwarded(request.headers),
        body=body, stream=False, query=request.rel_url.raw_query_string,
    )


async def read_vendor(gw: Gateway, sent: UpstreamRequest) -> tuple[int, bytes]:
    """The vendor's status and whole body; raises what the upstream raises."""
    answer = await gw.vendors.send(sent)
    try:
        return answer.status, await answer.read()
    finally:
        await answer.close()


async def forward(gw: Gateway, sent: UpstreamRequest, reservation: Reservation,
                  ours: dict[str, str], finish: Finish) -> web.StreamResponse:
    """Send, settle as the answer says, and answer: a 4xx voids the call (refused before any
    money moved), a 5xx or a broken connection charges it whole (the vendor may have
    acted), a call never sent is voided."""
    vendor, request_id = sent.provider, reservation.id
    refusal = await cleared_to_send(gw, reservation)
    if refusal is not None:
        return vendor_refusal(refusal, vendor, request_id, ours)
    try:
        answer = await gw.vendors.send(sent)
        try:
            data = await answer.read()
        finally:
            await answer.close()
    except UpstreamUnreachable as exc:
        await finish(502, "void", None)
        return vendor_refusal(Unavailable(
            "upstream_unavailable", f"The vendor {vendor} could not be reached: {exc}",
            status=502), vendor, request_id, ours)
    except (UpstreamBroken, asyncio.CancelledError) as broke:
        await finish(502, "unsettled", None)
        if isinstance(broke, asyncio.CancelledError):
            raise
        return vendor_refusal(Unavailable(
            "upstream_unavailable", f"The connection to {vendor} broke: {broke}",
            status=502), vendor, request_id, ours)
    status = answer.status
    if 400 <= status < 500:
        await finish(status, "void", data)
    elif status >= 500:
        await finish(status, "unsettled", data)
    else:
        ours.update(await finish(status, "settled", data))
    return web.Response(status=status, body=data, headers=response_headers(answer.headers, ours))
