"""A simulated model's call of one of the agent's tools, in each API's own shapes: the chat
completion message and its stream deltas, the Responses `function_call` item and its events,
the Anthropic `tool_use` block and its `input_json_delta` events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from outlay.simulator.function_tools import FunctionCall

Steps = list[tuple[str, dict[str, Any]]]


def chat_message(call: FunctionCall, call_id: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments}}],
    }


def chat_deltas(call: FunctionCall, call_id: str) -> list[dict[str, Any]]:
    """The deltas of a streamed chat completion: the call's name first, then its arguments."""
    opening = {"role": "assistant", "content": None, "refusal": None,
               "tool_calls": [{"index": 0, "id": call_id, "type": "function",
                               "function": {"name": call.name, "arguments": ""}}]}
    return [opening, *({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                       for piece in call.pieces)]


def responses_item(call: FunctionCall, new_id: Callable[[str], str]) -> dict[str, Any]:
    return {"id": new_id("fc_"), "type": "function_call", "status": "completed",
            "arguments": call.arguments, "call_id": new_id("call_"), "name": call.name}


def responses_steps(item: dict[str, Any], at: int) -> Steps:
    """The Responses stream events of a function_call output item at index `at`."""
    where = {"item_id": item["id"], "output_index": at}
    pieces = FunctionCall(item["name"], item["arguments"]).pieces
    return [
        ("response.output_item.added",
         {"output_index": at, "item": {**item, "arguments": "", "status": "in_progress"}}),
        *(("response.function_call_arguments.delta", {**where, "delta": piece})
          for piece in pieces),
        ("response.function_call_arguments.done",
         {**where, "name": item["name"], "arguments": item["arguments"]}),
        ("response.output_item.done", {"output_index": at, "item": item}),
    ]


def anthropic_block(call: FunctionCall, new_id: Callable[[str], str]) -> dict[str, Any]:
    return {"type": "tool_use", "id": new_id("toolu_"), "name": call.name,
            "input": json.loads(call.arguments)}


def anthropic_steps(block: dict[str, Any], index: int) -> Steps:
    """The Messages stream events of a tool_use block: empty input, then its JSON in pieces."""
    arguments = json.dumps(block["input"], separators=(",", ":"), ensure_ascii=False)
    pieces = FunctionCall(block["name"], arguments).pieces
    return [
        ("content_block_start", {"index": index, "content_block": {**block, "input": {}}}),
        *(("content_block_delta",
           {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
          for piece in pieces),
        ("content_block_stop", {"index": index}),
    ]
