"""Reads the usage a provider reports out of a response, streamed or not, without
holding the stream back: chunks are scanned as they pass through. What a stream showed of
its output is kept too, for a stream that ends without usage (an error event mid-way)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from outlay.pricing.usage import reported_tier

# What a tap keeps of a stream's events to count its output text once, if the stream ends
# without usage; past it, every byte counts as a token (a bound, never an undercount)
KEPT_BYTES = 256 * 1024
# The JSON string fields that carry output: text, reasoning, tool-call arguments, refusals
# (compact JSON or not: whitespace may surround the colon)
_OUTPUT_FIELD = re.compile(
    rb'"(?:content|delta|text|thinking|partial_json|arguments|refusal)"\s*:\s*"')


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
        self.failed = False  # an error event came (OpenAI's or Anthropic's)
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._unkept_bytes = 0

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        # events end with a blank line; only complete events are parsed
        cut = max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n"))
        if cut < 0:
            self._pending = data
            return
        complete, self._pending = data[:cut], data[cut:]
        if self._kept_bytes + len(complete) <= KEPT_BYTES:
            self._kept.append(complete)
            self._kept_bytes += len(complete)
        else:
            self._unkept_bytes += len(complete)
        if b'"usage"' not in complete and b"[DONE]" not in complete and \
                b"stop" not in complete and b'"error"' not in complete:
            return
        for line in complete.splitlines():
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.finished = True
            return
        if b'"usage"' not in payload and b"message_stop" not in payload and \
                b'"error"' not in payload:
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
        if kind == "error" or isinstance(event.get("error"), dict):
            self.failed = True
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


    def output_bytes(self) -> int:
        """A bound on the output tokens the stream showed: the UTF-8 bytes of its output
        text as the events carried it (escaped JSON is never shorter), each byte at most a
        token, and every byte past what was kept."""
        return sum(map(text_bytes, self._kept)) + self._unkept_bytes


def text_bytes(data: bytes) -> int:
    """Bytes of the output strings in a run of JSON events, as written (escapes included)."""
    total = 0
    at = 0
    while (found := _OUTPUT_FIELD.search(data, at)) is not None:
        start = found.end()
        end = _string_end(data, start)
        if end < 0:
            return total + len(data) - start  # cut short: all of it, to be safe
        total += end - start
        at = end + 1
    return total


def _string_end(data: bytes, start: int) -> int:
    """The index of the quote that ends a JSON string starting at `start` (-1: none)."""
    end = data.find(b'"', start)
    while end > 0:
        backslashes = 0
        while data[end - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        end = data.find(b'"', end + 1)
    return end


def error_body(document: dict[str, Any]) -> bool:
    """An answer that is an error, whatever its status: OpenAI's `{"error": …}`,
    Anthropic's `{"type": "error", …}`."""
    return document.get("type") == "error" or isinstance(document.get("error"), dict)


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
