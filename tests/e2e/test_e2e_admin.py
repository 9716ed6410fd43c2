"""The admin surface of a running gateway: who may use it, its OpenAPI document, and the
`outlay` command line driving it as a separate process."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest

from .harness import ADMIN_TOKEN, Gateway, micros, outlay_bin, server_env, unique

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def test_agent_keys_never_open_admin_routes(gateway: Gateway) -> None:
    agent = unique("admin-intruder")
    minted = gateway.mint_key(agent)
    attempts = [
        ("GET", "/admin/v1/keys", None),
        ("POST", "/admin/v1/keys", {"agent": agent}),
        ("POST", f"/admin/v1/keys/{minted['id']}/revoke", None),
        ("PUT", f"/admin/v1/policies/agent:{agent}", {"rpm": 1000}),
        ("GET", f"/admin/v1/usage/agent:{agent}", None),
        ("GET", "/admin/v1/audit", None),
    ]
    credentials = [
        {"Authorization": f"Bearer {minted['key']}"},
        {"x-api-key": minted["key"]},
        {},
        {"Authorization": "Bearer not-the-admin-token"},
    ]
    with httpx.Client(base_url=gateway.url, timeout=15) as http:
        for method, path, body in attempts:
            for headers in credentials:
                answer = http.request(method, path, json=body, headers=headers)
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert answer.json()["error"]["code"] == "invalid_admin_token"
    # nothing the agent tried took effect
    assert gateway.admin.get(f"/admin/v1/keys/{minted['id']}").json()["revoked_at"] is None
    assert gateway.admin.get(f"/admin/v1/policies/agent:{agent}").status_code == 404
    assert [k["agent"] for k in gateway.admin.get(
        "/admin/v1/keys", params={"agent": agent}).json()["keys"]] == [agent]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_document_describes_the_admin_api(gateway: Gateway) -> None:
    answer = httpx.get(f"{gateway.url}/admin/v1/openapi.json", timeout=15)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    document = json.loads(answer.content)
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path, method in [
        ("/admin/v1/keys", "post"), ("/admin/v1/keys", "get"), ("/admin/v1/keys/{id}", "get"),
        ("/admin/v1/keys/{id}/revoke", "post"), ("/admin/v1/agents", "post"),
        ("/admin/v1/policies/{scope}", "put"), ("/admin/v1/policies/{scope}", "get"),
        ("/admin/v1/usage/{scope}", "get"), ("/admin/v1/audit", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not documented"
    assert all(path.startswith("/admin/v1/") for path in paths)
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, f"dangling {ref}"
    # every documented GET without path parameters answers with the admin token
    for path, operations in paths.items():
        if "get" in operations and "{" not in path:
            assert gateway.admin.get(path).status_code == 200, path


def outlay(gateway: Gateway, *args: str, token: str = ADMIN_TOKEN, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    env = server_env()
    del env["OUTLAY_ADMIN_TOKEN"]  # the flags alone must be enough
    done = subprocess.run([outlay_bin(), *args, "--url", gateway.url, "--token", token],
                          capture_output=True, text=True, env=env, timeout=30, check=False)
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_command_line_mints_keys_sets_policies_and_reads_usage(gateway: Gateway) -> None:
    agent = unique("cli-agent")
    created = json.loads(outlay(gateway, "keys", "create", "--agent", agent, "--name", "run-7",
                                "--ttl", "1h", "--label", "run=r-7", "--json").stdout)
    assert created["key"].startswith("olk_")
    assert created["id"].startswith("key_")
    assert (created["agent"], created["name"], created["labels"]) == (agent, "run-7",
                                                                      {"run": "r-7"})
    assert created["expires_at"]

    stored = json.loads(outlay(gateway, "policy", "set", f"agent:{agent}", "--rpm", "5",
                               "--budget", "1/day/hard", "--model", "gpt-4o-mini",
                               "--json").stdout)
    assert stored["rpm"] == 5
    assert stored["models"] == ["gpt-4o-mini"]
    assert micros(stored["budgets"][0]["usd"]) == 1_000_000

    answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, timeout=15,
                        headers={"Authorization": f"Bearer {created['key']}"})
    assert answer.status_code == 200, answer.text
    cost = micros(answer.headers["x-outlay-cost-usd"])

    usage = json.loads(outlay(gateway, "usage", f"agent:{agent}", "--json").stdout)
    assert usage["scope"] == f"agent:{agent}"
    (window,) = usage["windows"]
    assert (window["name"], window["limit"], window["used"], window["remaining"]) == (
        "rpm", 5, 1, 4)
    (budget,) = usage["budgets"]
    assert (budget["period"], budget["mode"], micros(budget["cap_usd"])) == (
        "day", "hard", 1_000_000)
    assert micros(budget["spent_usd"]) == cost
    assert micros(budget["reserved_usd"]) == 0

    table = outlay(gateway, "usage", f"agent:{agent}").stdout
    assert f"agent:{agent}" in table
    assert "rpm" in table

    outlay(gateway, "keys", "revoke", created["id"])
    refused = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, timeout=15,
                         headers={"Authorization": f"Bearer {created['key']}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "key_revoked"

    denied = outlay(gateway, "usage", f"agent:{agent}", "--json", token="wrong", check=False)
    assert denied.returncode == 1
    assert "401" in denied.stderr

    endpoints = json.loads(outlay(gateway, "providers", "--json").stdout)["providers"]
    assert {(p["kind"], p["provider"], p["state"]) for p in endpoints} == {
        ("llm", "openai", "closed"), ("llm", "anthropic", "closed"),
        ("vendor", "stripe", "closed"), ("vendor", "twilio", "closed"),
        ("vendor", "resend", "closed")}
    assert "simulated" in outlay(gateway, "providers").stdout
