"""The official openai and anthropic clients, pointed at the simulated provider in process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from outlay.simulator.common import REPLY_TOKENS
from outlay.simulator.providers import SimulatedUpstream
from outlay.upstream import UpstreamRequest, UpstreamResponse

# 7 tokens by the simulator's rule: ceil(13 bytes / 4) + 3
OPENAI_HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello, world!"}]
ANTHROPIC_HELLO: list[MessageParam] = [{"role": "user", "content": "Hello, world!"}]


class _Body(httpx2.AsyncByteStream):
    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.iter_chunks():
            yield chunk

    async def aclose(self) -> None:
        await self._response.close()


class SimulatedTransport(httpx2.AsyncBaseTransport):
    """Hands the SDK's requests to a SimulatedUpstream, as the gateway would."""

    def __init__(self, provider: str, strip_prefix: str = "") -> None:
        self._upstream = SimulatedUpstream()
        self._provider = provider
        self._prefix = strip_prefix

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        upstream_request = UpstreamRequest(
            provider=self._provider,
            method=request.method,
            path=request.url.path.removeprefix(self._prefix),
            headers=dict(request.headers),
            body=body,
            stream=b'"stream":true' in body.replace(b" ", b""),
            query=request.url.query.decode(),
        )
        response = await self._upstream.send(upstream_request)
        return httpx2.Response(
            response.status, headers=list(response.headers.items()), stream=_Body(response)
        )


@pytest.fixture
async def oai() -> AsyncIterator[openai.AsyncOpenAI]:
    transport = SimulatedTransport("openai", strip_prefix="/v1")
    client = openai.AsyncOpenAI(
        api_key="olk_test",
        base_url="http://sim.invalid/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )
    yield client
    await client.close()


@pytest.fixture
async def claude() -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        api_key="olk_test",
        base_url="http://sim.invalid",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=SimulatedTransport("anthropic")),
    )
    yield client
    await client.close()


async def test_openai_chat_plain_and_streamed(oai: openai.AsyncOpenAI) -> None:
    plain = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=OPENAI_HELLO, max_tokens=5
    )
    assert plain.usage is not None
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (7, 5)

    stream = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=OPENAI_HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert usage is not None
    assert usage.completion_tokens == REPLY_TOKENS == len(text.split())


async def test_openai_embeddings_with_the_sdk_default_base64(oai: openai.AsyncOpenAI) -> None:
    answer = await oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [len(item.embedding) for item in answer.data] == [8, 8]
    assert all(isinstance(value, float) for value in answer.data[0].embedding)


async def test_openai_responses_stream_and_models(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model="gpt-4o-mini", input="Hello, world!", stream=True)
    final = None
    async for event in stream:
        if event.type == "response.completed":
            final = event.response
    assert final is not None
    assert final.usage is not None
    assert final.usage.input_tokens == 7
    models = [model.id async for model in oai.models.list()]
    assert "gpt-4o-mini" in models


async def test_openai_errors_map_to_sdk_exceptions(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="sim-error-500", messages=OPENAI_HELLO)
    with pytest.raises(openai.NotFoundError):
        await oai.post("/nowhere", cast_to=object, body={})


async def test_anthropic_messages_plain_streamed_and_counted(
    claude: anthropic.AsyncAnthropic,
) -> None:
    plain = await claude.messages.create(
        model="claude-haiku-4-5", max_tokens=64, messages=ANTHROPIC_HELLO
    )
    assert (plain.usage.input_tokens, plain.usage.output_tokens) == (7, REPLY_TOKENS)

    async with claude.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=3,
        messages=ANTHROPIC_HELLO,
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "This is a"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)
    assert final.stop_reason == "max_tokens"

    counted = await claude.messages.count_tokens(model="claude-haiku-4-5", messages=ANTHROPIC_HELLO)
    assert counted.input_tokens == 7


