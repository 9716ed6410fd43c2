"""Model listings through the official Python SDKs against a real `outlay serve`, simulated
and configured with a provider over HTTP: `models.retrieve` on both, `models.list` in each
provider's own shape (Anthropic's paginated, its models only), and nothing in the ledger."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from .conftest import _launcher
from .harness import Gateway, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def configured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Gateway]:
    """A gateway with real-shaped provider endpoints (listings never reach them)."""
    with _launcher(request.config, tmp_path_factory.mktemp("models")) as start:
        yield start({"providers": {
            "openai": {"endpoints": [{"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-p"}]},
            "anthropic": {"endpoints": [{"base_url": "http://127.0.0.1:9", "api_key": "sk-a"}]},
        }}, name="models")


@pytest.fixture(params=["simulated", "configured"])
def server(request: pytest.FixtureRequest) -> Gateway:
    name = "gateway" if request.param == "simulated" else "configured"
    found: Gateway = request.getfixturevalue(name)
    return found


def test_the_openai_sdk_retrieves_and_lists_models(server: Gateway) -> None:
    minted = server.mint_key(unique("models-openai"), policy={"models": ["gpt-4o*", "claude-*"]})
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=minted["key"], max_retries=0,
                       timeout=15) as client:
        model = client.models.retrieve("gpt-4o-mini")
        listed = [m.id for m in client.models.list()]
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-4.1")  # priced, but not this key's
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("no-such-model")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o-mini", "model", "openai")
    prices = server.prices()
    assert "gpt-4o-mini" in listed
    assert "gpt-4.1" not in listed
    assert any(prices[m]["provider"] == "anthropic" for m in listed)
    assert server.audit(f"key:{minted['id']}") == []


def test_the_anthropic_sdk_retrieves_and_pages_through_its_models(server: Gateway) -> None:
    minted = server.mint_key(unique("models-anthropic"))
    with anthropic.Anthropic(base_url=server.url, api_key=minted["key"], max_retries=0,
                             timeout=15) as client:
        model = client.models.retrieve("claude-haiku-4-5")
        first = client.models.list(limit=2)
        every = [m.id for m in client.models.list(limit=2)]  # the SDK follows has_more
        with pytest.raises(anthropic.NotFoundError):
            client.models.retrieve("gpt-4o-mini")  # not an Anthropic model
    assert (model.id, model.type, model.display_name) == (
        "claude-haiku-4-5", "model", "Claude Haiku 4.5")
    assert model.created_at.year == 1970
    claudes = sorted(n for n, p in server.prices().items() if p["provider"] == "anthropic")
    assert len(claudes) > 2
    assert [m.id for m in first.data] == claudes[:2]
    assert (first.has_more, first.first_id, first.last_id) == (True, claudes[0], claudes[1])
    assert every == claudes
    assert server.audit(f"key:{minted['id']}") == []
