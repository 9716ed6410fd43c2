"""Which provider serves a model, and under which name (upstream/providers.py)."""

from __future__ import annotations

import pytest

from outlay.upstream.providers import (
    Providers,
    ProviderSpec,
    RouteError,
    claim_conflict,
    patterns_overlap,
)

GROQ = ProviderSpec("groq", models=("llama-*", "qwen-*"))
LOCAL = ProviderSpec("local", models=("meta-llama/*",), free=True)
AZURE = ProviderSpec("azure", "azure", deployments=(("gpt-4o", "prod-gpt4o"),))
CLAUDE = ProviderSpec("bedrock", "anthropic", models=("claude-*",))
PROVIDERS = Providers({spec.name: spec for spec in (GROQ, LOCAL, AZURE, CLAUDE)})


@pytest.mark.parametrize(("model", "family", "provider", "upstream", "price_key"), [
    # a prefix names the provider and is removed
    ("groq/llama-3.3-70b-versatile", "openai", "groq", "llama-3.3-70b-versatile",
     "groq/llama-3.3-70b-versatile"),
    ("openai/gpt-4o", "openai", "openai", "gpt-4o", "gpt-4o"),
    ("anthropic/claude-sonnet-4-5", "anthropic", "anthropic", "claude-sonnet-4-5",
     "claude-sonnet-4-5"),
    # a plain name goes to the provider whose patterns claim it
    ("llama-3.1-8b-instant", "openai", "groq", "llama-3.1-8b-instant",
     "groq/llama-3.1-8b-instant"),
    # a name whose first part is no provider is a plain name, slashes and all
    ("meta-llama/Llama-3.1-8B", "openai", "local", "meta-llama/Llama-3.1-8B",
     "local/meta-llama/Llama-3.1-8B"),
    ("gpt-4o", "openai", "azure", "gpt-4o", "azure/gpt-4o"),
    ("claude-3-haiku", "anthropic", "bedrock", "claude-3-haiku", "bedrock/claude-3-haiku"),
    # else the family's default provider
    ("gpt-4.1", "openai", "openai", "gpt-4.1", "gpt-4.1"),
    ("unknown/model", "openai", "openai", "unknown/model", "unknown/model"),
    ("claude-opus-4-1", "openai", "openai", "claude-opus-4-1", "claude-opus-4-1"),
    ("llama-3", "anthropic", "anthropic", "llama-3", "llama-3"),
])
def test_a_model_goes_to_its_provider(model: str, family: str, provider: str,
                                       upstream: str, price_key: str) -> None:
    target = PROVIDERS.route(model, family, "/v1/x")  # type: ignore[arg-type]
    assert (target.name, target.model, target.price_key) == (provider, upstream, price_key)


def test_azure_finds_the_deployment_of_a_model() -> None:
    assert PROVIDERS.route("azure/gpt-4o", "openai", "/v1/chat/completions").deployment \
        == "prod-gpt4o"
    # a model with no deployment configured is sent to a deployment of its own name
    assert PROVIDERS.route("azure/gpt-4.1", "openai", "/v1/chat/completions").deployment \
        == "gpt-4.1"
    assert PROVIDERS.route("groq/llama-3", "openai", "/v1/chat/completions").deployment is None


@pytest.mark.parametrize("model", ["azure/a/b", "azure/..", "azure/x?y=1", "azure/a b"])
def test_an_azure_name_that_is_no_deployment_is_refused(model: str) -> None:
    with pytest.raises(RouteError, match="not an Azure deployment name"):
        PROVIDERS.route(model, "openai", "/v1/chat/completions")


def test_a_provider_of_the_other_family_is_refused() -> None:
    with pytest.raises(RouteError, match=r"provider .bedrock. .*does not serve "
                                         r"/v1/chat/completions; call /v1/messages"):
        PROVIDERS.route("bedrock/claude-3-haiku", "openai", "/v1/chat/completions")
    with pytest.raises(RouteError, match="provider 'groq'"):
        PROVIDERS.route("groq/llama-3", "anthropic", "/v1/messages")


def test_no_model_goes_to_the_default_provider() -> None:
    assert PROVIDERS.route(None, "openai", "/v1/embeddings").name == "openai"
    assert Providers().names() == ["anthropic", "openai"]


@pytest.mark.parametrize(("one", "other", "overlap"), [
    ("llama-*", "llama-*", True),
    ("llama-*", "llama-3*", True),
    ("llama-*", "*-70b", True),
    ("llama-*", "qwen-*", False),
    ("*", "anything", True),
    ("gpt-?", "gpt-4o", False),
    ("gpt-?", "gpt-[45]", True),
    ("gpt-[!4]", "gpt-4", False),
    ("gpt-[0-3]*", "gpt-4*", False),
    ("a*b", "*c", False),
    ("a*b*c", "*bc", True),
    ("mistral-*-latest", "mistral-large-*", True),
    ("meta-llama/*", "llama-*", False),
])
def test_patterns_overlap_when_one_name_matches_both(one: str, other: str,
                                                      overlap: bool) -> None:
    assert patterns_overlap(one, other) is overlap
    assert patterns_overlap(other, one) is overlap


def test_two_providers_claiming_one_name_conflict_naming_both() -> None:
    together = ProviderSpec("together", models=("*-70b*",))
    message = claim_conflict([GROQ, together])
    assert message is not None
    assert "providers groq and together" in message
    assert "'llama-*' and '*-70b*'" in message
    same = claim_conflict([GROQ, ProviderSpec("fireworks", models=("qwen-*",))])
    assert same is not None
    assert "both claim 'qwen-*'" in same
    # a deployment's model name is a claim too
    assert claim_conflict([AZURE, ProviderSpec("proxy", models=("gpt-*",))]) is not None
    # the families route apart: no conflict between an OpenAI and an Anthropic provider
    assert claim_conflict([CLAUDE, ProviderSpec("proxy", models=("claude-*",))]) is None
    assert claim_conflict([GROQ, LOCAL, AZURE, CLAUDE]) is None


def test_a_route_asked_again_is_the_one_found_first() -> None:
    providers = Providers({GROQ.name: GROQ, CLAUDE.name: CLAUDE})
    first = providers.route("llama-3.1-8b-instant", "openai", "/v1/chat/completions")
    assert providers.route("llama-3.1-8b-instant", "openai", "/v1/chat/completions") is first
    # the family and the route are part of what is kept: each is decided on its own
    assert providers.route("claude-3-haiku", "anthropic", "/v1/messages").name == "bedrock"
    for _ in range(2):  # a refusal is raised again, afresh, with its message
        with pytest.raises(RouteError, match=r"provider 'bedrock'.*serve /v1/embeddings"):
            providers.route("bedrock/claude-3-haiku", "openai", "/v1/embeddings")


def test_the_routes_kept_are_bounded_in_number_and_name_length() -> None:
    from outlay.upstream import providers as module

    providers = Providers({GROQ.name: GROQ})
    for i in range(module.MAX_ROUTES_KEPT + 10):
        providers.route(f"llama-{i}", "openai", "/v1/chat/completions")
    assert len(providers._kept) <= module.MAX_ROUTES_KEPT
    long = "llama-" + "x" * module.MAX_NAME_KEPT
    assert providers.route(long, "openai", "/v1/chat/completions").name == "groq"
    assert all(key[0] != long for key in providers._kept)
