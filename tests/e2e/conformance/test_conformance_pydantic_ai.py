"""pydantic-ai agents on OpenAI's chat completions and Anthropic's messages, configured by
base URL and key alone: chat, stream, a tool loop and a 402, each checked against the
ledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ToolReturnPart
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from ..harness import Gateway
from .conftest import WEATHER, Ledger, get_weather

pytestmark = pytest.mark.e2e

ASK = "What is the weather in Paris?"


@contextlib.asynccontextmanager
async def _openai(gateway: Gateway, ledger: Ledger) -> AsyncIterator[OpenAIChatModel]:
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=ledger.key) as client:
        yield OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))


@contextlib.asynccontextmanager
async def _claude(gateway: Gateway, ledger: Ledger) -> AsyncIterator[AnthropicModel]:
    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key=ledger.key) as client:
        yield AnthropicModel("claude-haiku-4-5",
                             provider=AnthropicProvider(anthropic_client=client))


CASES = [(_openai, "gpt-4o-mini", "openai.chat"),
         (_claude, "claude-haiku-4-5", "anthropic.messages")]


@pytest.mark.parametrize(("make", "model", "route"), CASES)
async def test_pydantic_ai_agent(served: Gateway, make: Any, model: str, route: str) -> None:
    prefix = f"pai-{route.partition('.')[0]}"
    chat = Ledger(served, f"{prefix}-chat")
    async with make(served, chat) as llm:
        result = await Agent(llm).run(ASK)
    assert result.output
    usage = result.usage
    chat.settled(model, route, 1, (usage.input_tokens, usage.output_tokens))

    stream = Ledger(served, f"{prefix}-stream")
    async with make(served, stream) as llm, Agent(llm).run_stream(ASK) as run:
        pieces = [piece async for piece in run.stream_text(delta=True)]
        streamed = run.usage
    assert "".join(pieces)
    stream.settled(model, route, 1, (streamed.input_tokens, streamed.output_tokens))

    loop = Ledger(served, f"{prefix}-tools")
    async with make(served, loop) as llm:
        result = await Agent(llm, tools=[get_weather]).run(ASK)
    returns = [part.content for message in result.all_messages() for part in message.parts
               if isinstance(part, ToolReturnPart)]
    assert returns == [WEATHER]
    assert result.output
    usage = result.usage
    assert usage.requests == 2
    loop.settled(model, route, 2, (usage.input_tokens, usage.output_tokens))

    refused = Ledger(served, f"{prefix}-402", refused=True)
    async with make(served, refused) as llm:
        with pytest.raises(ModelHTTPError) as caught:
            await Agent(llm).run(ASK)
    assert caught.value.status_code == 402
    refused.refused_once(model)
