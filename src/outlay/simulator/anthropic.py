"""The simulated Anthropic API: messages (plain and streamed), token counting and models.

Event names and shapes follow the real Messages stream so the official ``anthropic`` SDK,
and the gateway's own usage reader, see what they would see in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from outlay.simulator import tool_answers
from outlay.simulator.common import (
    BREAK_MODEL,
    SimContext,
    SimRejection,
    SimReply,
    canned_reply,
    forced_error_status,
    json_reply,
    maybe_broken,
    message_tokens,
    optional_limit,
    parse_body,
    require_model,
    sse_event,
    sse_reply,
)
from outlay.simulator.failures import anthropic_failure, failing
from outlay.simulator.function_tools import anthropic_call, definitions_tokens
from outlay.simulator.server_tools import (
    anthropic_blocks,
    anthropic_tier,
    anthropic_usage_of,
    anthropic_uses,
    iterations_input,
)

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
_MODELS_CREATED_AT = "2025-01-01T00:00:00Z"
_ERROR_TYPES: Mapping[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
)


def handle(method: str, path: str, body: bytes, ctx: SimContext) -> SimReply:
    """Answer one call as Anthropic would, errors included."""
    request_id = ctx.new_id("req_")
    headers = {"request-id": request_id}
    try:
        return _route(method, path, body, ctx, headers)
    except SimRejection as exc:
        return error_reply(exc.status, exc.message, headers)


def error_reply(status: int, message: str, headers: Mapping[str, str]) -> SimReply:
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    error = {"type": _ERROR_TYPES.get(status, fallback), "message": message}
    answer = {"type": "error", "error": error, "request_id": headers.get("request-id")}
    return json_reply(status, answer, headers)


def _route(
    method: str, path: str, body: bytes, ctx: SimContext, headers: Mapping[str, str]
) -> SimReply:
    if method == "GET" and path == "/v1/models":
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": _MODELS_CREATED_AT}
            for name in MODELS
        ]
        page = {"data": data, "first_id": MODELS[0], "last_id": MODELS[-1], "has_more": False}
        return json_reply(200, page, headers)
    if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
        raise SimRejection(404, "Not found")
    payload = parse_body(body)
    model = require_model(payload)
    forced = forced_error_status(model)
    if forced is not None:
        raise SimRejection(forced, f"Simulated error {forced} requested by model '{model}'.")
    input_tokens = _input_tokens(payload)
    if path == "/v1/messages/count_tokens":
        return json_reply(200, {"input_tokens": input_tokens}, headers)
    return _messages(payload, model, input_tokens, ctx, headers)


def _input_tokens(payload: Mapping[str, Any]) -> int:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimRejection(400, "messages: at least one message is required")
    tokens = sum(message_tokens(message) for message in messages)
    system = payload.get("system")
    if system is not None:
        if not isinstance(system, str | list):
            raise SimRejection(400, "system: Input should be a valid string or list")
        tokens += message_tokens(system)
    return tokens + definitions_tokens(payload.get("tools"))


def _messages(
    payload: Mapping[str, Any],
    model: str,
    input_tokens: int,
    ctx: SimContext,
    headers: Mapping[str, str],
) -> SimReply:
    limit = optional_limit(payload, "max_tokens")
    if limit is None:
        # Unlike OpenAI, Anthropic has no default output limit.
        raise SimRejection(400, "max_tokens: Field required")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise SimRejection(400, "stream: Input should be a valid boolean")
    reply = canned_reply(limit, model)
    call = anthropic_call(payload, limit)
    stop_reason = "tool_use" if call else "max_tokens" if reply.truncated else "end_turn"
    tier = anthropic_tier(payload, ctx.tiers.get("anthropic"))
    uses = anthropic_uses(payload)
    tools = anthropic_blocks(uses, ctx.new_id)
    # each server tool use starts another iteration, which reads the context again
    total_input = iterations_input(input_tokens, len(uses))
    usage = _usage(total_input, reply.output_tokens if call is None else call.output_tokens,
                   tier)
    # the answer ends in the text, or in the agent's tool called instead
    last = ({"type": "text", "text": reply.text} if call is None
            else tool_answers.anthropic_block(call, ctx.new_id))
    if uses:
        usage["server_tool_use"] = anthropic_usage_of(uses)
    message: dict[str, Any] = {
        "id": ctx.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [*tools, last],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    broken = model == BREAK_MODEL
    if failing(model) and not stream:
        return anthropic_failure([], False, headers)
    if not stream:
        return maybe_broken(json_reply(200, message, headers), broken)

    # message_start reports the first iteration's input and a placeholder output count, as
    # the real API does; message_delta the totals, with the server tools' uses.
    opening = {**message, "content": [], "stop_reason": None,
               "usage": _usage(input_tokens, 1, tier)}
    steps: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": opening})]
    for index, block in enumerate(tools):
        steps += [("content_block_start", {"index": index, "content_block": block}),
                  ("content_block_stop", {"index": index})]
    text = len(tools)
    if call is not None:
        steps += tool_answers.anthropic_steps(last, text)
    else:
        steps += [
            ("content_block_start",
             {"index": text, "content_block": {"type": "text", "text": ""}}),
            ("ping", {}),
            *(("content_block_delta",
               {"index": text, "delta": {"type": "text_delta", "text": piece}})
              for piece in reply.pieces),
            ("content_block_stop", {"index": text}),
        ]
    # message_delta carries the whole usage, input included, as the real API's does
    final = {key: usage[key] for key in usage if key != "service_tier"}
    steps += [
        (
            "message_delta",
            {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": final},
        ),
        ("message_stop", {}),
    ]
    events = [sse_event(name, {"type": name, **data}) for name, data in steps]
    if failing(model):
        return anthropic_failure(events, stream, headers)
    return sse_reply(events, headers, broken=broken)


def _usage(input_tokens: int, output_tokens: int, tier: str) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": tier,
    }
