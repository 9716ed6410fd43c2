"""The simulated OpenAI API: chat completions, completions, embeddings, responses and models.

Shapes follow the real API closely enough for the official ``openai`` SDK to parse them,
including its default base64 embeddings and its Responses stream events.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Mapping
from typing import Any

from outlay.simulator import background, tool_answers
from outlay.simulator.common import (
    BREAK_MODEL,
    CannedReply,
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
    raw_input_tokens,
    require_model,
    sse_data,
    sse_event,
    sse_reply,
)
from outlay.simulator.failures import chat_failure, failing, responses_failure
from outlay.simulator.function_tools import definitions_tokens, openai_chat_call, responses_call
from outlay.simulator.server_tools import iterations_input, openai_calls, openai_tier

MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")
EMBEDDING_DIMENSIONS = 8
# The real legacy completions endpoint defaults to 16 output tokens.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
# The real Responses API refuses smaller output limits.
RESPONSES_MIN_OUTPUT_TOKENS = 16
_FINGERPRINT = "fp_outlay_sim"
_MODELS_CREATED = 1_700_000_000
_DONE = b"data: [DONE]\n\n"


def handle(method: str, path: str, body: bytes, ctx: SimContext) -> SimReply:
    """Answer one call as OpenAI would, errors included."""
    headers = {"x-request-id": ctx.new_id("req_")}
    try:
        return _route(method, path, body, ctx, headers)
    except SimRejection as exc:
        return error_reply(exc.status, exc.message, exc.param, headers)


def error_reply(
    status: int, message: str, param: str | None, headers: Mapping[str, str]
) -> SimReply:
    code: str | None = None
    if status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json_reply(status, {"error": error}, headers)


def _route(
    method: str, path: str, body: bytes, ctx: SimContext, headers: Mapping[str, str]
) -> SimReply:
    if method == "GET" and path == "/models":
        data = [_model_object(name) for name in MODELS]
        return json_reply(200, {"object": "list", "data": data}, headers)
    if method == "GET" and path.startswith("/models/"):
        name = path.removeprefix("/models/")
        if name not in MODELS:
            raise SimRejection(404, f"The model '{name}' does not exist", "model")
        return json_reply(200, _model_object(name), headers)
    if path.startswith("/responses/"):
        return background.route(method, path, ctx, headers)
    handlers = {
        "/chat/completions": _chat,
        "/completions": _completions,
        "/embeddings": _embeddings,
        "/responses": _responses,
    }
    handler = handlers.get(path)
    if method != "POST" or handler is None:
        raise SimRejection(404, f"Invalid URL ({method} /v1{path})")
    payload = parse_body(body)
    model = require_model(payload)
    forced = forced_error_status(model)
    if forced is not None:
        raise SimRejection(forced, f"Simulated error {forced} requested by model '{model}'.")
    return handler(payload, model, ctx, headers)


def _chat(
    payload: dict[str, Any], model: str, ctx: SimContext, headers: Mapping[str, str]
) -> SimReply:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimRejection(400, "'messages' must be a non-empty array.", "messages")
    stream, include_usage = _stream_flags(payload)
    limit = optional_limit(payload, "max_completion_tokens", "max_tokens")
    reply = canned_reply(limit, model)
    call = openai_chat_call(payload, limit)
    prompt_tokens = sum(message_tokens(m) for m in messages)
    prompt_tokens += definitions_tokens(payload.get("tools"))
    usage = _chat_usage(prompt_tokens,
                        reply.output_tokens if call is None else call.output_tokens)
    finish = "tool_calls" if call else "length" if reply.truncated else "stop"
    call_id = ctx.new_id("call_")
    envelope = {
        "id": ctx.new_id("chatcmpl-"),
        "created": ctx.now(),
        "model": model,
        "service_tier": openai_tier(payload, ctx.tiers.get("openai")),
        "system_fingerprint": _FINGERPRINT,
    }
    broken = model == BREAK_MODEL
    if failing(model) and not stream:
        return chat_failure([], stream, headers)
    if not stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text,
            "refusal": None,
            "annotations": [],
        } if call is None else tool_answers.chat_message(call, call_id)
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        answer = {**envelope, "object": "chat.completion", "choices": [choice], "usage": usage}
        return maybe_broken(json_reply(200, answer, headers), broken)

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _chunk(envelope, "chat.completion.chunk", [choice], include_usage)

    if call is None:
        events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
        events += [chunk({"content": piece}, None) for piece in reply.pieces]
    else:
        events = [chunk(delta, None) for delta in tool_answers.chat_deltas(call, call_id)]
    events.append(chunk({}, finish))
    if include_usage:
        events.append(
            sse_data({**envelope, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        )
    events.append(_DONE)
    if failing(model):
        return chat_failure(events, stream, headers)
    return sse_reply(events, headers, broken=broken)


def _completions(
    payload: dict[str, Any], model: str, ctx: SimContext, headers: Mapping[str, str]
) -> SimReply:
    prompt = payload.get("prompt", "<|endoftext|>")
    stream, include_usage = _stream_flags(payload)
    limit = optional_limit(payload, "max_tokens")
    reply = canned_reply(COMPLETIONS_DEFAULT_MAX_TOKENS if limit is None else limit, model)
    usage = _chat_usage(_prompt_tokens(prompt), reply.output_tokens)
    usage = {key: usage[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    finish = "length" if reply.truncated else "stop"
    envelope = {
        "id": ctx.new_id("cmpl-"),
        "created": ctx.now(),
        "model": model,
        "system_fingerprint": _FINGERPRINT,
    }
    broken = model == BREAK_MODEL
    if not stream:
        choice = {"text": reply.text, "index": 0, "logprobs": None, "finish_reason": finish}
        answer = {**envelope, "object": "text_completion", "choices": [choice], "usage": usage}
        return maybe_broken(json_reply(200, answer, headers), broken)

    def chunk(text: str, finish_reason: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return _chunk(envelope, "text_completion", [choice], include_usage)

    events = [chunk(piece, None) for piece in reply.pieces]
    events.append(chunk("", finish))
    if include_usage:
        events.append(
            sse_data({**envelope, "object": "text_completion", "choices": [], "usage": usage})
        )
    events.append(_DONE)
    return sse_reply(events, headers, broken=broken)


def _embeddings(
    payload: dict[str, Any], model: str, ctx: SimContext, headers: Mapping[str, str]
) -> SimReply:
    del ctx  # embeddings carry no id or timestamp
    items = _embedding_inputs(payload.get("input"))
    dimensions = optional_limit(payload, "dimensions") or EMBEDDING_DIMENSIONS
    encoding = payload.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise SimRejection(400, "'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    data = []
    for index, item in enumerate(items):
        vector = _vector(item, dimensions)
        embedding: list[float] | str = vector
        if encoding == "base64":
            # The SDK asks for base64 by default and reads it as little-endian float32.
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(raw_input_tokens(item) for item in items)
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return maybe_broken(json_reply(200, answer, headers), model == BREAK_MODEL)


def _responses(
    payload: dict[str, Any], model: str, ctx: SimContext, headers: Mapping[str, str]
) -> SimReply:
    given = payload.get("input")
    if isinstance(given, str):
        input_tokens = message_tokens(given)
    elif isinstance(given, list):
        input_tokens = sum(message_tokens(item) for item in given)
    else:
        raise SimRejection(400, "'input' must be a string or an array of items.", "input")
    instructions = payload.get("instructions")
    if isinstance(instructions, str):
        input_tokens += message_tokens(instructions)
    stream, _ = _stream_flags(payload, usage_option=False)
    limit = optional_limit(payload, "max_output_tokens", minimum=RESPONSES_MIN_OUTPUT_TOKENS)
    reply = canned_reply(limit, model)
    ids = (ctx.new_id("resp_"), ctx.new_id("msg_"))
    calls = openai_calls(payload, ctx.new_id)
    input_tokens += definitions_tokens(payload.get("tools"))
    # each built-in tool call starts another iteration, which reads the context again
    final = _response_object(ids, ctx.now(), model, payload, reply,
                             iterations_input(input_tokens, len(calls)), calls)
    call = responses_call(payload, limit)
    if call is not None:
        # the agent's tool is called instead of an answer in text
        usage = final["usage"]
        usage["output_tokens"] = call.output_tokens
        usage["total_tokens"] = usage["input_tokens"] + call.output_tokens
        final.update(status="completed", incomplete_details=None)
        final["output"][-1] = tool_answers.responses_item(call, ctx.new_id)
    final["service_tier"] = openai_tier(payload, ctx.tiers.get("openai"))
    broken = model == BREAK_MODEL
    if failing(model):
        return responses_failure(final, _response_events(final, reply), stream, headers)
    if payload.get("background") is True and not stream:
        return json_reply(200, background.queued(final, ctx), headers)
    if not stream:
        return maybe_broken(json_reply(200, final, headers), broken)
    return sse_reply(_response_events(final, reply), headers, broken=broken)


def _response_object(
    ids: tuple[str, str],
    created: int,
    model: str,
    payload: Mapping[str, Any],
    reply: CannedReply,
    input_tokens: int,
    calls: list[dict[str, Any]],
) -> dict[str, Any]:
    status = "incomplete" if reply.truncated else "completed"
    part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
    item = {
        "id": ids[1],
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [part],
    }
    output_tokens = reply.output_tokens
    return {
        "id": ids[0],
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if reply.truncated else None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "metadata": {},
        "model": model,
        "output": [*calls, item],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": None,
    }


def _response_events(final: dict[str, Any], reply: CannedReply) -> list[bytes]:
    """The Responses stream: created, deltas, then completed (or incomplete) with usage."""
    *calls, item = final["output"]
    pending = {**final, "status": "in_progress", "output": [], "usage": None}
    pending["incomplete_details"] = None
    at = len(calls)
    where = {"item_id": item["id"], "output_index": at, "content_index": 0}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
    ]
    for index, call in enumerate(calls):
        steps += [
            ("response.output_item.added",
             {"output_index": index, "item": {**call, "status": "in_progress"}}),
            ("response.output_item.done", {"output_index": index, "item": call}),
        ]
    if item["type"] == "function_call":
        steps += tool_answers.responses_steps(item, at)
    else:
        part = item["content"][0]
        steps += [
            ("response.output_item.added",
             {"output_index": at, "item": {**item, "status": "in_progress", "content": []}}),
            ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
            *(("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
              for piece in reply.pieces),
            ("response.output_text.done", {**where, "text": reply.text, "logprobs": []}),
            ("response.content_part.done", {**where, "part": part}),
            ("response.output_item.done", {"output_index": at, "item": item}),
        ]
    steps.append((f"response.{final['status']}", {"response": final}))
    return [
        sse_event(name, {"type": name, "sequence_number": number, **data})
        for number, (name, data) in enumerate(steps)
    ]


def _stream_flags(payload: Mapping[str, Any], *, usage_option: bool = True) -> tuple[bool, bool]:
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise SimRejection(400, "'stream' must be a boolean.", "stream")
    options = payload.get("stream_options")
    if options is None or not usage_option:
        return bool(stream), False
    if not stream:
        raise SimRejection(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if not isinstance(options, dict):
        raise SimRejection(400, "'stream_options' must be an object.", "stream_options")
    return True, bool(options.get("include_usage"))


def _chunk(
    envelope: Mapping[str, Any], kind: str, choices: list[Any], include_usage: bool
) -> bytes:
    chunk: dict[str, Any] = {**envelope, "object": kind, "choices": choices}
    if include_usage:
        # With include_usage the real API sends "usage": null on every chunk but the last.
        chunk["usage"] = None
    return sse_data(chunk)


def _chat_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _prompt_tokens(prompt: object) -> int:
    if isinstance(prompt, list) and not all(isinstance(item, int) for item in prompt):
        return sum(raw_input_tokens(item) for item in prompt)
    return raw_input_tokens(prompt)


def _embedding_inputs(given: object) -> list[object]:
    """One entry per vector to return: a string or a list of token ids."""
    if isinstance(given, str) and given:
        return [given]
    if isinstance(given, list) and given:
        if all(isinstance(item, int) for item in given):
            return [given]
        if all((isinstance(item, str) and item) or isinstance(item, list) for item in given):
            return list(given)
    raise SimRejection(400, "'input' must be a non-empty string or array.", "input")


def _vector(item: object, dimensions: int) -> list[float]:
    """A unit vector derived from the input alone, so equal inputs embed equally."""
    seed = repr(item).encode("utf-8")
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        values += [int.from_bytes(digest[i : i + 4], "big") / 2**31 - 1.0 for i in range(0, 32, 4)]
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _MODELS_CREATED, "owned_by": "outlay-sim"}
