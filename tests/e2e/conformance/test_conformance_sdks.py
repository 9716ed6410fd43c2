"""The official openai and anthropic Python SDKs, configured by base URL and key alone:
chat, stream, a tool loop and a 402, each checked against the ledger."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from ..harness import Gateway
from .conftest import WEATHER, Ledger

pytestmark = pytest.mark.e2e

OPENAI_MODEL = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOLS: Any = [{"type": "function", "function": {"name": "get_weather",
                                                       "parameters": SCHEMA}}]
CLAUDE_TOOLS: Any = [{"name": "get_weather", "description": "The weather in a city",
                      "input_schema": SCHEMA}]


def _openai(gateway: Gateway, ledger: Ledger) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=ledger.key, timeout=30)


def _claude(gateway: Gateway, ledger: Ledger) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=ledger.key, timeout=30)


def test_openai_chat_and_stream(served: Gateway) -> None:
    chat = Ledger(served, "py-openai-chat")
    with _openai(served, chat) as client:
        answer = client.chat.completions.create(model=OPENAI_MODEL, messages=ASK)
    assert answer.choices[0].message.content
    assert answer.usage is not None
    chat.settled(OPENAI_MODEL, "openai.chat", 1,
                 (answer.usage.prompt_tokens, answer.usage.completion_tokens))

    stream = Ledger(served, "py-openai-stream")
    with _openai(served, stream) as client:
        chunks = list(client.chat.completions.create(
            model=OPENAI_MODEL, messages=ASK, stream=True,
            stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    stream.settled(OPENAI_MODEL, "openai.chat", 1, (usage.prompt_tokens, usage.completion_tokens))


def test_openai_tool_loop_and_402(served: Gateway) -> None:
    loop = Ledger(served, "py-openai-tools")
    with _openai(served, loop) as client:
        first = client.chat.completions.create(model=OPENAI_MODEL, messages=ASK,
                                               tools=OPENAI_TOOLS)
        calls = first.choices[0].message.tool_calls
        assert calls is not None
        call: Any = calls[0]
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "get_weather", {"city": "sim"})
        messages = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": WEATHER}]
        second = client.chat.completions.create(model=OPENAI_MODEL, messages=messages,
                                                tools=OPENAI_TOOLS)
    assert second.choices[0].message.content
    assert first.usage is not None
    assert second.usage is not None
    loop.settled(OPENAI_MODEL, "openai.chat", 2,
                 (first.usage.prompt_tokens + second.usage.prompt_tokens,
                  first.usage.completion_tokens + second.usage.completion_tokens))

    refused = Ledger(served, "py-openai-402", refused=True)
    with _openai(served, refused) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=OPENAI_MODEL, messages=ASK)
    assert caught.value.status_code == 402
    refused.refused_once(OPENAI_MODEL)


def test_anthropic_chat_and_stream(served: Gateway) -> None:
    chat = Ledger(served, "py-claude-chat")
    with _claude(served, chat) as client:
        answer = client.messages.create(model=CLAUDE, max_tokens=1024, messages=ASK)
    assert answer.content[0].type == "text"
    chat.settled(CLAUDE, "anthropic.messages", 1,
                 (answer.usage.input_tokens, answer.usage.output_tokens))

    stream = Ledger(served, "py-claude-stream")
    with _claude(served, stream) as client, client.messages.stream(
            model=CLAUDE, max_tokens=1024, messages=ASK) as events:
        text = "".join(events.text_stream)
        final = events.get_final_message()
    assert text
    stream.settled(CLAUDE, "anthropic.messages", 1,
                   (final.usage.input_tokens, final.usage.output_tokens))


def test_anthropic_tool_loop_and_402(served: Gateway) -> None:
    loop = Ledger(served, "py-claude-tools")
    with _claude(served, loop) as client:
        first = client.messages.create(model=CLAUDE, max_tokens=1024, messages=ASK,
                                       tools=CLAUDE_TOOLS)
        assert first.stop_reason == "tool_use"
        use: Any = first.content[-1]
        assert (use.name, use.input) == ("get_weather", {"city": "sim"})
        messages: Any = [*ASK, {"role": "assistant", "content": first.content},
                         {"role": "user", "content": [
                             {"type": "tool_result", "tool_use_id": use.id,
                              "content": WEATHER}]}]
        second = client.messages.create(model=CLAUDE, max_tokens=1024, messages=messages,
                                        tools=CLAUDE_TOOLS)
    assert second.stop_reason == "end_turn"
    loop.settled(CLAUDE, "anthropic.messages", 2,
                 (first.usage.input_tokens + second.usage.input_tokens,
                  first.usage.output_tokens + second.usage.output_tokens))

    refused = Ledger(served, "py-claude-402", refused=True)
    with _claude(served, refused) as client, pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=CLAUDE, max_tokens=1024, messages=ASK)
    assert caught.value.status_code == 402
    refused.refused_once(CLAUDE)
