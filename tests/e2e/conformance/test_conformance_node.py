"""The Node.js agents (tests/e2e/conformance/node/agents.mjs): the official openai and
@anthropic-ai/sdk clients and the Vercel AI SDK on OpenAI and Anthropic, each configured by
base URL and key alone. One node process runs every scenario (loading the SDKs is most of its
time); each scenario's key is its own, and the ledger is checked here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..harness import Gateway
from .conftest import Ledger

pytestmark = pytest.mark.e2e

AGENTS = Path(__file__).resolve().parent / "node"
RUN_TIMEOUT_S = 120.0
OPENAI_MODEL = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
# framework -> the model and route its calls are recorded under
FRAMEWORKS = {
    "openai": (OPENAI_MODEL, "openai.chat"),
    "claude": (CLAUDE, "anthropic.messages"),
    "vercelOpenai": (OPENAI_MODEL, "openai.responses"),
    "vercelClaude": (CLAUDE, "anthropic.messages"),
}
SCENARIOS = ("Chat", "Stream", "Tools", "Refused")


@pytest.fixture(scope="module")
def agents(served: Gateway) -> tuple[dict[str, Ledger], dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (AGENTS / "node_modules" / "ai").exists():
        pytest.fail("the conformance suite's Node.js packages are not installed; run "
                    "scripts/install --tests (it needs node and npm)")
    ledgers = {f"{name}{scenario}": Ledger(served, f"node-{name}-{scenario}".lower(),
                                           refused=scenario == "Refused")
               for name in FRAMEWORKS for scenario in SCENARIOS}
    settings = {"url": served.url, "keys": {name: ledger.key for name, ledger in ledgers.items()}}
    # provider settings of an agent's machine: none may be needed, and none reaches the gateway
    env = {"PATH": os.environ.get("PATH", ""), "OPENAI_API_KEY": "sk-not-a-real-key",
           "ANTHROPIC_API_KEY": "sk-ant-not-a-real-key",
           "OUTLAY_CONFORMANCE": json.dumps(settings)}
    done = subprocess.run([node, "agents.mjs"], cwd=AGENTS, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"node agents.mjs exited {done.returncode}:\n{done.stderr}"
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return ledgers, results


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_node_agent(agents: tuple[dict[str, Ledger], dict[str, Any]], framework: str) -> None:
    ledgers, results = agents
    model, route = FRAMEWORKS[framework]
    seen = {scenario: results[f"{framework}{scenario}"] for scenario in SCENARIOS}
    for scenario, result in seen.items():
        assert "failed" not in result, (scenario, result["failed"])
    for scenario in ("Chat", "Stream"):
        assert seen[scenario]["text"], scenario
        ledgers[f"{framework}{scenario}"].settled(model, route, 1,
                                                   tuple(seen[scenario]["usage"]))
    tools = seen["Tools"]
    assert tools["call"] == ["get_weather", {"city": "sim"}]
    assert tools["text"]
    ledgers[f"{framework}Tools"].settled(model, route, 2, tuple(tools["usage"]))
    assert seen["Refused"] == {"status": 402}
    ledgers[f"{framework}Refused"].refused_once(model)
