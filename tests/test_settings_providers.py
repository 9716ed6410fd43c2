"""Settings: named providers of any OpenAI-compatible API, Anthropic's, or Azure OpenAI."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from outlay.settings import ConfigError, EndpointSettings, load_settings
from outlay.upstream.providers import ProviderSpec


@pytest.fixture(autouse=True)
def _no_local_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "outlay.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_issue_example_loads(tmp_path: Path) -> None:
    path = write(tmp_path, """
        providers:
          groq:
            type: openai
            endpoints: [{base_url: https://api.groq.com/openai/v1, api_key: env:GROQ_API_KEY}]
            models: ["llama-*", "qwen-*"]
          local:
            endpoints: [{base_url: http://127.0.0.1:8000/v1}]
            models: ["meta-llama/*"]
            free: true
          azure:
            type: azure
            endpoints: [{base_url: https://myres.openai.azure.com, api_key: env:AZURE_KEY,
                         api_version: "2024-10-21"}]
            deployments: {gpt-4o: prod-gpt4o}
          mistral:
            endpoints: [{api_key: env:MISTRAL_API_KEY}]
        """)
    settings = load_settings(path, {"GROQ_API_KEY": "gsk", "AZURE_KEY": "az",
                                    "MISTRAL_API_KEY": "mk"})
    assert settings.provider_specs == {
        "groq": ProviderSpec("groq", "openai", ("llama-*", "qwen-*")),
        "local": ProviderSpec("local", "openai", ("meta-llama/*",), free=True),
        "azure": ProviderSpec("azure", "azure", deployments=(("gpt-4o", "prod-gpt4o"),)),
        "mistral": ProviderSpec("mistral"),
    }
    assert settings.providers["azure"] == (EndpointSettings(
        "https://myres.openai.azure.com", "az", api_version="2024-10-21"),)
    # a provider the price table knows has its API's URL by default
    assert settings.providers["mistral"] == (EndpointSettings("https://api.mistral.ai/v1", "mk"),)
    assert settings.routing.route("llama-3", "openai", "/v1/chat/completions").name == "groq"
    assert settings.routing.names() == ["anthropic", "azure", "groq", "local", "mistral",
                                        "openai"]


def test_openai_and_anthropic_keep_their_types(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: {anthropic: {simulate: true}, openai: {simulate: true}}\n")
    specs = load_settings(path, {}).provider_specs
    assert (specs["anthropic"].type, specs["openai"].type) == ("anthropic", "openai")


def test_any_provider_may_be_simulated(tmp_path: Path) -> None:
    path = write(tmp_path, """
        providers:
          openai: {endpoints: [{api_key: sk}]}
          groq: {simulate: true, models: ["llama-*"]}
          azure: {type: azure, simulate: true}
        """)
    settings = load_settings(path, {})
    assert settings.simulate == {"groq", "azure"}
    assert set(settings.providers) == {"openai"}
    assert settings.simulated_upstreams()[:2] == ["azure", "groq"]


@pytest.mark.parametrize(("text", "message"), [
    ("groq: {models: ['llama-*']}",
     "providers.groq: no endpoints; give endpoints: [{base_url: …, api_key: …}], or "
     "simulate: true"),
    ("groq: {endpoints: []}", "providers.groq: no endpoints"),
    ("groq: {type: gemini, endpoints: [{api_key: k}]}",
     "providers.groq.type: unknown type 'gemini'; expected one of openai, anthropic, azure"),
    ("az: {type: azure, endpoints: [{base_url: 'https://r.openai.azure.com', api_key: k}]}",
     "providers.az.endpoints[0].api_version: required for an azure provider"),
    ("groq: {endpoints: [{api_key: k, api_version: '2024-10-21'}]}",
     "providers.groq.endpoints[0].api_version: only an azure provider takes an api_version"),
    ("groq: {endpoints: [{api_key: k}], deployments: {a: b}}",
     "providers.groq.deployments: only an azure provider has deployments"),
    ("az: {type: azure, simulate: true, deployments: [a]}",
     "providers.az.deployments must map model names to deployment names"),
    ("groq: {endpoints: [{api_key: k}], models: llama-*}",
     "providers.groq.models must be a list of model name patterns"),
    ("groq: {endpoints: [{api_key: k}], free: 'yes'}", "providers.groq.free must be true or"),
    ("groq: {endpoints: [{api_key: k}], models: ['llama-*']}\n"
     "  together: {endpoints: [{api_key: k}], models: ['llama-*']}",
     "providers: providers groq and together both claim 'llama-*'"),
    ("groq: {endpoints: [{api_key: k}], region: eu}", "providers.groq: unknown field(s) region"),
])
def test_bad_providers_stop_the_start_naming_the_field(tmp_path: Path, text: str,
                                                        message: str) -> None:
    path = write(tmp_path, f"providers:\n  {text}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(path, {})
