"""Calls that end badly, through the official SDKs against a real gateway whose simulated
providers end them as the real APIs do (models named ``sim-fail…``): each charged what the
provider reported, or the input it read and the output it showed, never the whole hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from .conftest import _launcher
from .harness import Gateway, micros, unique

pytestmark = pytest.mark.e2e

# USD per million tokens: 1 micro-USD a token of input, 2 of output; Claude 3 and 15
FAILING: dict[str, Any] = {
    "sim-fail": {"provider": "openai", "input": 1, "output": 2, "max_output_tokens": 4096,
                 "context_window": 128_000},
    "sim-fail-claude": {"provider": "anthropic", "input": 3, "output": 15,
                        "max_output_tokens": 4096, "context_window": 200_000},
}
CONFIG: dict[str, Any] = {"simulated": {"latency_ms": 0}, "prices": FAILING}
HI = [{"role": "user", "content": "Say hello."}]
UNSHOWN = 16  # tokens a model may write that show no text


@pytest.fixture(scope="module")
def failing(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Gateway]:
    with _launcher(request.config, tmp_path_factory.mktemp("failing")) as start:
        yield start(CONFIG, name="failing")


def entry_of(gateway: Gateway, scope: str, settlement: str = "settled_estimate"
             ) -> dict[str, Any]:
    """The scope's one entry: `settled` at the usage reported, else `settled_estimate` at
    what Outlay counted."""
    (entry,) = gateway.audit(scope)
    assert (entry["decision"], entry["settlement"]) == ("allowed", settlement), entry
    return entry


def openai_client(gateway: Gateway) -> tuple[openai.OpenAI, str]:
    minted = gateway.mint_key(unique("fail"))
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                         timeout=15), f"key:{minted['id']}"


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_response_is_charged_the_usage_it_reports(failing: Gateway,
                                                           stream: bool) -> None:
    client, scope = openai_client(failing)
    with client:
        if stream:
            events = list(client.responses.create(model="sim-fail", input="hi",
                                                  max_output_tokens=1000, stream=True))
            response = events[-1].response
            assert events[-1].type == "response.failed"
        else:
            response = client.responses.create(model="sim-fail", input="hi",
                                               max_output_tokens=1000)
    assert response.status == "failed"
    assert response.usage is not None
    expected = response.usage.input_tokens + 2 * response.usage.output_tokens
    entry = entry_of(failing, scope, "settled")
    assert micros(entry["cost_usd"]) == expected
    assert micros(entry["cost_usd"]) < micros(entry["reserved_usd"])


def test_an_error_chunk_mid_stream_is_charged_the_input_and_output_shown(
        failing: Gateway) -> None:
    client, scope = openai_client(failing)
    texts: list[str] = []

    def read() -> None:
        for chunk in client.chat.completions.create(model="sim-fail", messages=HI,
                                                    max_tokens=1000, stream=True):
            texts.extend(c.delta.content or "" for c in chunk.choices)

    with client, pytest.raises(openai.APIError, match="overloaded"):
        read()
    shown = sum(map(len, texts))
    assert shown > 0
    entry = entry_of(failing, scope)
    held = micros(entry["reserved_usd"])
    # the input bound, and the output shown (a token per byte at most, and a few unseen)
    assert micros(entry["cost_usd"]) == held - (1000 - shown - UNSHOWN) * 2


def test_a_200_error_body_is_charged_the_input_bound_alone(failing: Gateway) -> None:
    client, scope = openai_client(failing)
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="sim-fail", messages=HI, max_tokens=1000)
    assert raw.status_code == 200
    assert "error" in raw.http_response.json()
    entry = entry_of(failing, scope)
    assert micros(entry["cost_usd"]) == micros(entry["reserved_usd"]) - 1000 * 2
    assert raw.headers["x-outlay-cost-usd"] == entry["cost_usd"]


def test_an_anthropic_overload_mid_stream_is_charged_the_input_it_reported(
        failing: Gateway) -> None:
    minted = failing.mint_key(unique("fail"))
    client = anthropic.Anthropic(base_url=failing.url, api_key=minted["key"], max_retries=0,
                                 timeout=15)
    seen: dict[str, int] = {"input": 0, "shown": 0}

    def read() -> None:
        for event in client.messages.create(model="sim-fail-claude", max_tokens=1000,
                                            messages=HI, stream=True):
            if event.type == "message_start":
                seen["input"] = event.message.usage.input_tokens
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                seen["shown"] += len(event.delta.text)

    with client, pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        read()
    input_tokens, shown = seen["input"], seen["shown"]
    assert input_tokens > 0
    assert shown > 0
    entry = entry_of(failing, f"key:{minted['id']}")
    assert micros(entry["cost_usd"]) == input_tokens * 3 + (shown + UNSHOWN) * 15
