"""In-process Stripe, Twilio and Resend, no sockets: what vendor calls reach without credentials.

Answers follow each vendor's shapes closely enough for its official SDK to parse them. Every
call that reaches a simulated vendor is logged in ``received``, so a test can prove that a
call the gateway blocked never got here. The request header ``Outlay-Sim-Fault`` exercises
failure paths: ``break`` loses the connection after the request was sent, ``error-NNN``
answers HTTP NNN in the vendor's error shape.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import replace
from typing import Protocol

from multidict import CIMultiDict

from outlay.simulator.common import SimContext, SimReply
from outlay.simulator.providers import SimulatedResponse
from outlay.simulator.resend import ResendSim
from outlay.simulator.stripe import StripeSim
from outlay.simulator.twilio import TwilioSim
from outlay.upstream.base import (
    EndpointHealth,
    UpstreamBroken,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.breaker import BreakerState

SIMULATED_VENDORS = frozenset({"stripe", "twilio", "resend"})
FAULT_HEADER = "Outlay-Sim-Fault"
_FAULT_ERROR = re.compile(r"error-([45]\d\d)")


class VendorSim(Protocol):
    """One simulated vendor: answers a request as that vendor would, state kept inside."""

    @property
    def idempotent(self) -> bool:
        """Whether the vendor honours ``Idempotency-Key`` on POST."""
        ...

    def handle(self, request: UpstreamRequest) -> SimReply: ...

    def error(self, status: int, message: str) -> SimReply:
        """An answer of HTTP ``status`` in the vendor's error shape."""
        ...

    def idempotency_conflict(self, key: str) -> SimReply:
        """The vendor's answer to a reused key with a different request."""
        ...


# What a replay must match: a key reused for another request is refused, as vendors do.
_Fingerprint = tuple[str, str, bytes]


class SimulatedVendors:
    """Answers as Stripe, Twilio or Resend would (``request.provider`` names which).

    ``received`` lists ``(vendor, METHOD, path)`` of every call that reached a vendor, in
    order, and ``requests`` the calls themselves, e.g. to check what the gateway forwarded.
    """

    def __init__(self, latency_ms: float = 0) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        self._latency_s = latency_ms / 1000
        # Full 32-hex ids: Twilio SIDs are that long, and Resend ids are UUIDs.
        context = SimContext(new_id=lambda prefix: prefix + uuid.uuid4().hex, now=_now)
        self._vendors: dict[str, VendorSim] = {
            "stripe": StripeSim(context),
            "twilio": TwilioSim(context),
            "resend": ResendSim(context),
        }
        self._replays: dict[tuple[str, str], tuple[_Fingerprint, SimReply]] = {}
        self.received: list[tuple[str, str, str]] = []
        self.requests: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        vendor = self._vendors.get(request.provider)
        if vendor is None:
            raise UpstreamUnreachable(f"no simulated vendor {request.provider!r}")
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        method = request.method.upper()
        self.received.append((request.provider, method, request.path))
        self.requests.append(request)
        headers = CIMultiDict(request.headers)
        fault = headers.get(FAULT_HEADER)
        if fault is not None:
            return SimulatedResponse(_faulty(vendor, fault.strip().lower()))
        key = headers.get("Idempotency-Key") if method == "POST" and vendor.idempotent else None
        if key is None:
            return SimulatedResponse(vendor.handle(request))
        return SimulatedResponse(self._idempotent(vendor, request, key))

    async def close(self) -> None:
        """Nothing to release; here to satisfy the Upstream protocol."""

    def health(self) -> list[EndpointHealth]:
        return [EndpointHealth(vendor, "simulated", 1, BreakerState.CLOSED, 0)
                for vendor in self._vendors]

    def _idempotent(self, vendor: VendorSim, request: UpstreamRequest, key: str) -> SimReply:
        fingerprint = (request.path, request.query, request.body)
        saved = self._replays.get((request.provider, key))
        if saved is not None:
            first, reply = saved
            if first != fingerprint:
                return vendor.idempotency_conflict(key)
            return replace(reply, headers={**reply.headers, "Idempotent-Replayed": "true"})
        reply = vendor.handle(request)
        # Like Stripe, keep only what happened once work began: a refused request (4xx but a
        # card decline) may be retried with the same key once it is fixed.
        if reply.status < 400 or reply.status == 402:
            self._replays[(request.provider, key)] = (fingerprint, reply)
        return reply


def _faulty(vendor: VendorSim, fault: str) -> SimReply:
    if fault == "break":
        raise UpstreamBroken("simulated: connection lost after the request was sent")
    match = _FAULT_ERROR.fullmatch(fault)
    if match is None:
        return vendor.error(400, f"{FAULT_HEADER} must be 'break' or 'error-NNN', not {fault!r}")
    status = int(match.group(1))
    return vendor.error(status, f"Simulated error {status} requested by {FAULT_HEADER}.")


def _now() -> int:
    return int(time.time())
