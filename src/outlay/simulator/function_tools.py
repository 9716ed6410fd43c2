"""The agent's own tools (functions) in a simulated call: which offered tool the model calls,
with arguments that fit the tool's JSON schema, and whether the conversation already holds a
tool's result (then the model answers in text).

The choice is deterministic, so a test knows what to expect: the tool a `tool_choice` names,
else the first function tool offered. A model calls it while no tool result is in the
conversation, unless `tool_choice` forbids tools; once a result is there it answers in text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from outlay.simulator.common import dump, text_tokens

# What a string argument says when its schema asks for nothing in particular
SAMPLE_TEXT = "sim"
# How deep nested objects and arrays are filled before the rest is left at its minimum
_MAX_DEPTH = 8
# Bytes of argument JSON per streamed piece, as a tokenizer's few characters per token
_PIECE_BYTES = 4


@dataclass(frozen=True)
class FunctionCall:
    """The one call a simulated model makes: the tool's name and its arguments as JSON text."""

    name: str
    arguments: str

    @property
    def pieces(self) -> tuple[str, ...]:
        """The arguments as streamed, a few characters at a time (one token each)."""
        text = self.arguments
        return tuple(text[i : i + _PIECE_BYTES] for i in range(0, len(text), _PIECE_BYTES))

    @property
    def output_tokens(self) -> int:
        """Tokens the call is billed: its name and each piece of its arguments."""
        return text_tokens(self.name) + len(self.pieces)


def definitions_tokens(tools: object) -> int:
    """Input tokens of the function definitions a request offers (the real APIs bill them)."""
    if not isinstance(tools, list):
        return 0
    return sum(text_tokens(_strings(tool)) for tool in tools if _is_function(tool))


def openai_chat_call(payload: Mapping[str, Any], limit: int | None) -> FunctionCall | None:
    """The call a chat completion makes from its `tools` ({type: function, function: {…}});
    none once a `tool` (or legacy `function`) message is in the conversation."""
    messages = payload.get("messages")
    if isinstance(messages, list) and any(
        isinstance(m, Mapping) and m.get("role") in ("tool", "function") for m in messages
    ):
        return None
    offered: list[tuple[str, object]] = []
    for tool in _list(payload.get("tools")):
        function = tool.get("function") if tool.get("type") == "function" else None
        if isinstance(function, Mapping):
            offered.append((str(function.get("name", "")), function.get("parameters")))
    choice = payload.get("tool_choice")
    named = None
    if isinstance(choice, Mapping):
        inner = choice.get("function")
        named = inner.get("name") if isinstance(inner, Mapping) else choice.get("name")
    return _choose(offered, "none" if choice == "none" else named, limit)


def responses_call(payload: Mapping[str, Any], limit: int | None) -> FunctionCall | None:
    """The call a Responses request makes: `tools` of type function; none once a
    `function_call_output` item is in the input."""
    given = payload.get("input")
    if isinstance(given, list) and any(
        isinstance(item, Mapping) and item.get("type") == "function_call_output"
        for item in given
    ):
        return None
    offered = [(str(tool.get("name", "")), tool.get("parameters"))
               for tool in _list(payload.get("tools")) if tool.get("type") == "function"]
    choice = payload.get("tool_choice")
    named = choice.get("name") if isinstance(choice, Mapping) else None
    return _choose(offered, "none" if choice == "none" else named, limit)


def anthropic_call(payload: Mapping[str, Any], limit: int | None) -> FunctionCall | None:
    """The call an Anthropic message makes: client tools (no `type`, or `custom`); none once
    a `tool_result` block is in the conversation."""
    for message in _list(payload.get("messages")):
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(block, Mapping) and block.get("type") == "tool_result"
            for block in content
        ):
            return None
    offered = [(str(tool.get("name", "")), tool.get("input_schema"))
               for tool in _list(payload.get("tools")) if tool.get("type") in (None, "custom")]
    choice = payload.get("tool_choice")
    named = None
    if isinstance(choice, Mapping):
        named = "none" if choice.get("type") == "none" else choice.get("name")
    return _choose(offered, named, limit)


def arguments_for(schema: object) -> object:
    """A value that fits `schema` (a JSON schema, `$ref`s into its `$defs` followed)."""
    root = schema if isinstance(schema, Mapping) else {}
    return _fit(root, root, 0)


def _choose(offered: list[tuple[str, object]], named: object, limit: int | None
            ) -> FunctionCall | None:
    if named == "none" or not offered:
        return None
    name, schema = next(((n, s) for n, s in offered if n == named), offered[0])
    call = FunctionCall(name, dump(arguments_for(schema)).decode("utf-8"))
    if limit is not None and call.output_tokens > limit:
        return None  # a call cut short is no call: the model's text is cut instead
    return call


def _fit(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> object:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and depth < _MAX_DEPTH:
        target: object = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        if isinstance(target, Mapping):
            return _fit(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    for combined in ("anyOf", "oneOf", "allOf"):
        options = [o for o in _list(schema.get(combined)) if o.get("type") != "null"]
        if options:
            if combined == "allOf":
                merged: dict[str, Any] = {}
                for option in options:
                    merged.update(option)
                return _fit(merged, root, depth + 1)
            return _fit(options[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    return _of_type(str(kind), schema, root, depth)


def _of_type(kind: str, schema: Mapping[str, Any], root: Mapping[str, Any], depth: int
             ) -> object:
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or depth >= _MAX_DEPTH:
            return {}
        return {name: _fit(sub if isinstance(sub, Mapping) else {}, root, depth + 1)
                for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        least = schema.get("minItems")
        count = least if isinstance(least, int) and least > 1 else 1
        if not isinstance(items, Mapping) or depth >= _MAX_DEPTH:
            return [] if not least else [SAMPLE_TEXT] * count
        return [_fit(items, root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum")
    above = schema.get("exclusiveMinimum")
    high = schema.get("maximum")
    value: float = 1
    if isinstance(low, int | float) and not isinstance(low, bool):
        value = max(value, low) if high is None or low > value else low
    if isinstance(above, int | float) and not isinstance(above, bool) and value <= above:
        value = above + 1
    if isinstance(high, int | float) and not isinstance(high, bool) and value > high:
        value = high
    return math.ceil(value) if integer else float(value)


def _string(schema: Mapping[str, Any]) -> str:
    formats = {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01", "email":
               "sim@example.com", "uri": "https://example.com/", "uuid":
               "00000000-0000-4000-8000-000000000000", "time": "00:00:00"}
    text = formats.get(str(schema.get("format")), SAMPLE_TEXT)
    least = schema.get("minLength")
    if isinstance(least, int) and len(text) < least:
        text = text + "x" * (least - len(text))
    most = schema.get("maxLength")
    if isinstance(most, int) and len(text) > most:
        text = text[:most]
    return text


def _list(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) \
        else []


def _is_function(tool: object) -> bool:
    return isinstance(tool, Mapping) and tool.get("type") in (None, "function", "custom")


def _strings(value: object) -> str:
    """Every key and string of a definition: names, descriptions and schema words alike."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "".join(str(key) + _strings(item) for key, item in value.items())
    if isinstance(value, list):
        return "".join(_strings(item) for item in value)
    return ""
