"""The Node.js SDK (clients/node) against a real `outlay serve`: agents written in JavaScript with
the official `openai` and `@anthropic-ai/sdk` npm packages and fetch, intercepted with
`new Outlay({key, baseUrl}).interceptAll()`, are charged on the Outlay key, and refusals arrive as
the SDK's typed errors. Each agent script runs its scenarios in one node process (loading the
SDKs is most of its time) and reports what it saw; the tests check that against the gateway's
audit and budgets. Nothing leaves loopback: the gateway answers from its simulated providers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .harness import Gateway, micros, price_cost_micros, unique

pytestmark = pytest.mark.e2e

NODE_SDK = Path(__file__).resolve().parents[2] / "clients" / "node"
RUN_TIMEOUT_S = 120.0
BOGUS = "sk-not-a-real-key"
TINY_BUDGET = {"budgets": [{"usd": "0.000001", "period": "day", "mode": "hard"}]}
# each scenario's key and its policy
KEYS: dict[str, dict[str, Any]] = {
    "chat": {},
    "stream": {"policy": {"budgets": [{"usd": 1, "period": "day", "mode": "hard"}]}},
    "budget": {"policy": TINY_BUDGET},
    "rate": {"policy": {"rpm": 1}},
    "anthropic": {},
    "anthropicDenied": {"policy": {"models": ["gpt-4o-mini"]}},
    "models": {},
    "stripe": {"policy": {"budgets": [{"usd": "100", "period": "total", "mode": "hard"}]}},
    "restore": {},
}
CJS_KEYS: dict[str, dict[str, Any]] = {"chat": {}, "budget": {"policy": TINY_BUDGET}}


class Agent:
    """One run of an agent script: the keys it was given (as minted) and what it reported."""

    def __init__(self, gateway: Gateway, script: str, keys: dict[str, dict[str, Any]]) -> None:
        self.gateway = gateway
        self.minted = {name: gateway.mint_key(unique(f"node-{name}"), **fields)
                       for name, fields in keys.items()}
        self.results = run_node(script, {
            "url": gateway.url, "keys": {name: m["key"] for name, m in self.minted.items()}})

    def result(self, scenario: str) -> dict[str, Any]:
        result: dict[str, Any] = self.results[scenario]
        assert "failed" not in result, result["failed"]
        return result

    def scope(self, scenario: str) -> str:
        return f"key:{self.minted[scenario]['id']}"

    def audit(self, scenario: str) -> list[dict[str, Any]]:
        return self.gateway.audit(self.scope(scenario))


def run_node(script: str, settings: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (NODE_SDK / "dist" / ".built").exists() \
            or not (NODE_SDK / "node_modules" / "openai").exists():
        pytest.fail("the Node.js SDK is not installed and built; run scripts/install --tests "
                    "(it needs node and npm)")
    # provider settings of an agent's machine that point anywhere but the gateway
    env = {"PATH": os.environ.get("PATH", ""), "OPENAI_API_KEY": BOGUS,
           "ANTHROPIC_API_KEY": BOGUS, "OUTLAY_E2E": json.dumps(settings)}
    done = subprocess.run([node, f"e2e/{script}"], cwd=NODE_SDK, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"node e2e/{script} exited {done.returncode}:\n{done.stderr}"
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.fixture(scope="module")
def agent(gateway: Gateway) -> Agent:
    return Agent(gateway, "agent.mjs", KEYS)


@pytest.fixture(scope="module")
def commonjs_agent(gateway: Gateway) -> Agent:
    return Agent(gateway, "agent.cjs", CJS_KEYS)


def test_an_openai_client_made_after_intercept_all_is_charged_on_the_outlay_key(
        agent: Agent) -> None:
    result = agent.result("chat")

    assert result["content"]
    assert result["baseURL"] == f"{agent.gateway.url}/v1"
    (entry,) = agent.audit("chat")
    assert (entry["route"], entry["status"], entry["settlement"]) == (
        "openai.chat", 200, "settled")
    assert entry["request_id"] == result["requestId"]
    assert micros(entry["cost_usd"]) > 0


def test_a_stream_arrives_whole_and_settles_to_its_cost(agent: Agent) -> None:
    result = agent.result("stream")

    assert result["text"]
    assert result["chunks"] > 2
    usage = result["usage"]
    expected = price_cost_micros(agent.gateway.prices()["gpt-4o-mini"], usage["prompt_tokens"],
                                 usage["completion_tokens"])
    (entry,) = agent.audit("stream")
    assert (entry["status"], entry["settlement"]) == (200, "settled")
    assert micros(entry["cost_usd"]) == expected > 0
    assert micros(agent.gateway.budget(agent.scope("stream"))["spent_usd"]) == expected


def test_a_402_is_budget_exceeded_with_the_figures_and_still_an_openai_error(
        agent: Agent) -> None:
    result = agent.result("budget")

    assert (result["budgetExceeded"], result["outlayError"], result["openaiError"],
            result["rateLimited"]) == (True, True, True, False)
    assert (result["status"], result["code"]) == (402, "budget_exceeded")
    assert (result["scope"], result["period"]) == (agent.scope("budget"), "day")
    assert (result["spentUsd"], result["capUsd"]) == ("0", "0.000001")
    assert result["resetsAt"].endswith("T00:00:00.000Z")
    (entry,) = agent.audit("budget")
    assert (entry["code"], entry["request_id"]) == ("budget_exceeded", result["requestId"])
    assert "0.000001" in result["message"]


def test_a_429_is_rate_limited_with_retry_after_and_with_retry_gives_up_on_a_long_wait(
        agent: Agent) -> None:
    result = agent.result("rate")

    assert (result["rateLimited"], result["openaiRateLimitError"]) == (True, True)
    assert 1 <= result["retryAfter"] <= 61  # rpm windows free a slot within a 1 s bucket
    assert (result["limit"], result["code"]) == (1, "rate_limit_exceeded")
    assert (result["gaveUpRateLimited"], result["slept"]) == (True, [])
    statuses = [e["status"] for e in agent.audit("rate")]
    assert sorted(statuses) == [200, 429, 429]


def test_an_anthropic_client_is_charged_and_its_refusals_are_typed(agent: Agent) -> None:
    result = agent.result("anthropic")

    assert (result["type"], bool(result["text"])) == ("text", True)
    (entry,) = agent.audit("anthropic")
    assert (entry["vendor"], entry["route"], entry["status"]) == (
        "anthropic", "anthropic.messages", 200)
    assert (result["modelNotAllowed"], result["permissionDenied"]) == (True, True)
    assert result["allowed"] == ["gpt-4o-mini"]
    (denied,) = agent.audit("anthropicDenied")
    assert denied["code"] == "model_not_allowed"


def test_models_are_retrieved_and_listed_by_both_sdks(agent: Agent) -> None:
    result = agent.result("models")

    assert result["model"] == {"id": "gpt-4o-mini", "object": "model", "owned_by": "openai"}
    prices = agent.gateway.prices()
    # the models of the gateway's providers: OpenAI's and Anthropic's, not groq's and others'
    assert result["listed"] == sorted(n for n, p in prices.items()
                                      if p["provider"] in ("openai", "anthropic"))
    assert result["claude"] == {"id": "claude-haiku-4-5", "type": "model",
                                "display_name": "Claude Haiku 4.5",
                                "created_at": "1970-01-01T00:00:00Z"}
    # Anthropic's SDK pages through the list (3 a page): every Anthropic model, no other
    assert result["claudes"] == sorted(n for n, p in prices.items()
                                       if p["provider"] == "anthropic")
    assert result["missing"] == {"notFound": True, "status": 404}
    assert agent.audit("models") == []  # listings move no money and write nothing


def test_a_fetch_call_to_stripes_host_goes_to_the_stripe_vendor_route_and_is_charged(
        agent: Agent) -> None:
    result = agent.result("stripe")

    assert result == {"status": 200, "amount": 2000, "currency": "usd",
                      "object": "payment_intent"}
    assert [e["vendor"] for e in agent.audit("stripe")] == ["stripe"]
    assert micros(agent.gateway.budget(agent.scope("stripe"))["spent_usd"]) == 20_000_000


def test_restore_sends_new_clients_back_and_leaves_nothing_behind(agent: Agent) -> None:
    result = agent.result("restore")

    assert result["intercepting"] == {"baseURL": f"{agent.gateway.url}/v1",
                                      "fetchReplaced": True}
    assert result["afterwards"] == {"baseURL": "https://api.openai.com/v1", "apiKey": BOGUS,
                                    "anthropicBaseURL": "https://api.anthropic.com"}
    assert result["environment"] == {"OPENAI_BASE_URL": None, "OPENAI_API_KEY": BOGUS}
    assert result["fetchRestored"] is True
    # the client made while intercepting still reached the gateway on the key
    assert [e["route"] for e in agent.audit("restore")] == ["openai.chat"]


def test_a_commonjs_agent_is_routed_and_gets_typed_errors(commonjs_agent: Agent) -> None:
    chat, budget = commonjs_agent.result("chat"), commonjs_agent.result("budget")

    assert chat["content"]
    assert [e["status"] for e in commonjs_agent.audit("chat")] == [200]
    assert (budget["budgetExceeded"], budget["openaiError"], budget["capUsd"]) == (
        True, True, "0.000001")
