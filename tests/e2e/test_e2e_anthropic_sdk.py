"""The official `anthropic` SDK pointed at a real gateway: messages, streams, token counting,
and refusals in Anthropic's own error shape."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from .harness import Gateway, micros, price_cost_micros, unique

pytestmark = pytest.mark.e2e

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "Say hello."}]


def new_client(gateway: Gateway, prefix: str, **key_fields: object
               ) -> tuple[anthropic.Anthropic, dict]:
    minted = gateway.mint_key(unique(prefix), **key_fields)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=minted["key"], max_retries=0,
                                 timeout=15)
    return client, minted


def anthropic_cost(gateway: Gateway, usage: anthropic.types.Usage) -> int:
    return price_cost_micros(gateway.prices()[MODEL], usage.input_tokens, usage.output_tokens)


def test_message_reports_usage_and_settles(gateway: Gateway) -> None:
    client, minted = new_client(gateway, "an-create")
    with client:
        message = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert message.content[0].type == "text"
    assert message.content[0].text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    (entry,) = gateway.audit(f"key:{minted['id']}")
    assert (entry["vendor"], entry["route"]) == ("anthropic", "anthropic.messages")
    assert (entry["status"], entry["settlement"]) == (200, "settled")
    assert micros(entry["cost_usd"]) == anthropic_cost(gateway, message.usage)


def test_streamed_message_settles_to_the_reported_usage(gateway: Gateway) -> None:
    client, minted = new_client(
        gateway, "an-stream", policy={"budgets": [{"usd": 1, "period": "day", "mode": "hard"}]})
    scope = f"key:{minted['id']}"
    with client, client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text
    assert final.content[0].text == text
    expected = anthropic_cost(gateway, final.usage)
    assert expected > 0
    (entry,) = gateway.audit(scope)
    assert (entry["status"], entry["settlement"]) == (200, "settled")
    assert micros(entry["cost_usd"]) == expected
    budget = gateway.budget(scope)
    assert micros(budget["spent_usd"]) == expected
    assert micros(budget["reserved_usd"]) == 0


def test_raw_stream_events_end_with_message_stop(gateway: Gateway) -> None:
    client, minted = new_client(gateway, "an-raw-stream")
    with client:
        events = list(client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES,
                                             stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    (entry,) = gateway.audit(f"key:{minted['id']}")
    assert entry["settlement"] == "settled"
    assert micros(entry["cost_usd"]) > 0


def test_count_tokens_is_free(gateway: Gateway) -> None:
    client, minted = new_client(gateway, "an-count")
    with client:
        counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens > 0
    (entry,) = gateway.audit(f"key:{minted['id']}")
    assert (entry["route"], entry["status"]) == ("anthropic.count_tokens", 200)
    assert micros(entry["cost_usd"]) == 0
    assert entry["settlement"] == "settled"  # clean and free, not unsettled


def test_rate_limit_raises_anthropic_rate_limit_error(gateway: Gateway) -> None:
    client, _ = new_client(gateway, "an-rpm", policy={"rpm": 1})
    with client:
        client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    err = caught.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"].isdigit()
    assert isinstance(err.body, dict)
    assert err.body["type"] == "error"
    assert err.body["error"]["type"] == "rate_limit_error"
    assert err.body["error"]["code"] == "rate_limit_exceeded"
    assert err.body["error"]["message"]


def test_refusals_on_messages_are_anthropic_shaped(gateway: Gateway) -> None:
    client, _ = new_client(
        gateway, "an-refusals",
        policy={"models": [MODEL], "budgets": [{"usd": "0.000001", "period": "day"}]})
    unknown = anthropic.Anthropic(base_url=gateway.url, api_key="olk_never-minted",
                                  max_retries=0, timeout=15)
    with client, unknown:
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            client.messages.create(model="claude-opus-4-1", max_tokens=8, messages=MESSAGES)
        with pytest.raises(anthropic.APIStatusError) as over_budget:
            client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        with pytest.raises(anthropic.AuthenticationError) as unauthenticated:
            unknown.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    for err, status, code in (
        (denied.value, 403, "model_not_allowed"),
        (over_budget.value, 402, "budget_exceeded"),
        (unauthenticated.value, 401, "invalid_api_key"),
    ):
        assert err.status_code == status
        assert isinstance(err.body, dict)
        assert err.body["type"] == "error"
        assert set(err.body) == {"type", "error"}
        assert err.body["error"]["code"] == code
        assert err.body["error"]["message"]
    assert denied.value.body["error"]["allowed"] == [MODEL]
    assert over_budget.value.response.headers["x-should-retry"] == "false"


def test_malformed_body_on_messages_is_anthropic_shaped(gateway: Gateway) -> None:
    key = gateway.mint_key(unique("an-bad"))["key"]
    answer = httpx.post(f"{gateway.url}/v1/messages", content=b'{"model": ',
                        headers={"x-api-key": key, "content-type": "application/json",
                                 "anthropic-version": "2023-06-01"}, timeout=15)
    assert answer.status_code == 400
    body = answer.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_request"
