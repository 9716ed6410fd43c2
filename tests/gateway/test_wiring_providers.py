"""Which upstream serves each named provider: real endpoints with the provider's own
credential style, or the simulator for a `simulate: true` provider of any name."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from outlay.gateway.wiring import upstream_from_settings
from outlay.settings import Settings, load_settings
from outlay.upstream import UpstreamRequest


def _settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "outlay.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(path, {})


def _chat(provider: str, path: str = "/chat/completions") -> UpstreamRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return UpstreamRequest(provider, "POST", path, {}, json.dumps(body).encode(), False)


async def test_a_simulated_named_provider_answers_in_its_types_shape(tmp_path: Path) -> None:
    settings = _settings(tmp_path, """
        providers:
          openai: {endpoints: [{base_url: "http://127.0.0.1:9/v1", api_key: sk}]}
          groq: {simulate: true, models: ["llama-*"]}
          bedrock: {type: anthropic, simulate: true}
        """)
    upstream = upstream_from_settings(settings)
    try:
        groq = await upstream.send(_chat("groq"))
        assert groq.headers["X-Outlay-Simulated"] == "true"
        assert json.loads(await groq.read())["object"] == "chat.completion"
        claude = await upstream.send(_chat("bedrock", "/v1/messages"))
        assert json.loads(await claude.read())["type"] == "message"  # Anthropic's shape
        health = {(h.provider, h.base_url) for h in upstream.health()}
        assert {("groq", "simulated"), ("bedrock", "simulated"),
                ("openai", "http://127.0.0.1:9/v1")} <= health
    finally:
        await upstream.close()


@pytest.mark.parametrize("simulated", ["openai", "anthropic"])
async def test_without_endpoints_the_simulator_serves_every_provider(
        tmp_path: Path, simulated: str) -> None:
    settings = _settings(tmp_path, f"providers: {{{simulated}: {{simulate: true}}, "
                                   "groq: {simulate: true}}\n")
    assert settings.simulated
    upstream = upstream_from_settings(settings)
    answer = await upstream.send(_chat("groq"))
    assert answer.status == 200
    assert {h.provider for h in upstream.health()} == {"openai", "anthropic", "groq"}
