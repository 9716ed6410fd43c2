"""Test doubles for the gateway: a scripted upstream, a clock the test moves, provider answers,
and a handle on a running app with helpers that drive the admin API as an operator would."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from aiohttp import ClientPayloadError, ClientResponse, ServerDisconnectedError
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from outlay.pricing.table import PriceTable
from outlay.settings import Settings
from outlay.state.base import Outcome
from outlay.state.sqlite.store import SqliteStore
from outlay.upstream.base import (
    EndpointHealth,
    UpstreamBroken,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.breaker import BreakerState

# Every wait on the gateway is bounded by this: SPEC's kill switch promises one second.
WAIT_S = 1.0
ADMIN_TOKEN = "adm"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# 2025-06-15T12:00:00Z: mid-month, mid-day, so no budget period turns over during a test.
START_MS = 1_749_988_800_000
# Prices chosen so costs are easy to read: 1 USD per million tokens is 1 micro-USD a token.
PRICES = {
    "test-gpt": {"provider": "openai", "input": 1, "output": 2, "max_output_tokens": 100,
                 "context_window": 128_000},
    "test-claude": {"provider": "anthropic", "input": 3, "output": 15,
                    "max_output_tokens": 200, "context_window": 200_000},
    "test-free": {"provider": "openai", "free": True, "max_output_tokens": 100,
                  "context_window": 128_000},
}


@cache
def price_table() -> PriceTable:
    """The shipped table with the test models; immutable, so loaded once for the session."""
    return PriceTable.load(PRICES)


CHAT = {"model": "test-gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
MESSAGE = {"model": "test-claude", "max_tokens": 10,
           "messages": [{"role": "user", "content": "hi"}]}


class ManualClock:
    """Milliseconds since the epoch, moved only by the test."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class WatchedStore(SqliteStore):
    """The SQLite store, telling the test when a reservation settles (no sleeping to find out)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, Outcome] = {}
        self._changed = asyncio.Event()

    def _settle(self, c: sqlite3.Connection, outcome: Outcome) -> bool:
        # hooked where the settlement is applied: it runs even when its caller was cancelled
        done = super()._settle(c, outcome)
        self.outcomes[outcome.reservation_id] = outcome
        self._changed.set()
        return done

    async def wait_settled(self, request_id: str, within_s: float = WAIT_S) -> Outcome:
        async with asyncio.timeout(within_s):
            while request_id not in self.outcomes:
                self._changed.clear()
                await self._changed.wait()
        return self.outcomes[request_id]


# --- what the fake provider answers ---------------------------------------------------------


@dataclass
class Reply:
    """One canned answer. `chunks` makes it a stream; otherwise `body` is the whole answer."""

    status: int = 200
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"Content-Type": "application/json"})
    body: bytes = b"{}"
    chunks: Sequence[bytes] | None = None
    pause_after: int | None = None  # after yielding this many chunks, wait for `release`
    break_after: int | None = None  # after yielding this many chunks, the connection breaks
    # after the chunks, this chunk again and again, `every_s` apart, until the gateway stops
    # reading (a hostile provider's stream that never ends)
    endless: bytes | None = None
    every_s: float = 0.0
    unreachable: bool = False  # nothing is sent: UpstreamUnreachable from send()
    broken: bool = False  # sent, then lost before any headers: UpstreamBroken from send()


class FakeResponse:
    """A canned answer delivered chunk by chunk; remembers whether the gateway released it."""

    def __init__(self, reply: Reply, upstream: FakeUpstream) -> None:
        self.status = reply.status
        self.headers: Mapping[str, str] = CIMultiDict(reply.headers)
        self._reply = reply
        self._upstream = upstream
        self.closed = False
        self.endless_sent = 0  # times the endless chunk was sent

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        reply = self._reply
        chunks = list(reply.chunks) if reply.chunks is not None else [reply.body]
        for index in range(len(chunks) + 1):
            if index == reply.pause_after:
                self._upstream.paused.set()
                await self._upstream.release.wait()
            if index == reply.break_after:
                raise UpstreamBroken("fake: connection lost mid-body")
            if index < len(chunks):
                yield chunks[index]
        while reply.endless is not None:
            await asyncio.sleep(reply.every_s)
            self.endless_sent += 1
            yield reply.endless

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def close(self) -> None:
        self.closed = True


class FakeUpstream:
    """Records every request and answers from a script (then with `default`)."""

    def __init__(self) -> None:
        self.requests: list[UpstreamRequest] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply(body=openai_answer())
        self.responses: list[FakeResponse] = []
        self.paused = asyncio.Event()  # set when a stream reaches its pause
        self.release = asyncio.Event()  # set to let a paused stream go on
        self.closed = False

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.requests.append(request)
        reply = self.replies.popleft() if self.replies else self.default
        if reply.unreachable:
            raise UpstreamUnreachable("fake: connection refused")
        if reply.broken:
            raise UpstreamBroken("fake: connection lost before the answer")
        response = FakeResponse(reply, self)
        self.responses.append(response)
        return response

    async def close(self) -> None:
        self.closed = True

    def health(self) -> list[EndpointHealth]:
        return [EndpointHealth("openai", "fake", 1, BreakerState.CLOSED, 0)]

    @property
    def last(self) -> UpstreamRequest:
        return self.requests[-1]

    def last_json(self) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.last.body)
        return body


# --- provider answers -------------------------------------------------------------------------


def openai_answer(prompt: int = 10, completion: int = 5, model: str = "test-gpt") -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    })


def sse(event: object) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def openai_stream(
    words: Sequence[str] = ("Hel", "lo"), usage: tuple[int, int] | None = (10, 5)
) -> list[bytes]:
    """Chat completion chunks; with `usage`, the final usage chunk that include_usage asks for."""
    chunks = [
        sse({"id": "c1", "object": "chat.completion.chunk", "model": "test-gpt",
             "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
        for word in words
    ]
    if usage is not None:
        chunks.append(sse({"id": "c1", "object": "chat.completion.chunk", "model": "test-gpt",
                           "choices": [], "usage": {"prompt_tokens": usage[0],
                                                    "completion_tokens": usage[1],
                                                    "total_tokens": sum(usage)}}))
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def anthropic_answer(input_tokens: int = 10, output_tokens: int = 5) -> bytes:
    return orjson.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "test-claude",
        "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    })


def anthropic_event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + sse({"type": kind, **data})


def anthropic_stream(input_tokens: int = 10, output_tokens: int = 5) -> list[bytes]:
    """message_start (input usage) … message_delta (output usage) … message_stop."""
    return [
        anthropic_event("message_start", {"message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "test-claude",
            "content": [], "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        anthropic_event("content_block_start", {
            "index": 0, "content_block": {"type": "text", "text": ""}}),
        anthropic_event("content_block_delta", {
            "index": 0, "delta": {"type": "text_delta", "text": "hello"}}),
        anthropic_event("content_block_stop", {"index": 0}),
        anthropic_event("message_delta", {
            "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output_tokens}}),
        anthropic_event("message_stop", {}),
    ]


SSE_HEADERS = {"Content-Type": "text/event-stream"}


# --- the gateway under test -------------------------------------------------------------------


@dataclass
class Outlay:
    """An app built by create_app, its client, and the fakes it was given."""

    client: TestClient[Any, Any]
    upstream: FakeUpstream
    store: WatchedStore
    clock: ManualClock
    settings: Settings

    async def admin(self, method: str, path: str, body: object = None,
                    expect: int | None = 200) -> Any:
        """Call /admin/v1/<path>; check the status (unless `expect` is None); return JSON."""
        kwargs: dict[str, Any] = {"headers": ADMIN}
        if body is not None:
            kwargs["json"] = body
        resp = await self.client.request(method, f"/admin/v1/{path}", **kwargs)
        data = await resp.json()
        if expect is not None:
            assert resp.status == expect, data
        return data

    async def mint(self, agent: str = "agent-a", **fields: Any) -> dict[str, Any]:
        minted: dict[str, Any] = await self.admin(
            "POST", "keys", {"agent": agent, **fields}, expect=201)
        return minted

    async def set_policy(self, scope: str, policy: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the scope's policy, budgets it drops included (a test's set-up)."""
        stored: dict[str, Any] = await self.admin(
            "PUT", f"policies/{scope}?drop_budgets=true", policy)
        return stored

    async def usage(self, scope: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.admin("GET", f"usage/{scope}")
        return data

    async def budget(self, scope: str) -> dict[str, Any]:
        """The first budget of a scope's usage: spent, reserved, remaining."""
        budget: dict[str, Any] = (await self.usage(scope))["budgets"][0]
        return budget

    async def audit(self, **query: Any) -> list[dict[str, Any]]:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        entries: list[dict[str, Any]] = (await self.admin("GET", f"audit?{q}"))["entries"]
        return entries

    async def post(self, path: str, key: str | None, body: object, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kwargs.pop("headers", {}))
        return await self.client.post(path, json=body, headers=headers, **kwargs)

    async def chat(self, key: str | None, body: object = None, **kwargs: Any) -> Any:
        return await self.post("/v1/chat/completions", key, CHAT if body is None else body,
                               **kwargs)

    async def messages(self, key: str | None, body: object = None, **kwargs: Any) -> Any:
        headers = {"x-api-key": key} if key else {}
        headers.update(kwargs.pop("headers", {}))
        return await self.client.post("/v1/messages", json=MESSAGE if body is None else body,
                                      headers=headers, **kwargs)



MakeOutlay = Callable[..., Awaitable[Outlay]]


# --- reading what the gateway sends back ------------------------------------------------------


async def read_at_least(resp: ClientResponse, size: int) -> bytes:
    """Read until `size` bytes have arrived (more may come in the same piece)."""
    data = b""
    async with asyncio.timeout(WAIT_S):
        while len(data) < size:
            piece = await resp.content.readany()
            if not piece:
                break
            data += piece
    return data


async def read_rest(resp: ClientResponse) -> tuple[bytes, bool]:
    """Read to the end of the body: (bytes, True if the connection was cut short)."""
    data = b""
    async with asyncio.timeout(WAIT_S):
        try:
            while piece := await resp.content.readany():
                data += piece
        except (ClientPayloadError, ServerDisconnectedError):
            return data, True
    return data, False


def error_of(body: dict[str, Any], flavor: str) -> dict[str, Any]:
    """The error object of a refusal, checking the envelope each client family expects."""
    if flavor == "twilio":  # Twilio's own shape: the error is the body
        assert {"code", "message", "status", "more_info"} <= set(body), body
        assert isinstance(body["message"], str)
        assert body["message"]
        return body
    if flavor == "anthropic":
        assert body["type"] == "error", body
        assert set(body) == {"type", "error"}, body
    else:
        assert set(body) == {"error"}, body
        assert "param" in body["error"]
    error: dict[str, Any] = body["error"]
    assert isinstance(error["message"], str)
    assert isinstance(error["type"], str)
    assert error["message"]
    assert error["type"]
    return error
