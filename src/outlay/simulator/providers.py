"""An in-process provider, no sockets: what Outlay serves when no credentials are configured.

Special model names exercise failure paths: ``sim-error-NNN`` answers HTTP NNN in the
provider's error shape, ``sim-break`` loses the connection after the request was sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping

from multidict import CIMultiDict

from outlay.simulator import anthropic as sim_anthropic
from outlay.simulator import openai as sim_openai
from outlay.simulator.common import SimContext, SimReply
from outlay.upstream.base import (
    EndpointHealth,
    UpstreamBroken,
    UpstreamRequest,
    UpstreamResponse,
)
from outlay.upstream.breaker import BreakerState

# Streams pause this fraction of the latency between chunks: slow enough to hold a call in
# flight, quick enough that a whole reply is not many times the configured latency.
CHUNK_PAUSE_FRACTION = 0.05
# On every answer the simulator gives, provider's or vendor's (SPEC §4.4)
SIMULATED_HEADER = "X-Outlay-Simulated"


class SimulatedUpstream:
    """Answers as Anthropic would for the providers of that type, and as OpenAI would for any
    other, in process: `providers` are those it stands in for (for the health listing).

    Like a real provider it reads ``stream`` from the JSON body, not from the request object.
    """

    def __init__(self, latency_ms: float = 0, tiers: Mapping[str, str] | None = None, *,
                 providers: Collection[str] = ("openai", "anthropic"),
                 anthropic: Collection[str] = ("anthropic",)) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        self._providers = tuple(providers)
        self._anthropic = frozenset(anthropic)
        self._latency_s = latency_ms / 1000
        self._context = SimContext(new_id=_new_id, now=lambda: int(time.time()),
                                   tiers=dict(tiers or {}))

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        handle = sim_anthropic.handle if request.provider in self._anthropic \
            else sim_openai.handle
        reply = handle(request.method.upper(), request.path, request.body, self._context)
        if reply.break_after == 0:
            raise UpstreamBroken("simulated: connection lost after the request was sent")
        return SimulatedResponse(reply, pause_s=self._latency_s * CHUNK_PAUSE_FRACTION)

    async def close(self) -> None:
        """Nothing to release; here to satisfy the Upstream protocol."""

    def health(self) -> list[EndpointHealth]:
        return [EndpointHealth(provider, "simulated", 1, BreakerState.CLOSED, 0)
                for provider in self._providers]


class SimulatedResponse:
    """A prepared answer delivered chunk by chunk, optionally cut short."""

    def __init__(self, reply: SimReply, pause_s: float = 0) -> None:
        self.status: int = reply.status
        headers = CIMultiDict(reply.headers)
        headers[SIMULATED_HEADER] = "true"  # no agent or operator may take it for the real one
        self.headers: Mapping[str, str] = headers
        self._chunks = reply.chunks
        self._break_after = reply.break_after
        self._pause_s = pause_s
        self._closed = False

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if index == self._break_after:
                raise UpstreamBroken("simulated: connection lost mid-body")
            if index and self._pause_s:
                await asyncio.sleep(self._pause_s)
            if self._closed:
                return
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def close(self) -> None:
        self._closed = True


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]
