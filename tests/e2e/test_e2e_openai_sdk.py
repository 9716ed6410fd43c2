"""The official `openai` SDK pointed at a real gateway: every OpenAI route, and every refusal
as the SDK raises it."""

from __future__ import annotations

import fnmatch
import time
from datetime import datetime

import openai
import pytest

from .harness import Gateway, micros, price_cost_micros, unique

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Say hello."}]


def client_for(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=15)


def new_client(gateway: Gateway, prefix: str, **key_fields: object) -> tuple[openai.OpenAI, dict]:
    minted = gateway.mint_key(unique(prefix), **key_fields)
    return client_for(gateway, minted["key"]), minted


def only_entry(gateway: Gateway, scope: str) -> dict:
    entries = gateway.audit(scope)
    assert len(entries) == 1, entries
    return entries[0]


def test_chat_completion_reports_usage_and_cost(gateway: Gateway) -> None:
    client, minted = new_client(gateway, "oa-chat")
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
        completion = raw.parse()

    assert completion.choices[0].message.content
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    expected = price_cost_micros(gateway.prices()["gpt-4o-mini"], usage.prompt_tokens,
                                 usage.completion_tokens)
    assert micros(raw.headers["x-outlay-cost-usd"]) == expected
    entry = only_entry(gateway, f"key:{minted['id']}")
    assert entry["request_id"] == raw.headers["x-outlay-request-id"]
    assert (entry["decision"], entry["status"], entry["settlement"]) == ("allowed", 200, "settled")
    assert micros(entry["cost_usd"]) == expected
    assert micros(entry["reserved_usd"]) >= expected


def test_streamed_chat_ends_with_usage_and_settles_to_its_cost(gateway: Gateway) -> None:
    client, minted = new_client(
        gateway, "oa-stream", policy={"budgets": [{"usd": 1, "period": "day", "mode": "hard"}]})
    scope = f"key:{minted['id']}"
    with client:
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True}))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    expected = price_cost_micros(gateway.prices()["gpt-4o-mini"], final.usage.prompt_tokens,
                                 final.usage.completion_tokens)
    assert expected > 0

    entry = only_entry(gateway, scope)
    assert (entry["status"], entry["settlement"]) == (200, "settled")
    assert micros(entry["cost_usd"]) == expected
    budget = gateway.budget(scope)
    assert micros(budget["spent_usd"]) == expected
    assert micros(budget["reserved_usd"]) == 0
    assert micros(gateway.usage(scope)["spend_by_model"]["gpt-4o-mini"]) == expected


def test_embeddings_completions_and_responses(gateway: Gateway) -> None:
    client, minted = new_client(gateway, "oa-routes")
    with client:
        embedded = client.embeddings.create(model="text-embedding-3-small",
                                            input=["first text", "second text"])
        completed = client.completions.create(model="gpt-3.5-turbo-instruct",
                                              prompt="Once upon a time", max_tokens=10)
        response = client.responses.create(model="gpt-4o-mini", input="Say hello.",
                                           max_output_tokens=32)

    assert [e.index for e in embedded.data] == [0, 1]
    assert all(len(e.embedding) > 0 for e in embedded.data)
    assert embedded.usage.prompt_tokens > 0
    assert completed.choices[0].text
    assert completed.usage is not None
    assert completed.usage.completion_tokens <= 10
    assert response.output_text
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0

    prices = gateway.prices()
    costs = {
        "openai.embeddings": price_cost_micros(
            prices["text-embedding-3-small"], embedded.usage.prompt_tokens, 0),
        "openai.completions": price_cost_micros(
            prices["gpt-3.5-turbo-instruct"], completed.usage.prompt_tokens,
            completed.usage.completion_tokens),
        "openai.responses": price_cost_micros(
            prices["gpt-4o-mini"], response.usage.input_tokens, response.usage.output_tokens),
    }
    entries = gateway.audit(f"key:{minted['id']}")
    assert {e["route"]: micros(e["cost_usd"]) for e in entries} == costs
    assert {(e["status"], e["settlement"]) for e in entries} == {(200, "settled")}


def test_models_lists_only_what_the_key_may_use(gateway: Gateway) -> None:
    allowed = ["gpt-4o-mini", "claude-*"]
    client, _ = new_client(gateway, "oa-models", policy={"models": allowed})
    with client:
        listed = {m.id for m in client.models.list()}
    expected = {name for name in gateway.prices() if name == "gpt-4o-mini"
                or fnmatch.fnmatchcase(name, "claude-*")}
    assert listed == expected
    assert "gpt-4o" not in listed

    unrestricted, _ = new_client(gateway, "oa-models-all")
    with unrestricted:
        assert {m.id for m in unrestricted.models.list()} >= {"gpt-4o", "gpt-4o-mini"}


