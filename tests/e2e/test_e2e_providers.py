"""Named providers through a real `outlay serve`, driven by the official `openai` SDK: two
OpenAI-compatible servers (`openai`, `groq`) and an Azure-OpenAI-shaped one on loopback, each
recording what it got. Each call reaches its provider's server at the right path, query and
credential header with the provider's model name, never with the agent's key; streams settle
on each; `vendor:groq` budgets and `vendors` allow-lists act on Groq's calls alone."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from aiohttp import web

from .conftest import Launch
from .harness import Gateway, micros, outlay_bin, server_env, unique
from .traffic import serve_in_thread, wait_until

pytestmark = pytest.mark.e2e

USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
MESSAGES = [{"role": "user", "content": "Hello."}]


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]
    model: str


@dataclass
class Server:
    """An OpenAI-compatible API on loopback (any path), recording every request."""

    name: str
    url: str = ""
    seen: list[Seen] = field(default_factory=list)


SERVER = web.AppKey("server", Server)


async def _answer(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    body = await request.json()
    server.seen.append(Seen(request.path, request.query_string, dict(request.headers),
                            body.get("model", "")))
    envelope = {"id": f"chatcmpl-{server.name}", "created": 1_735_689_600,
                "model": body.get("model")}
    if not body.get("stream"):
        return web.json_response({**envelope, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": f"from {server.name}"},
             "finish_reason": "stop"}], "usage": USAGE})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {**envelope, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": f"from {server.name}"}, "finish_reason": None}]}
    final = {**envelope, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
    await response.write(f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(final)}\n\n"
                         "data: [DONE]\n\n".encode())
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    found = {name: Server(name) for name in ("openai", "groq", "azure")}
    with serve_in_thread(_app(found["openai"])) as found["openai"].url, \
            serve_in_thread(_app(found["groq"])) as found["groq"].url, \
            serve_in_thread(_app(found["azure"])) as found["azure"].url:
        yield found


def _app(server: Server) -> web.Application:
    app = web.Application()
    app[SERVER] = server
    app.router.add_post("/{tail:.*}", _answer)
    return app


def _config(servers: dict[str, Server]) -> dict[str, Any]:
    return {"providers": {
        "openai": {"endpoints": [{"base_url": f"{servers['openai'].url}/v1",
                                  "api_key": "sk-openai-secret"}]},
        "groq": {"endpoints": [{"base_url": f"{servers['groq'].url}/openai/v1",
                                "api_key": "gsk-groq-secret"}],
                 "models": ["llama-*"]},
        "azure": {"type": "azure",
                  "endpoints": [{"base_url": servers["azure"].url, "api_key": "az-secret",
                                 "api_version": "2024-10-21"}],
                  "deployments": {"gpt-4.1-mini": "prod-mini"}},
    }}


def _client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=15)


def _settled(gateway: Gateway, scope: str, count: int) -> list[dict[str, Any]]:
    def done() -> bool:
        entries = gateway.audit(scope)
        return len(entries) >= count and all(e["settlement"] == "settled" for e in entries)
    wait_until(done, 10, f"{count} settled calls of {scope}", lambda: gateway.audit(scope))
    return gateway.audit(scope)


def test_each_call_reaches_its_provider_as_that_provider_expects(
        launch: Launch, servers: dict[str, Server]) -> None:
    for server in servers.values():
        server.seen.clear()
    gateway = launch(_config(servers))
    minted = gateway.mint_key(unique("providers"))
    calls = [("gpt-4o-mini", "openai"), ("groq/llama-3.3-70b-versatile", "groq"),
             ("llama-3.1-8b-instant", "groq"), ("azure/gpt-4.1-mini", "azure"),
             ("gpt-4.1-mini", "azure")]
    with _client(gateway, minted["key"]) as client:
        for model, provider in calls:
            whole = client.chat.completions.create(model=model, messages=MESSAGES)
            assert whole.choices[0].message.content == f"from {provider}"
            chunks = list(client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == f"from {provider}"
        listed = {m.id: m.owned_by for m in client.models.list()}

    openai_seen, groq_seen, azure_seen = (servers[n].seen for n in ("openai", "groq", "azure"))
    assert [(s.path, s.query, s.model) for s in openai_seen] == [
        ("/v1/chat/completions", "", "gpt-4o-mini")] * 2
    assert [(s.path, s.model) for s in groq_seen] == [
        ("/openai/v1/chat/completions", "llama-3.3-70b-versatile")] * 2 + [
        ("/openai/v1/chat/completions", "llama-3.1-8b-instant")] * 2
    assert [(s.path, s.query, s.model) for s in azure_seen] == [
        ("/openai/deployments/prod-mini/chat/completions", "api-version=2024-10-21",
         "gpt-4.1-mini")] * 4
    assert {s.headers["Authorization"] for s in openai_seen} == {"Bearer sk-openai-secret"}
    assert {s.headers["Authorization"] for s in groq_seen} == {"Bearer gsk-groq-secret"}
    assert {s.headers["api-key"] for s in azure_seen} == {"az-secret"}
    assert not any("Authorization" in s.headers for s in azure_seen)
    for seen in openai_seen + groq_seen + azure_seen:
        assert not any(minted["key"] in value for value in seen.headers.values())

    # every call settled at the usage its provider reported, charged to its provider
    entries = _settled(gateway, f"key:{minted['id']}", 2 * len(calls))
    by_vendor: dict[str, int] = {}
    for entry in entries:
        assert entry["decision"] == "allowed"
        assert micros(entry["cost_usd"]) > 0, entry
        by_vendor[entry["vendor"]] = by_vendor.get(entry["vendor"], 0) + 1
    assert by_vendor == {"openai": 2, "groq": 4, "azure": 4}
    # the models of every configured provider, owned by it; none of an unconfigured one
    assert listed["gpt-4o-mini"] == "openai"
    assert listed["groq/llama-3.3-70b-versatile"] == "groq"
    assert listed["azure/gpt-4.1-mini"] == "azure"
    assert not any(name.startswith("gemini/") for name in listed)
    report = gateway.admin.get("/admin/v1/reports", params={"group_by": "vendor"}).json()
    assert {row["vendor"] for row in report["rows"]} >= {"openai", "groq", "azure"}
    # metrics and the providers' health (the dashboard's Providers view) name each provider
    metrics = gateway.admin.get("/metrics").text
    assert 'vendor="groq"' in metrics
    assert 'vendor="azure"' in metrics
    health = gateway.admin.get("/admin/v1/providers").json()["providers"]
    assert {(p["provider"], p["base_url"]) for p in health if p["kind"] == "llm"} == {
        ("openai", f"{servers['openai'].url}/v1"), ("groq", f"{servers['groq'].url}/openai/v1"),
        ("azure", servers["azure"].url)}


def test_a_groq_budget_and_allow_list_act_on_groq_alone(
        launch: Launch, servers: dict[str, Server]) -> None:
    gateway = launch(_config(servers))
    gateway.set_policy("vendor:groq", {
        "budgets": [{"usd": "0.0000001", "period": "day", "mode": "hard"}]})
    minted = gateway.mint_key(unique("groq-budget"))
    narrow = gateway.mint_key(unique("openai-only"), policy={"vendors": ["openai", "azure"]})
    with _client(gateway, minted["key"]) as client:
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="groq/llama-3.3-70b-versatile",
                                           messages=MESSAGES)
        assert refused.value.status_code == 402
        assert refused.value.body["code"] == "budget_exceeded"  # type: ignore[index]
        assert client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content == "from openai"
        # a provider of the other API family, or a background response off OpenAI: 400
        with pytest.raises(openai.BadRequestError) as wrong:
            client.chat.completions.create(model="anthropic/claude-sonnet-4-5",
                                           messages=MESSAGES)
        assert wrong.value.body["param"] == "model"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as held:
            client.responses.create(model="groq/llama-3.3-70b-versatile", input="Hi.",
                                    background=True)
        assert held.value.body["param"] == "background"  # type: ignore[index]
    with _client(gateway, narrow["key"]) as client:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client.chat.completions.create(model="llama-3.3-70b-versatile", messages=MESSAGES)
        assert denied.value.body["code"] == "vendor_not_allowed"  # type: ignore[index]
        assert client.chat.completions.create(
            model="azure/gpt-4.1-mini", messages=MESSAGES).choices[0].message.content \
            == "from azure"
        listed = {m.id for m in client.models.list()}
    assert "gpt-4o-mini" in listed
    assert not any(name.startswith("groq/") for name in listed)


@pytest.mark.parametrize(("providers", "line"), [
    ({"groq": {"models": ["llama-*"]}},
     "providers.groq: no endpoints; give endpoints: [{base_url: …, api_key: …}], or "
     "simulate: true to have the built-in simulator serve it"),
    ({"groq": {"type": "bedrock", "endpoints": [{"api_key": "k"}]}},
     "providers.groq.type: unknown type 'bedrock'; expected one of openai, anthropic, azure"),
    ({"azure": {"type": "azure", "endpoints": [
        {"base_url": "https://res.openai.azure.com", "api_key": "k"}]}},
     "providers.azure.endpoints[0].api_version: required for an azure provider"),
    ({"groq": {"endpoints": [{"api_key": "k"}], "models": ["llama-*"]},
      "together": {"endpoints": [{"api_key": "k"}], "models": ["llama-*"]}},
     "providers groq and together both claim 'llama-*'"),
])
def test_a_bad_provider_stops_serve_with_one_line(tmp_path: Path, providers: dict[str, Any],
                                                  line: str) -> None:
    config = tmp_path / "outlay.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "providers": providers}),
                      encoding="utf-8")
    done = subprocess.run([outlay_bin(), "serve", "--config", str(config), "--state",
                           f"sqlite:///{tmp_path / 'state.db'}"], env=server_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    (said,) = done.stderr.strip().splitlines()  # one line: no traceback
    assert said.startswith("Error: ")
    assert line in said
    assert not (tmp_path / "state.db").exists()  # stopped before anything was stored
