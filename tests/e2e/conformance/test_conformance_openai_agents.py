"""openai-agents with its default model and model settings, one function tool, its tracing
turned off by its own setting: chat, stream, a tool loop and a 402 against the ledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import openai
import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.default_models import get_default_model
from agents.models.openai_provider import OpenAIProvider

from ..harness import Gateway
from .conftest import WEATHER, Ledger, get_weather

pytestmark = pytest.mark.e2e

MODEL = get_default_model()  # what an agent that names no model runs on
weather_tool = function_tool(get_weather)


@contextlib.asynccontextmanager
async def _run_config(gateway: Gateway, ledger: Ledger) -> AsyncIterator[RunConfig]:
    # What an agent needs: the gateway's base URL and the Outlay key for its client, and
    # tracing off so the key is not sent to OpenAI's tracing endpoint.
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=ledger.key) as client:
        yield RunConfig(model_provider=OpenAIProvider(openai_client=client),
                        tracing_disabled=True)


def _usage(result: object) -> tuple[int, int]:
    usage = result.context_wrapper.usage  # type: ignore[attr-defined]
    return usage.input_tokens, usage.output_tokens


async def test_agent_chat_and_stream(served: Gateway) -> None:
    chat = Ledger(served, "agents-chat")
    agent = Agent(name="assistant", instructions="Answer briefly.")
    async with _run_config(served, chat) as config:
        result = await Runner.run(agent, "Say hello.", run_config=config)
    assert result.final_output
    chat.settled(MODEL, "openai.responses", 1, _usage(result))

    stream = Ledger(served, "agents-stream")
    deltas = []
    async with _run_config(served, stream) as config:
        run = Runner.run_streamed(agent, "Say hello.", run_config=config)
        async for event in run.stream_events():
            if event.type == "raw_response_event" and \
                    event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
    assert "".join(deltas)
    stream.settled(MODEL, "openai.responses", 1, _usage(run))


async def test_agent_tool_loop_and_402(served: Gateway) -> None:
    loop = Ledger(served, "agents-tools")
    agent = Agent(name="weather", instructions="Use the tool.", tools=[weather_tool])
    async with _run_config(served, loop) as config:
        result = await Runner.run(agent, "What is the weather in Paris?", run_config=config)
    outputs = [item.output for item in result.new_items if item.type == "tool_call_output_item"]
    assert outputs == [WEATHER]
    assert result.final_output
    loop.settled(MODEL, "openai.responses", 2, _usage(result))

    refused = Ledger(served, "agents-402", refused=True)
    async with _run_config(served, refused) as config:
        with pytest.raises(openai.APIStatusError) as caught:
            await Runner.run(agent, "What is the weather in Paris?", run_config=config)
    assert caught.value.status_code == 402
    refused.refused_once(MODEL)
