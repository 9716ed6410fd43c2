"""LiteLLM as a client (its `completion`, with the gateway as `api_base`) on OpenAI and
Anthropic models: chat, stream, a tool loop and a 402, each checked against the ledger."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from ..harness import Gateway
from .conftest import WEATHER, Ledger

# LiteLLM reads its model map from the network unless told to use the copy it ships
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm

pytestmark = [
    pytest.mark.e2e,
    # LiteLLM's own GitHub Copilot types, which pydantic warns about when LiteLLM loads them
    pytest.mark.filterwarnings("ignore:.* using the `ReadOnly` qualifier:UserWarning"),
    # and its stream handler reads a pydantic attribute the way pydantic 2.11 deprecated
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
# provider/model for LiteLLM, the model the ledger records, the route, the API base
CASES = [("openai/gpt-4o-mini", "gpt-4o-mini", "openai.chat", "/v1"),
         ("anthropic/claude-haiku-4-5", "claude-haiku-4-5", "anthropic.messages", "")]


def _call(gateway: Gateway, ledger: Ledger, model: str, base: str, **fields: Any) -> Any:
    return litellm.completion(model=model, api_base=gateway.url + base, api_key=ledger.key,
                              num_retries=0, max_tokens=256, **fields)


@pytest.mark.parametrize(("model", "recorded", "route", "base"), CASES)
def test_litellm_client(served: Gateway, model: str, recorded: str, route: str,
                        base: str) -> None:
    name = model.partition("/")[0]
    chat = Ledger(served, f"litellm-{name}-chat")
    answer = _call(served, chat, model, base, messages=ASK)
    assert answer.choices[0].message.content
    chat.settled(recorded, route, 1, (answer.usage.prompt_tokens, answer.usage.completion_tokens))

    stream = Ledger(served, f"litellm-{name}-stream")
    chunks = list(_call(served, stream, model, base, messages=ASK, stream=True,
                        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    stream.settled(recorded, route, 1, (usage.prompt_tokens, usage.completion_tokens))

    loop = Ledger(served, f"litellm-{name}-tools")
    first = _call(served, loop, model, base, messages=ASK, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather", {"city": "sim"})
    messages = [*ASK, first.choices[0].message.model_dump(),
                {"role": "tool", "tool_call_id": call.id, "content": WEATHER}]
    second = _call(served, loop, model, base, messages=messages, tools=TOOLS)
    assert second.choices[0].message.content
    loop.settled(recorded, route, 2, (first.usage.prompt_tokens + second.usage.prompt_tokens,
                                      first.usage.completion_tokens
                                      + second.usage.completion_tokens))

    refused = Ledger(served, f"litellm-{name}-402", refused=True)
    with pytest.raises((litellm.APIError, litellm.PaymentRequiredError)) as caught:
        _call(served, refused, model, base, messages=ASK)
    assert caught.value.status_code == 402
    refused.refused_once(recorded)
