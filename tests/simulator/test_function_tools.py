"""The simulated model's choice of an agent's tool and the arguments it writes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from outlay.simulator.function_tools import (
    anthropic_call,
    arguments_for,
    definitions_tokens,
    openai_chat_call,
    responses_call,
)

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}},
           "required": ["city"], "additionalProperties": False}
SCHEMAS: list[dict[str, Any]] = [
    WEATHER,
    {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 5, "maximum": 9},
        "ratio": {"type": "number", "exclusiveMinimum": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "when": {"type": "string", "format": "date-time"},
        "code": {"type": "string", "minLength": 6, "maxLength": 8},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "flag": {"type": "boolean"},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "kind": {"const": "fixed"},
        "nested": {"type": ["object", "null"], "properties": {"x": {"type": "number"}},
                   "required": ["x"]},
    }, "required": ["n", "ratio", "unit", "when", "code", "tags", "flag", "maybe", "kind",
                    "nested"]},
    # pydantic's shape: $defs and $ref
    {"$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer"},
                                                          "y": {"type": "integer"}},
                         "required": ["x", "y"]}},
     "type": "object", "properties": {"at": {"$ref": "#/$defs/Point"}}, "required": ["at"]},
    {},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_arguments_fit_the_schema(schema: dict[str, Any]) -> None:
    jsonschema.validate(arguments_for(schema), schema)


def _chat(**fields: Any) -> dict[str, Any]:
    tools = [{"type": "function", "function": {"name": name, "parameters": WEATHER}}
             for name in ("get_weather", "get_time")]
    return {"messages": [{"role": "user", "content": "hi"}], "tools": tools, **fields}


def test_chat_calls_the_first_tool_then_answers_once_a_result_is_in() -> None:
    call = openai_chat_call(_chat(), None)
    assert call is not None
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "sim"}
    answered = _chat(messages=[{"role": "user", "content": "hi"},
                               {"role": "assistant", "tool_calls": []},
                               {"role": "tool", "tool_call_id": "c", "content": "sunny"}])
    assert openai_chat_call(answered, None) is None


def test_tool_choice_names_the_tool_or_forbids_tools() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    call = openai_chat_call(_chat(tool_choice=named), None)
    assert call is not None
    assert call.name == "get_time"
    assert openai_chat_call(_chat(tool_choice="none"), None) is None
    assert openai_chat_call({"messages": [{"role": "user", "content": "hi"}]}, None) is None


def test_a_call_that_does_not_fit_the_output_limit_is_not_made() -> None:
    call = openai_chat_call(_chat(), None)
    assert call is not None
    assert openai_chat_call(_chat(), call.output_tokens) == call
    assert openai_chat_call(_chat(), call.output_tokens - 1) is None


def test_responses_and_anthropic_calls() -> None:
    responses = {"input": "hi", "tools": [{"type": "web_search"},
                                          {"type": "function", "name": "f", "parameters": WEATHER}]}
    call = responses_call(responses, None)
    assert call is not None
    assert call.name == "f"
    done = {**responses, "input": [{"role": "user", "content": "hi"},
                                   {"type": "function_call_output", "call_id": "c", "output": "1"}]}
    assert responses_call(done, None) is None
    assert responses_call({**responses, "tool_choice": "none"}, None) is None

    messages = {"messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"},
                          {"name": "g", "input_schema": WEATHER}]}
    call = anthropic_call(messages, None)
    assert call is not None
    assert call.name == "g"
    result = [{"type": "tool_result", "tool_use_id": "t", "content": "1"}]
    assert anthropic_call({**messages, "messages": [{"role": "user", "content": result}]},
                          None) is None
    assert anthropic_call({**messages, "tool_choice": {"type": "none"}}, None) is None


def test_definitions_count_only_function_tools() -> None:
    function = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
    assert definitions_tokens([function]) > 0
    assert definitions_tokens([{"type": "web_search"}]) == 0
    assert definitions_tokens(None) == 0
