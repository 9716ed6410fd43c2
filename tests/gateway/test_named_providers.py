"""Calls on named providers, in process: the provider and model name sent upstream, the
vendor a call is charged to, a downgrade that stays on its provider, a free provider, and
the refusals of a model on the other API family."""

from __future__ import annotations

import json
from typing import Any

from outlay.upstream.providers import ProviderSpec

from .fakes import MakeOutlay, Reply, openai_answer

SPECS = {"groq": ProviderSpec("groq", models=("llama-*",)),
         "local": ProviderSpec("local", models=("meta-llama/*",), free=True),
         "azure": ProviderSpec("azure", "azure", deployments=(("gpt-4o", "prod-4o"),)),
         "bedrock": ProviderSpec("bedrock", "anthropic", models=("claude-*",))}


def chat(model: str, max_tokens: int = 10) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}]}


async def test_calls_go_to_their_provider_under_its_name(make_outlay: MakeOutlay) -> None:
    outlay = await make_outlay(provider_specs=SPECS)
    key = await outlay.mint()
    for model, provider, sent, deployment in [
            ("groq/llama-3.3-70b-versatile", "groq", "llama-3.3-70b-versatile", None),
            ("llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant", None),
            ("gpt-4o", "azure", "gpt-4o", "prod-4o"),
            ("openai/gpt-4o-mini", "openai", "gpt-4o-mini", None)]:
        resp = await outlay.chat(key["key"], chat(model))
        assert resp.status == 200, await resp.text()
        request = outlay.upstream.requests[-1]
        assert (request.provider, request.deployment) == (provider, deployment)
        assert json.loads(request.body)["model"] == sent
    entries = await outlay.audit()
    assert [e["vendor"] for e in reversed(entries)] == ["groq", "groq", "azure", "openai"]
    assert all(e["code"] != "unpriced" for e in entries)


async def test_a_free_provider_costs_nothing(make_outlay: MakeOutlay) -> None:
    outlay = await make_outlay(provider_specs=SPECS)
    key = await outlay.mint()
    await outlay.set_policy("vendor:local", {"budgets": [
        {"usd": "0.000001", "period": "day", "mode": "hard"}]})
    outlay.upstream.default = Reply(body=openai_answer(model="meta-llama/Llama-3.1-8B"))
    resp = await outlay.chat(key["key"], chat("meta-llama/Llama-3.1-8B", 1000))
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Outlay-Cost-USD"] == "0"
    assert outlay.upstream.requests[-1].provider == "local"


async def test_a_downgrade_stays_on_the_calls_provider(make_outlay: MakeOutlay) -> None:
    outlay = await make_outlay(provider_specs=SPECS)
    key = await outlay.mint()
    await outlay.set_policy("vendor:groq", {"budgets": [
        {"usd": "0.00005", "period": "day",
         "on_exceeded": {"downgrade_to": ["groq/llama-3.1-8b-instant"]}}]})
    resp = await outlay.chat(key["key"], chat("groq/llama-3.3-70b-versatile", 100))
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Outlay-Downgraded"] == \
        "groq/llama-3.3-70b-versatile -> groq/llama-3.1-8b-instant"
    request = outlay.upstream.requests[-1]
    assert request.provider == "groq"
    assert json.loads(request.body)["model"] == "llama-3.1-8b-instant"


async def test_a_model_of_the_other_family_is_refused(make_outlay: MakeOutlay) -> None:
    outlay = await make_outlay(provider_specs=SPECS)
    key = await outlay.mint()
    resp = await outlay.chat(key["key"], chat("claude-3-haiku"))  # goes to openai
    assert resp.status == 200
    resp = await outlay.chat(key["key"], chat("bedrock/claude-3-haiku"))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "model")
    assert "provider 'bedrock' (type anthropic)" in error["message"]
    assert [r.provider for r in outlay.upstream.requests] == ["openai"]