def test_rate_limit_raises_rate_limit_error_with_headers(gateway: Gateway) -> None:
    client, _ = new_client(gateway, "oa-rpm", policy={"rpm": 2})
    with client:
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)

    err = caught.value
    assert err.status_code == 429
    assert err.code == "rate_limit_exceeded"
    headers = err.response.headers
    retry_after = headers["retry-after"]
    assert retry_after.isdigit()
    # windows are kept in 1 s buckets for rpm, so a slot may free up to a bucket late
    assert 1 <= int(retry_after) <= 60
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"]
    assert isinstance(err.body, dict)
    assert err.body["limit"] == 2
    assert err.body["retry_after"] == int(retry_after)
    assert err.body["scope"].startswith("key:")


def test_hard_budget_raises_402_with_spend_against_cap(gateway: Gateway) -> None:
    client, minted = new_client(
        gateway, "oa-402",
        policy={"budgets": [{"usd": "0.000001", "period": "day", "mode": "hard"}]})
    with client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)

    err = caught.value
    assert err.status_code == 402
    assert err.response.headers["x-should-retry"] == "false"
    body = err.body
    assert isinstance(body, dict)
    assert body["code"] == "budget_exceeded"
    assert body["scope"] == f"key:{minted['id']}"
    assert body["period"] == "day"
    assert (body["spent_usd"], body["cap_usd"]) == ("0", "0.000001")
    assert "$0 spent of a $0.000001 hard cap" in body["message"]
    assert datetime.fromisoformat(body["resets_at"].replace("Z", "+00:00"))
    assert micros(gateway.budget(f"key:{minted['id']}")["spent_usd"]) == 0


def test_model_outside_allow_list_raises_permission_denied(gateway: Gateway) -> None:
    client, _ = new_client(gateway, "oa-403", policy={"models": ["gpt-4o-mini"]})
    with client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)

    err = caught.value
    assert err.code == "model_not_allowed"
    assert isinstance(err.body, dict)
    assert err.body["allowed"] == ["gpt-4o-mini"]
    assert "gpt-4o-mini" in err.body["message"]


def test_revoked_expired_and_unknown_keys_are_refused(gateway: Gateway) -> None:
    def call(client: openai.OpenAI) -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)

    revoked, minted = new_client(gateway, "oa-revoked")
    expiring, _ = new_client(gateway, "oa-expired", ttl_seconds=1)
    unknown = client_for(gateway, "olk_this-key-was-never-minted")
    with revoked, expiring, unknown:
        started = time.monotonic()
        call(revoked)
        gateway.revoke(minted["id"])
        with pytest.raises(openai.AuthenticationError) as caught:
            call(revoked)
        assert caught.value.code == "key_revoked"

        time.sleep(max(0.0, 1.2 - (time.monotonic() - started)))
        with pytest.raises(openai.AuthenticationError) as caught:
            call(expiring)
        assert caught.value.code == "key_expired"

        with pytest.raises(openai.AuthenticationError) as caught:
            call(unknown)
        assert caught.value.code == "invalid_api_key"


def test_a_plain_stream_loop_works_and_still_settles(gateway: Gateway) -> None:
    """The loop most agents run, `chunk.choices[0]` on every chunk, works unchanged behind
    Outlay: the usage chunk Outlay asks for is not passed on unless the agent asked too."""
    client, minted = new_client(
        gateway, "oa-plain-stream",
        policy={"budgets": [{"usd": 1, "period": "day", "mode": "hard"}]})
    with client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text
    entry = only_entry(gateway, f"key:{minted['id']}")
    assert (entry["status"], entry["settlement"]) == (200, "settled")
    assert micros(entry["cost_usd"]) > 0


def test_a_call_without_max_tokens_is_clamped_to_fit_the_budget(gateway: Gateway) -> None:
    # gpt-4o-mini may write 16,384 tokens ($0.0098 of output): the budget holds a fifth
    cap = 2_000
    client, minted = new_client(gateway, "oa-clamp", policy={
        "budgets": [{"usd": cap / 1_000_000, "period": "day"}], "clamp_max_tokens": 16})
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES)
        completion = raw.parse()
        clamped = int(raw.headers["x-outlay-max-tokens-clamped"])
        assert 16 <= clamped < 16_384
        assert completion.usage is not None
        assert completion.usage.completion_tokens <= clamped
        # its own maximum is lowered the same way, to what the first call's cost left
        named = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=16_384)
        lowered = int(named.headers["x-outlay-max-tokens-clamped"])
        assert 16 <= lowered < 16_384
        assert named.parse().usage.completion_tokens <= lowered  # type: ignore[union-attr]
    entries = gateway.audit(f"key:{minted['id']}")
    first, second = reversed([e for e in entries if e["decision"] == "allowed"])
    assert cap - micros(first["reserved_usd"]) < 1  # the reservation filled the room
    assert micros(first["cost_usd"]) <= micros(first["reserved_usd"])
    left = cap - micros(first["cost_usd"])
    assert 0 <= left - micros(second["reserved_usd"]) < 1  # and the second filled what was left
    assert micros(first["cost_usd"]) + micros(second["cost_usd"]) <= cap
