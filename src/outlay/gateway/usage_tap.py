"""Reads the usage a provider reports out of a response, streamed or not, without
holding the stream back: chunks are scanned as they pass through."""

from __future__ import annotations

from typing import Any

import orjson

from outlay.pricing.usage import reported_tier


class UsageTap:
    """Collects the usage of an SSE stream (OpenAI chunks and Responses events, Anthropic
    message events) from the raw bytes passing through."""

    def __init__(self) -> None:
        self._pending = b""
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.tier: str | None = None  # the service tier the stream says the call ran in
        self.response: dict[str, Any] | None = None  # a Responses stream's final response
        self.finished = False

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        # events end with a blank line; only complete events are parsed
        cut = max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n"))
        if cut < 0:
            self._pending = data
            return
        complete, self._pending = data[:cut], data[cut:]
        if b'"usage"' not in complete and b"[DONE]" not in complete and b"stop" not in complete:
            return
        for line in complete.splitlines():
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.finished = True
            return
        if b'"usage"' not in payload and b"message_stop" not in payload:
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_stop":
            self.finished = True
        found = usage_of(event)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.finished = True
            response = event.get("response")
            self.response = response if isinstance(response, dict) else None
        tier = reported_tier(event)
        if tier is not None:
            self.tier = tier
        if found:
            self.usage.update({k: v for k, v in found.items() if v is not None})
        model = event.get("model") or (event.get("message") or {}).get("model") or (
            event.get("response") or {}).get("model")
        if isinstance(model, str):
            self.model = model


def usage_of(document: dict[str, Any]) -> dict[str, Any] | None:
    """The usage object of a JSON answer or stream event, wherever the provider puts it."""
    for holder in (document, document.get("message"), document.get("response")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            usage: dict[str, Any] = holder["usage"]
            return usage
    return None


class UsageHider:
    """Drops the usage-only chunk of an OpenAI stream when Outlay asked for it and the agent did
    not: code written against OpenAI's default stream reads `choices[0]` of every chunk, and
    that last chunk has no choices. Complete events pass at once; only a partial one waits."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._pending = data
            return b""
        complete, self._pending = data[: cut + 2], data[cut + 2 :]
        if b'"usage"' not in complete:
            return complete
        return b"\n\n".join(e for e in complete.split(b"\n\n") if not _usage_only(e))

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


def _usage_only(event: bytes) -> bool:
    payload = event.strip()
    if not payload.startswith(b"data:") or b'"usage"' not in payload:
        return False
    try:
        chunk = orjson.loads(payload[5:].strip())
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and bool(chunk.get("usage"))
