"""Calls that end badly, as the real APIs end them, for models named ``sim-fail…``: a stream
cut by an error event after some of its output (OpenAI's `{"error": …}` chunk, Anthropic's
`overloaded_error`), a Responses call that ends `failed` with the usage it ran up, and a 200
whose body is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outlay.simulator.common import SimReply, json_reply, sse_data, sse_event, sse_reply

FAIL_PREFIX = "sim-fail"
_OVERLOADED = {"message": "The server is overloaded. Try again later.", "type": "server_error",
               "param": None, "code": "server_overloaded"}


def failing(model: str) -> bool:
    return model.startswith(FAIL_PREFIX)


def chat_failure(events: list[bytes], stream: bool, headers: Mapping[str, str]) -> SimReply:
    """Chat and legacy completions: a stream whose second half is lost to an error chunk
    (no usage, no [DONE]); a whole answer that is a 200 error body."""
    if not stream:
        return json_reply(200, {"error": _OVERLOADED}, headers)
    shown = events[: max(1, len(events) // 2)]
    return sse_reply([*shown, sse_data({"error": _OVERLOADED})], headers, broken=False)


def responses_failure(final: dict[str, Any], events: list[bytes], stream: bool,
                      headers: Mapping[str, str]) -> SimReply:
    """Responses: the call fails half-way and says so, with the usage it ran up."""
    usage = dict(final["usage"])
    usage["output_tokens"] = max(1, usage["output_tokens"] // 2)
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    failed = {**final, "status": "failed", "output": [], "incomplete_details": None,
              "error": {"code": "server_error", "message": "The model failed to finish."},
              "usage": usage}
    if not stream:
        return json_reply(200, failed, headers)
    shown = events[: max(1, len(events) // 2)]
    name = "response.failed"
    last = sse_event(name, {"type": name, "sequence_number": len(shown), "response": failed})
    return sse_reply([*shown, last], headers, broken=False)


def anthropic_failure(events: list[bytes], stream: bool,
                      headers: Mapping[str, str]) -> SimReply:
    """Messages: a stream overloaded after its start and some text; a whole call refused 529
    (Anthropic answers no 200 error bodies)."""
    error = {"type": "overloaded_error", "message": "Overloaded"}
    if not stream:
        return json_reply(529, {"type": "error", "error": error,
                                "request_id": headers.get("request-id")}, headers)
    shown = events[: max(1, len(events) // 2)]
    return sse_reply([*shown, sse_event("error", {"type": "error", "error": error})], headers,
                     broken=False)
