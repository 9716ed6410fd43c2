"""LangChain's ChatOpenAI and ChatAnthropic, configured by base URL and key alone: chat,
stream, a tool loop and a 402, each checked against the ledger."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from ..harness import Gateway
from .conftest import WEATHER, Ledger, get_weather

pytestmark = pytest.mark.e2e

OPENAI_MODEL = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
ASK = "What is the weather in Paris?"
weather_tool = tool(get_weather)


def _openai(gateway: Gateway, ledger: Ledger) -> ChatOpenAI:
    return ChatOpenAI(model=OPENAI_MODEL, base_url=f"{gateway.url}/v1", api_key=ledger.key,
                      stream_usage=True)


def _claude(gateway: Gateway, ledger: Ledger) -> ChatAnthropic:
    return ChatAnthropic(model_name=CLAUDE, base_url=gateway.url, api_key=ledger.key,
                         timeout=30, stop=None)


def _usage(*messages: Any) -> tuple[int, int]:
    return (sum(m.usage_metadata["input_tokens"] for m in messages),
            sum(m.usage_metadata["output_tokens"] for m in messages))


def _scenarios(gateway: Gateway, make: Any, model: str, route: str, prefix: str) -> None:
    chat = Ledger(gateway, f"{prefix}-chat")
    answer = make(gateway, chat).invoke(ASK)
    assert answer.content
    chat.settled(model, route, 1, _usage(answer))

    stream = Ledger(gateway, f"{prefix}-stream")
    chunks = list(make(gateway, stream).stream(ASK))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert whole.content
    stream.settled(model, route, 1, _usage(whole))

    loop = Ledger(gateway, f"{prefix}-tools")
    llm = make(gateway, loop).bind_tools([weather_tool])
    messages: list[BaseMessage] = [HumanMessage(ASK)]
    first: AIMessage = llm.invoke(messages)
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [("get_weather", {"city": "sim"})]
    call = first.tool_calls[0]
    messages += [first, ToolMessage(weather_tool.invoke(call["args"]), tool_call_id=call["id"])]
    assert messages[-1].content == WEATHER
    second = llm.invoke(messages)
    assert second.content
    assert not second.tool_calls
    loop.settled(model, route, 2, _usage(first, second))


def test_chat_openai(served: Gateway) -> None:
    _scenarios(served, _openai, OPENAI_MODEL, "openai.chat", "lc-openai")
    refused = Ledger(served, "lc-openai-402", refused=True)
    with pytest.raises(openai.APIStatusError) as caught:
        _openai(served, refused).invoke(ASK)
    assert caught.value.status_code == 402
    refused.refused_once(OPENAI_MODEL)


def test_chat_anthropic(served: Gateway) -> None:
    _scenarios(served, _claude, CLAUDE, "anthropic.messages", "lc-claude")
    refused = Ledger(served, "lc-claude-402", refused=True)
    with pytest.raises(anthropic.APIStatusError) as caught:
        _claude(served, refused).invoke(ASK)
    assert caught.value.status_code == 402
    refused.refused_once(CLAUDE)