async def test_anthropic_errors_map_to_sdk_exceptions(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError):
        await claude.messages.create(model="sim-error-429", max_tokens=5, messages=ANTHROPIC_HELLO)
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        await claude.post(
            "/v1/messages", cast_to=object, body={"model": "m", "messages": ANTHROPIC_HELLO}
        )


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"], "additionalProperties": False}


async def test_openai_chat_calls_a_tool_then_answers(oai: openai.AsyncOpenAI) -> None:
    tools: Any = [{"type": "function",
                   "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    plain = await oai.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_HELLO,
                                              tools=tools)
    choice = plain.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call: Any = choice.message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather", {"city": "sim"})
    assert plain.usage is not None
    assert plain.usage.prompt_tokens > 7  # the tool's definition is read too
    assert plain.usage.completion_tokens > 0

    stream = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=OPENAI_HELLO, tools=tools, stream=True,
        stream_options={"include_usage": True})
    arguments, name, finish, usage = "", None, None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = name or (delta_call.function.name if delta_call.function else None)
            arguments += (delta_call.function.arguments or "") if delta_call.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert (name, arguments, finish) == ("get_weather", call.function.arguments, "tool_calls")
    assert usage is not None
    assert usage.completion_tokens == plain.usage.completion_tokens

    messages: Any = [*OPENAI_HELLO, choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    answer = await oai.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                               tools=tools)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content


async def test_openai_responses_calls_a_tool_then_answers(oai: openai.AsyncOpenAI) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA,
                   "strict": True}]
    plain = await oai.responses.create(model="gpt-4o-mini", input="Hello", tools=tools)
    item: Any = plain.output[0]
    assert (item.type, item.name, json.loads(item.arguments)) == (
        "function_call", "get_weather", {"city": "sim"})
    stream = await oai.responses.create(model="gpt-4o-mini", input="Hello", tools=tools,
                                        stream=True)
    deltas, final = "", None
    async for event in stream:
        if event.type == "response.function_call_arguments.delta":
            deltas += event.delta
        if event.type == "response.completed":
            final = event.response
    assert final is not None
    assert final.usage is not None
    assert plain.usage is not None
    assert deltas == item.arguments
    assert final.usage.output_tokens == plain.usage.output_tokens > 0
    follow: Any = [{"role": "user", "content": "Hello"}, item.model_dump(exclude_none=True),
                   {"type": "function_call_output", "call_id": item.call_id, "output": "sunny"}]
    answer = await oai.responses.create(model="gpt-4o-mini", input=follow, tools=tools)
    assert answer.output_text


async def test_anthropic_calls_a_tool_then_answers(claude: anthropic.AsyncAnthropic) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    plain = await claude.messages.create(model="claude-haiku-4-5", max_tokens=256,
                                         messages=ANTHROPIC_HELLO, tools=tools)
    block: Any = plain.content[0]
    assert plain.stop_reason == "tool_use"
    assert (block.type, block.name, block.input) == ("tool_use", "get_weather", {"city": "sim"})

    async with claude.messages.stream(model="claude-haiku-4-5", max_tokens=256,
                                      messages=ANTHROPIC_HELLO, tools=tools) as stream:
        delta_usage = None
        async for event in stream:
            if event.type == "message_delta":
                delta_usage = event.usage
        final = await stream.get_final_message()
    streamed: Any = final.content[0]
    assert (streamed.name, streamed.input) == ("get_weather", {"city": "sim"})
    # message_delta reports the input too, as the real API does
    assert delta_usage is not None
    assert delta_usage.input_tokens == plain.usage.input_tokens > 7
    assert delta_usage.output_tokens == plain.usage.output_tokens

    messages: Any = [*ANTHROPIC_HELLO, {"role": "assistant", "content": [block.model_dump()]},
                     {"role": "user", "content": [{"type": "tool_result",
                                                   "tool_use_id": block.id,
                                                   "content": "sunny"}]}]
    answer = await claude.messages.create(model="claude-haiku-4-5", max_tokens=256,
                                          messages=messages, tools=tools)
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text"
